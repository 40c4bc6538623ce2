import { Pool } from 'undici';
import { formatHostPort } from '../core/address.js';
import { LatencyHistogram } from '../observe/histogram.js';
import { EndpointHealth, type HealthOptions, type HealthStateKind, type WithHealth } from './health/state.js';
import { ledgerClientFactory } from './connection.js';

/** Per-endpoint connection settings, already resolved from config. */
export interface PoolSettings {
  maxConnections: number;
  connectTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxResponseHeaderSize: number;
}

/** Peak-EWMA decay time constant (Finagle and Linkerd use 10 s). */
export const EWMA_DECAY_MS = 10_000;
/**
 * Latency assumed for an endpoint with no samples yet: none (Finagle). Such an endpoint wins a
 * comparison while it is idle, so a new instance is tried at once; while its first request is
 * in flight the balancer charges it a penalty, so a burst does not pile onto it.
 */
export const EWMA_INITIAL_MS = 0;

/** Status classes counted per endpoint: index 0 = 1xx … 4 = 5xx, 5 = no response (gateway error). */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;

/** Health state kinds in a fixed order: the index into Endpoint.transitions. */
export const HEALTH_STATE_KINDS: readonly HealthStateKind[] = ['probation', 'healthy', 'ejected', 'unhealthy', 'draining'];

export interface EndpointInit {
  host: string;
  port: number;
  weight: number;
}

/**
 * One instance of a service as the upstream sees it: where it is, its connection pool and the
 * live numbers the balancers read. The hot path mutates plain fields; nothing here allocates
 * per request.
 */
export class Endpoint implements WithHealth {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  weight: number;
  readonly pool: Pool;

  /** Requests dispatched to this endpoint and not finished yet. */
  inflight = 0;
  /** Peak-EWMA latency estimate in milliseconds. */
  ewmaMs = EWMA_INITIAL_MS;
  /** When ewmaMs was last updated (ms, performance.now()). */
  ewmaStamp = 0;
  /** Completed requests by status class, see STATUS_CLASSES. */
  readonly responses = [0, 0, 0, 0, 0, 0];
  /** Time to response headers, every sample (tandem_endpoint_response_seconds, the dashboard's p99). */
  readonly latency = new LatencyHistogram();
  /** Transitions into each state, indexed as HEALTH_STATE_KINDS. */
  readonly transitions = [0, 0, 0, 0, 0];
  /** Where it stands: only probation and healthy endpoints are candidates (outside panic). */
  readonly health: EndpointHealth;

  constructor(init: EndpointInit, settings: PoolSettings, health: Partial<HealthOptions> = {}, now = 0) {
    this.health = new EndpointHealth(health, now);
    this.host = init.host;
    this.port = init.port;
    this.weight = init.weight;
    this.id = formatHostPort(init.host, init.port);
    this.pool = new Pool(`http://${this.id}`, {
      connections: settings.maxConnections,
      pipelining: 1,
      // Idle connections the endpoint closes are dropped as soon as undici reads their FIN (it
      // reads idle sockets), and undici yields to the poll phase once before it reuses an idle
      // one, so a close already received is seen first. What is left is a close still in flight
      // as the request goes out: classify.ts sorts those out. Closing idle connections before
      // the endpoint does (a keepAliveTimeout below the endpoint's) avoids even that.
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      connect: { timeout: settings.connectTimeoutMs },
      maxHeaderSize: settings.maxResponseHeaderSize,
      strictContentLength: true,
      // Each client keeps a ledger of its connection, so a failed exchange can tell whether the
      // endpoint closed a reused connection with the request unread (connection.ts, classify.ts).
      factory: ledgerClientFactory,
    });
  }

  /**
   * Folds one latency sample into the peak-EWMA estimate: a slower sample is taken at once
   * (peak), a faster one decays in with weight depending on the time since the last sample.
   */
  observeLatency(ms: number, now: number): void {
    this.latency.observe(ms / 1000);
    if (ms > this.ewmaMs) {
      this.ewmaMs = ms;
    } else {
      const elapsed = Math.max(0, now - this.ewmaStamp);
      const w = Math.exp(-elapsed / EWMA_DECAY_MS);
      this.ewmaMs = this.ewmaMs * w + ms * (1 - w);
    }
    this.ewmaStamp = now;
  }

  /** Connections currently open to this endpoint. */
  get connections(): number {
    return this.pool.stats.connected;
  }
}
