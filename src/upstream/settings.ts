import type { BalancerKind } from './balancer/balancer.js';
import type { EndpointInit, PoolSettings } from './endpoint.js';
import type { OutlierOptions } from './health/outlier.js';
import type { ProbeSettings } from './health/prober.js';
import type { HealthOptions } from './health/state.js';
import type { RetryBudgetOptions } from './resilience/budget.js';
import type { HedgeOptions } from './resilience/hedge.js';

/**
 * Everything an Upstream is told about its service, in the engine's own units: durations in
 * milliseconds (named …Ms), shares as fractions of 1. It is not the config file's format: the
 * gateway and the service client map their `ServiceConfig` onto it (gateway/upstream-settings.ts),
 * so the file's spelling can change without touching the engine, and the engine can be driven
 * without a config at all.
 */
export interface UpstreamSettings {
  readonly name: string;
  /** Members known up front; more come and go through `Upstream.setMembers`. */
  readonly endpoints: readonly EndpointInit[];
  readonly balancer: BalancerKind;
  /** Longest wait for response headers over all attempts, unless a request says less. */
  readonly timeoutMs: number;
  /** Requests in progress past which new ones are refused at once (503). */
  readonly concurrencyLimit: number;
  readonly pool: PoolSettings;
  /** Active health checks, or false: endpoints are then judged by their answers only. */
  readonly healthCheck: HealthCheckSettings | false;
  /** Passive outlier detection; unset fields take DEFAULT_OUTLIER's. */
  readonly outlier: Partial<OutlierOptions>;
  /** Share (0–1) of eligible endpoints below which traffic is spread over all; 0 = never. */
  readonly panicThreshold: number;
  readonly retry: RetrySettings | false;
  /** Hedged requests, or false. Hedges draw on the retry budget: off when `retry` is. */
  readonly hedge: HedgeOptions | false;
  /** What the endpoints speak; unset = `http`. `grpc` also sets `pool.protocol`. */
  readonly protocol?: 'http' | 'grpc';
  /** gRPC settings, for `protocol: grpc`. */
  readonly grpc?: GrpcSettings;
}

export interface GrpcSettings {
  /** Full method names (`/pkg.Service/Method`) safe to run twice: retried after they may have been processed, and hedged. */
  readonly idempotentMethods: readonly string[];
  /** The service asked by the grpc.health.v1 check ('' = the whole server). */
  readonly healthService: string;
}

export type HealthCheckSettings = ProbeSettings & HealthOptions;

export interface RetrySettings {
  /** Attempts in total, the first included (hedges count). */
  readonly attempts: number;
  /** Longest wait for one attempt's response headers; undefined = what is left of the deadline. */
  readonly perTryTimeoutMs: number | undefined;
  /** Largest request body (bytes, by Content-Length) read into memory so it can be sent again. */
  readonly bodyLimit: number;
  /** `percent` is a share of requests here (0.2 = one retry per five requests). */
  readonly budget: Pick<RetryBudgetOptions, 'percent' | 'minPerSecond'>;
}
