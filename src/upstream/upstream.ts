import { TandemError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import type { ServiceConfig, EndpointConfig } from '../config/types.js';
import { Endpoint, type PoolSettings } from './endpoint.js';
import { Attempt } from './attempt.js';
import { createBalancer } from './balancer/index.js';
import type { Balancer } from './balancer/balancer.js';
import { LatencyHistogram } from '../observe/histogram.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';

/** One step of the request path: takes the next dispatch, returns a dispatch. */
export type Dispatch = (request: UpstreamRequest, handler: ResponseHandler) => void;
export type Step = (next: Dispatch) => Dispatch;

/** Chains steps so that the first listed runs first: compose([a, b], send) = a(b(send)). */
export function compose(steps: readonly Step[], terminal: Dispatch): Dispatch {
  return steps.reduceRight<Dispatch>((next, step) => step(next), terminal);
}

export interface EndpointSnapshot {
  id: string;
  weight: number;
  state: 'healthy';
  inflight: number;
  latencyEstimateMs: number;
  connections: number;
  responses: Record<string, number>;
}

/**
 * One service's endpoints, their balancer and the request path to them. The gateway and the
 * service client both drive an Upstream; it knows nothing about either.
 */
export class Upstream {
  readonly name: string;
  private config: ServiceConfig;
  private members: Endpoint[] = [];
  /** Members that may take a request now. Rebuilt on change, never per request. */
  private candidates: Endpoint[] = [];
  private balancer: Balancer<Endpoint>;
  readonly dispatch: Dispatch;
  /** Whole-request latency and requests answered without reaching an endpoint (by status class). */
  readonly stats = { latency: new LatencyHistogram(), local: [0, 0, 0, 0, 0, 0] };

  constructor(config: ServiceConfig, steps: readonly Step[] = []) {
    this.name = config.name;
    this.config = config;
    this.balancer = createBalancer<Endpoint>(config.balancer);
    this.setMembers(config.endpoints);
    this.dispatch = compose(steps, (request, handler) => this.send(request, handler));
  }

  get settings(): ServiceConfig {
    return this.config;
  }

  get endpoints(): readonly Endpoint[] {
    return this.members;
  }

  /**
   * Applies a new config for this service (reload). Endpoints present before and after keep
   * their pools and statistics; removed ones finish their in-flight requests, then close.
   */
  update(config: ServiceConfig): void {
    const poolChanged = poolSettingsOf(config).maxConnections !== poolSettingsOf(this.config).maxConnections
      || config.connectTimeout !== this.config.connectTimeout
      || config.keepAliveTimeout !== this.config.keepAliveTimeout
      || config.maxResponseHeaderSize !== this.config.maxResponseHeaderSize;
    if (config.balancer !== this.config.balancer) this.balancer = createBalancer<Endpoint>(config.balancer);
    this.config = config;
    if (poolChanged) {
      const old = this.members;
      this.members = [];
      this.setMembers(config.endpoints);
      void Promise.all(old.map((e) => e.pool.close()));
    } else {
      this.setMembers(config.endpoints);
    }
  }

  setMembers(list: readonly EndpointConfig[]): void {
    const byId = new Map(this.members.map((e) => [e.id, e]));
    const next: Endpoint[] = [];
    const settings = poolSettingsOf(this.config);
    for (const ep of list) {
      const id = formatHostPort(ep.host, ep.port);
      const existing = byId.get(id);
      if (existing) {
        existing.weight = ep.weight;
        next.push(existing);
        byId.delete(id);
      } else {
        next.push(new Endpoint(ep, settings));
      }
    }
    for (const removed of byId.values()) void removed.pool.close();
    this.members = next;
    this.candidates = next;
    this.balancer.setMembers(next);
  }

  private send(request: UpstreamRequest, handler: ResponseHandler): void {
    const candidates = this.candidates;
    if (candidates.length === 0) {
      this.stats.local[4]!++;
      handler.onError(new TandemError('TANDEM_ERR_NO_HEALTHY_ENDPOINT', `service ${this.name} has no endpoint available`, { status: 503, retryable: true }));
      return;
    }
    const endpoint = this.balancer.pick(candidates, request.hashKey);
    Attempt.send(endpoint, request, handler, this.config.timeout);
  }

  snapshot(): EndpointSnapshot[] {
    return this.members.map((e) => ({
      id: e.id,
      weight: e.weight,
      state: 'healthy',
      inflight: e.inflight,
      latencyEstimateMs: Math.round(e.ewmaMs * 100) / 100,
      connections: e.connections,
      responses: { '1xx': e.responses[0]!, '2xx': e.responses[1]!, '3xx': e.responses[2]!, '4xx': e.responses[3]!, '5xx': e.responses[4]!, error: e.responses[5]! },
    }));
  }

  /** Closes every pool once its in-flight requests finish. */
  async close(): Promise<void> {
    const members = this.members;
    this.members = [];
    this.candidates = [];
    await Promise.all(members.map((e) => e.pool.close()));
  }

  /** Closes every pool now, failing whatever is still in flight. */
  async destroy(): Promise<void> {
    const members = this.members;
    this.members = [];
    this.candidates = [];
    await Promise.all(members.map((e) => e.pool.destroy()));
  }
}

function poolSettingsOf(c: ServiceConfig): PoolSettings {
  return {
    maxConnections: c.maxConnections,
    connectTimeoutMs: c.connectTimeout,
    keepAliveTimeoutMs: c.keepAliveTimeout,
    maxResponseHeaderSize: c.maxResponseHeaderSize,
  };
}
