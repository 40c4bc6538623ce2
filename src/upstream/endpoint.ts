import { Pool, type Dispatcher } from 'undici';
import { formatEndpoint, formatHostPort } from '../core/address.js';
import { LatencyHistogram } from '../core/histogram.js';
import { STATUS_CLASSES } from '../core/status-class.js';
import { EndpointHealth, type HealthOptions, type HealthStateKind, type WithHealth } from './health/state.js';
import { ledgerClientFactory } from './connection.js';
import { DEFAULT_UPSTREAM_TLS, requestServername, tlsConnectOptions, type UpstreamTls } from './tls.js';
import { H2cPool } from './h2c-pool.js';

/** Per-endpoint connection settings, already resolved from config. */
export interface PoolSettings {
  maxConnections: number;
  connectTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxResponseHeaderSize: number;
  /** TLS to the https:// endpoints (unused for plaintext ones); unset: DEFAULT_UPSTREAM_TLS. */
  tls?: UpstreamTls;
  /** Offer HTTP/2 by ALPN to https:// endpoints (plaintext ones speak HTTP/1.1); unset: false. */
  http2?: boolean;
  /** `grpc`: HTTP/2 cleartext (h2c) connections carrying many calls each; unset or `http`: HTTP/1.1. */
  protocol?: 'http' | 'grpc';
}

/**
 * Time constant of the latency estimate (ms): how fast it follows a lasting change, and how fast
 * an endpoint that gets no samples drifts back to the service's typical latency. Finagle and
 * Linkerd use 10 s; with the deterministic comparison they pair it with, one slow sample could
 * starve an instance for that long (tandem issue 12). Half a second still averages about 50
 * samples at 100 requests a second per endpoint, and lets an endpoint that was slow and has
 * recovered be seen as recovered within about a second (a few time constants).
 */
export const EWMA_DECAY_MS = 500;
/**
 * Time constant (ms) with which a spike above the moving average is forgotten. The peak is what
 * makes an endpoint that slows down shed traffic before its average catches up. It is short
 * because an endpoint under a peak gets few requests, hence few samples to correct it: only
 * time ends the penalty. In simulation, 200 ms skewed the shares of identical instances by up
 * to 1.4× through their outliers; 50 ms by about 1.1×. A lasting slowdown shows in the moving
 * average within a few samples anyway.
 */
export const PEAK_DECAY_MS = 50;
/**
 * An endpoint's first answers are often slow for reasons that pass (a cold JIT, new
 * connections): its moving average starts as the fastest of its first SETTLE_SAMPLES answers,
 * and until it has them the balancer reads it as no slower than the service's typical latency.
 */
export const SETTLE_SAMPLES = 3;
/** A sample enters the moving average as at most this many times the average; the rest is peak. */
const PEAK_CLAMP = 4;
/**
 * Latency estimate of an endpoint with no samples: none. The balancer reads such an endpoint as
 * the service's typical latency (the median of the others' estimates), not as free.
 */
export const EWMA_INITIAL_MS = 0;
/**
 * Slow start (ms): a new endpoint, or one back from failing its health checks (most often a
 * restarted process, with a cold JIT and no connections), gets a share that ramps up over this
 * window instead of its full share at once, as Envoy's slow_start_window does.
 */
export const SLOW_START_MS = 1_000;
/**
 * Below this many answers since it joined or came back, an endpoint is cold: its first answers
 * are slow (new code paths, new connections), and a race lost to a hedge then says nothing.
 */
export const COLD_ANSWERS = 20;
/**
 * A silent endpoint is charged at most once per this many ms for the races it loses (see
 * Attempt.chargeSilence). The calls waiting on it during one pause — a process descheduled on a
 * busy host, throttled for the rest of its CPU quota's 100 ms period, or stopped by a GC — are
 * one sign of that pause, not one each: at 100 calls a second, ten calls lose their races in
 * the same moment, and counted one by one they ejected a healthy instance for 30 s. An endpoint
 * that stays silent is still charged again and again: with 5 failures to eject, after about
 * half a second of silence while calls keep coming (hedges answer them in the meantime).
 */
export const SILENCE_CHARGE_MS = 100;
/** The share factor a slow-starting endpoint begins with, so it gets samples from the start. */
export const SLOW_START_MIN_FACTOR = 0.1;

export { STATUS_CLASSES };

/** Health state kinds in a fixed order: the index into Endpoint.transitions. */
export const HEALTH_STATE_KINDS: readonly HealthStateKind[] = ['probation', 'healthy', 'ejected', 'unhealthy', 'draining'];

export interface EndpointInit {
  host: string;
  port: number;
  weight: number;
  /** Reached over TLS (an https:// endpoint); plaintext when unset. */
  tls?: boolean;
}

/**
 * What an endpoint's exchanges go through: undici's Pool (HTTP/1.1) unless the Upstream's owner
 * makes something else (UpstreamOptions.pool) — tandem/client's gRPC transport over HTTP/2. It
 * takes undici's dispatch options and handler callbacks, so an Attempt drives either alike.
 */
export interface EndpointPool {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean;
  /** Closes once idle. */
  close(): Promise<void>;
  /** Closes now, failing what is in flight. */
  destroy(): Promise<void>;
  readonly stats: { readonly connected: number };
}

/** Makes an endpoint's pool (UpstreamOptions.pool); `id` is its `host:port`. */
export type PoolFactory = (endpoint: Readonly<EndpointInit> & { readonly id: string }, settings: PoolSettings) => EndpointPool;

/**
 * One instance of a service as the upstream sees it: where it is, its connection pool and the
 * live numbers the balancers read. The hot path mutates plain fields; nothing here allocates
 * per request.
 */
export class Endpoint implements WithHealth {
  readonly id: string;
  readonly host: string;
  readonly port: number;
  /** An https:// endpoint: its connections are TLS. */
  readonly tls: boolean;
  /** What its requests name as `servername` (TLS only; see requestServername). */
  readonly servername: string | undefined;
  weight: number;
  readonly pool: EndpointPool;

  /** Requests dispatched to this endpoint and not finished yet. */
  inflight = 0;
  /**
   * Smoothed latency in ms (a time-weighted moving average, see observeLatency); 0 until the
   * first sample. The balancer adds the decaying peak and the drift toward the service's
   * typical latency at pick time.
   */
  ewmaMs = EWMA_INITIAL_MS;
  /** When the last latency sample came in (ms, the Upstream's clock). */
  ewmaStamp = 0;
  /** Latency samples so far: 0 means the estimate is unknown, whatever ewmaMs holds. */
  ewmaSamples = 0;
  /** How far the latest spike stood above ewmaMs (ms), as of peakStamp; forgotten over PEAK_DECAY_MS. */
  peakMs = 0;
  /** When peakMs was set. */
  peakStamp = 0;
  /** How far the latest sample stood above the moving average (ms; negative when below). */
  lastExcessMs = 0;
  /** Start of the current slow-start window (ms, the upstream's clock): joined, or back from unhealthy. */
  warmingSince: number;
  /** When response headers last came from this endpoint (ms, the Upstream's clock); 0 before any. */
  answeredAt = 0;
  /** Responses since it joined or came back from failing its checks (counted up to COLD_ANSWERS). */
  answersSinceWarming = 0;
  /** When a lost race was last held against it for its silence (ms, the Upstream's clock; see SILENCE_CHARGE_MS). */
  silenceChargedAt = -Infinity;
  /** Completed requests by status class, see STATUS_CLASSES. */
  readonly responses = [0, 0, 0, 0, 0, 0];
  /** Time to response headers, every sample (tandem_endpoint_response_seconds, the dashboard's p99). */
  readonly latency = new LatencyHistogram();
  /** Transitions into each state, indexed as HEALTH_STATE_KINDS. */
  readonly transitions = [0, 0, 0, 0, 0];
  /** Where it stands: only probation and healthy endpoints are candidates (outside panic). */
  readonly health: EndpointHealth;

  constructor(init: EndpointInit, settings: PoolSettings, health: Partial<HealthOptions> = {}, now = 0, makePool?: PoolFactory) {
    this.health = new EndpointHealth(health, now);
    this.warmingSince = now;
    // Back from failing its checks it is most likely a restarted process: as cold as a new one.
    // The subscription lives as long as the endpoint and its health, so it is never disposed.
    this.health.onTransition((t) => {
      if (t.to.kind === 'probation' && t.to.from === 'unhealthy') {
        this.warmingSince = t.to.since;
        this.answersSinceWarming = 0;
      }
    });
    this.host = init.host;
    this.port = init.port;
    this.weight = init.weight;
    this.tls = init.tls === true;
    this.id = formatEndpoint(init.host, init.port, this.tls);
    this.servername = this.tls ? requestServername(init.host, settings.tls ?? DEFAULT_UPSTREAM_TLS) : undefined;
    // The owner's pool (tandem/client's gRPC transport), else — gRPC: HTTP/2 cleartext, calls
    // multiplexed (h2c-pool.ts); otherwise undici's HTTP/1.1 pool.
    this.pool = makePool?.({ host: init.host, port: init.port, weight: init.weight, id: this.id }, settings)
      ?? (settings.protocol === 'grpc' ? new H2cPool(this.origin, settings) : this.httpPool(settings));
  }

  private httpPool(settings: PoolSettings): Pool {
    return new Pool(this.origin, {
      connections: settings.maxConnections,
      pipelining: 1,
      // Idle connections the endpoint closes are dropped as soon as undici reads their FIN (it
      // reads idle sockets), and undici yields to the poll phase once before it reuses an idle
      // one, so a close already received is seen first. What is left is a close still in flight
      // as the request goes out: classify.ts sorts those out. Closing idle connections before
      // the endpoint does (a keepAliveTimeout below the endpoint's) avoids even that.
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      connect: { timeout: settings.connectTimeoutMs, ...(this.tls ? tlsConnectOptions(settings.tls ?? DEFAULT_UPSTREAM_TLS) : {}) },
      // HTTP/2 only where ALPN can agree on it: over TLS.
      ...(this.tls && settings.http2 === true ? { allowH2: true } : {}),
      maxHeaderSize: settings.maxResponseHeaderSize,
      strictContentLength: true,
      // Each client keeps a ledger of its connection, so a failed exchange can tell whether the
      // endpoint closed a reused connection with the request unread (connection.ts, classify.ts).
      factory: ledgerClientFactory,
    });
  }

  /**
   * Folds one latency sample into the estimate. The moving average weighs a sample by the time
   * since the previous one (1 − e^(−Δt/τ)), so its memory is EWMA_DECAY_MS of wall time
   * whatever the request rate: a rarely sampled endpoint moves more per sample. It starts as
   * the fastest of the first SETTLE_SAMPLES answers; the next ones are averaged plainly with it
   * (weight at least 1/k for the k-th) until the time weight takes over.
   *
   * The average takes a sample at most PEAK_CLAMP times itself: the excess goes to the peak,
   * which the balancer adds on top. A peak needs two slow answers in a row — it is the lesser
   * excess of the last two samples — so a lone outlier among fast answers (a GC pause, a cold
   * connection, the gateway itself descheduled) costs nothing, while an endpoint that really
   * slowed down is penalised from its second slow answer. The peak fades with time
   * (PEAK_DECAY_MS) and halves with every later sample that does not renew it.
   */
  observeLatency(ms: number, now: number): void {
    this.latency.observe(ms / 1000);
    const n = ++this.ewmaSamples;
    if (n <= SETTLE_SAMPLES) {
      if (n === 1 || ms < this.ewmaMs) this.ewmaMs = ms;
    } else {
      const byTime = 1 - Math.exp(-Math.max(0, now - this.ewmaStamp) / EWMA_DECAY_MS);
      const plain = 1 / (n - SETTLE_SAMPLES + 1);
      const w = byTime > plain ? byTime : plain;
      // An average of 0 (answers faster than the clock ticks) caps nothing: it would stay 0.
      const cap = this.ewmaMs > 0 ? this.ewmaMs * PEAK_CLAMP : Infinity;
      this.ewmaMs += ((ms < cap ? ms : cap) - this.ewmaMs) * w;
      const excess = ms - this.ewmaMs;
      const confirmed = excess < this.lastExcessMs ? excess : this.lastExcessMs;
      this.lastExcessMs = excess;
      const faded = this.peakMs * 0.5 * Math.exp(-Math.max(0, now - this.peakStamp) / PEAK_DECAY_MS);
      this.peakMs = confirmed > faded ? confirmed : faded;
      this.peakStamp = now;
    }
    this.ewmaStamp = now;
  }

  /** The URL origin its connections go to (`http://host:port` or `https://host:port`). */
  get origin(): string {
    return `${this.tls ? 'https' : 'http'}://${formatHostPort(this.host, this.port)}`;
  }

  /** Connections currently open to this endpoint. */
  get connections(): number {
    return this.pool.stats.connected;
  }
}

