import { formatEndpoint } from '../core/address.js';
import { DEFAULT_UPSTREAM_TLS } from './tls.js';
import { Endpoint, HEALTH_STATE_KINDS, type EndpointInit, type PoolFactory } from './endpoint.js';
import type { RetrySettings, UpstreamSettings } from './settings.js';
import { realClock, type Clock } from '../core/clock.js';
import { OutlierDetector } from './health/outlier.js';
import { PanicThreshold } from './health/panic.js';
import { HealthProber } from './health/prober.js';
import type { HealthOptions, HealthStateKind, HealthTransition, TransitionReason } from './health/state.js';
import { RequestPath } from './request-path.js';
import { compose, requestPipeline, type Dispatch, type Step } from './pipeline.js';
import { RetryBudget } from './resilience/budget.js';
import { HedgePolicy } from './resilience/hedge.js';
import { LatencyTracker } from './resilience/latency.js';
import { FAILURE_KINDS } from './resilience/retry-policy.js';
import { createBalancer, type BalancerOptions } from './balancer/index.js';
import { LatencyHistogram } from '../core/histogram.js';
import { grpcCallOf, type GrpcCall } from './grpc.js';

export { compose };

/** Distinct gRPC method names counted per service (countGrpc). */
export const GRPC_METHODS_COUNTED = 200;
export type { Dispatch, Step };

export interface EndpointSnapshot {
  id: string;
  weight: number;
  state: HealthStateKind;
  /** When an ejection ends (ISO time), for an ejected endpoint. */
  ejectedUntil?: string;
  /** Ejections counted now (after decay), when any. */
  timesEjected?: number;
  inflight: number;
  latencyEstimateMs: number;
  connections: number;
  responses: Record<string, number>;
}

/** A change of an endpoint's state, as reported to the owner of an Upstream (for logs). */
export interface EndpointTransition {
  service: string;
  endpoint: string;
  from: HealthStateKind;
  to: HealthStateKind;
  reason: TransitionReason;
}

export interface UpstreamOptions {
  /** Time for health decisions, deadlines, per-try timeouts, backoff and hedging; tests pass a FakeClock. */
  clock?: Clock;
  /** Uniform [0, 1) for jitter; tests pin it. */
  random?: () => number;
  /** Every endpoint state change. Runs synchronously inside the transition: keep it cheap. */
  onTransition?: (transition: EndpointTransition) => void;
  /** The service entered (true) or left (false) panic. */
  onPanic?: (service: string, panic: boolean) => void;
  /** Makes each endpoint's pool; default undici's Pool (HTTP/1.1). tandem/client's gRPC client passes its HTTP/2 transport. */
  pool?: PoolFactory;
}

/** What an Upstream keeps per member besides the Endpoint itself. */
interface Watch {
  subscription: { dispose(): void };
  prober: HealthProber | undefined;
}

/**
 * One service's endpoints, their balancer and the request path to them. The gateway and the
 * service client both drive an Upstream; it knows nothing about either.
 */
export class Upstream {
  readonly name: string;
  private config: UpstreamSettings;
  private members: Endpoint[] = [];
  private panic: PanicThreshold<Endpoint>;
  private readonly watches = new Map<Endpoint, Watch>();
  /** Time for health, budgets, deadlines, per-try timeouts, backoff and hedging. */
  private readonly clock: Clock;
  /** Uniform [0, 1) for jitter (probes, ejections, backoff). */
  private readonly random: () => number;
  private readonly hooks: UpstreamOptions;
  private panicking = false;
  /** The caller's steps, kept to make the chain again when settings change. */
  private callerSteps: readonly Step[];
  /** What the request path reads (candidates, balancer, budget, hedging), kept up to date here. */
  private readonly path: RequestPath;
  /**
   * Sends a request through the caller's steps (see `setSteps`), then the engine's: see
   * requestPipeline (pipeline.ts) for the list.
   */
  readonly dispatch: Dispatch;
  /**
   * Whole-request latency, requests answered without reaching an endpoint (by status class),
   * outlier ejections, retries by reason (indexed as FAILURE_KINDS), retries the budget
   * refused (retries and hedges), hedges sent and hedges that answered first, and requests
   * refused at the concurrency limit, so far; `active` = requests in progress now (upgrades
   * not counted).
   */
  readonly stats = {
    latency: new LatencyHistogram(),
    local: [0, 0, 0, 0, 0, 0],
    /** Requests finished as the caller saw them, by status class (STATUS_CLASSES); bumped by the gateway and the client. */
    answered: [0, 0, 0, 0, 0, 0],
    ejections: 0,
    retries: FAILURE_KINDS.map(() => 0),
    budgetExhausted: 0,
    hedges: 0,
    hedgeWins: 0,
    overloaded: 0,
    active: 0,
  };

  /** gRPC calls finished, by full method name: counts by status code 0–16, then calls without one (countGrpc). */
  readonly grpcCalls = new Map<string, number[]>();
  /** The calls of each idempotent gRPC method, by path: what is learnt of its answers stays with it (grpcCall). */
  private readonly grpcMethods = new Map<string, GrpcCall>();

  constructor(config: UpstreamSettings, steps: readonly Step[] = [], options: UpstreamOptions = {}) {
    this.name = config.name;
    this.config = config;
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.hooks = options;
    this.path = new RequestPath(
      this.name, config, this.clock, this.random, this.stats,
      createBalancer<Endpoint>(config.balancer, this.balancerOptions()),
      new OutlierDetector<Endpoint>(config.outlier, this.clock, this.random),
      budgetOf(config, this.clock),
      hedgingOf(config, this.clock),
    );
    this.panic = new PanicThreshold<Endpoint>({ panicThreshold: config.panicThreshold });
    this.setMembers(config.endpoints);
    this.callerSteps = steps;
    this.dispatch = requestPipeline(steps, this.path);
  }

  /**
   * Replaces the caller's steps (on reload): requests already under way finish with the chain
   * they started with, new ones take the new chain.
   */
  setSteps(steps: readonly Step[]): void {
    this.callerSteps = steps;
    (this as { dispatch: Dispatch }).dispatch = requestPipeline(steps, this.path);
  }

  /**
   * A call of the gRPC method at `path`. An idempotent method has one record, shared by its
   * calls, so what an answer teaches (GrpcCall.streams) holds for the next; the others learn
   * nothing (their answers are never held) and get a record each — so names a client makes up
   * never fill the table, which the configured methods bound.
   */
  grpcCall(path: string): GrpcCall {
    let call = this.grpcMethods.get(path);
    if (call !== undefined) return call;
    call = grpcCallOf(path, this.config.grpc);
    if (call.idempotent && this.grpcMethods.size < GRPC_METHODS_COUNTED) this.grpcMethods.set(path, call);
    return call;
  }

  /**
   * One gRPC call finished with `status` (-1: none). Methods are counted by name up to
   * GRPC_METHODS_COUNTED; past that a client sending made-up names cannot grow the table (and
   * the metrics) without bound: the rest count under `other`.
   */
  countGrpc(path: string, status: number): void {
    const q = path.indexOf('?');
    let method = q < 0 ? path : path.slice(0, q);
    let counts = this.grpcCalls.get(method);
    if (counts === undefined) {
      if (this.grpcCalls.size >= GRPC_METHODS_COUNTED) method = 'other';
      counts = this.grpcCalls.get(method);
      if (counts === undefined) {
        counts = new Array<number>(18).fill(0);
        this.grpcCalls.set(method, counts);
      }
    }
    counts[status >= 0 && status <= 16 ? status : 17]!++;
  }

  /** Latency samples are stamped with the Upstream's clock (Attempt): peak-EWMA decays on it too. */
  private balancerOptions(): BalancerOptions {
    const clock = this.clock;
    return { now: () => clock.now() };
  }

  /** True while too few endpoints are eligible and traffic is spread over all. */
  get inPanic(): boolean {
    return this.panicking;
  }

  get settings(): UpstreamSettings {
    return this.config;
  }

  get endpoints(): readonly Endpoint[] {
    return this.members;
  }

  /**
   * Applies a new config for this service (reload). Endpoints present before and after keep
   * their pools and statistics; removed ones finish their in-flight requests, then close.
   */
  update(config: UpstreamSettings): void {
    const poolChanged = JSON.stringify(config.pool) !== JSON.stringify(this.config.pool);
    const probesChanged = JSON.stringify(config.healthCheck) !== JSON.stringify(this.config.healthCheck);
    const outlierChanged = JSON.stringify(config.outlier) !== JSON.stringify(this.config.outlier);
    if (config.balancer !== this.config.balancer) this.path.balancer = createBalancer<Endpoint>(config.balancer, this.balancerOptions());
    if (config.panicThreshold !== this.config.panicThreshold) this.panic = new PanicThreshold<Endpoint>({ panicThreshold: config.panicThreshold });
    if (outlierChanged) this.replaceOutlierDetector(config);
    if (JSON.stringify(budgetOptionsOf(config)) !== JSON.stringify(budgetOptionsOf(this.config))) this.path.budget = budgetOf(config, this.clock);
    if (JSON.stringify(config.hedge) !== JSON.stringify(this.config.hedge) || (config.retry === false) !== (this.config.retry === false)) {
      // Recent latency is kept: it describes the endpoints, not the settings.
      this.path.hedging = hedgingOf(config, this.clock, this.path.hedging?.latency);
    }
    // Which methods are idempotent may have changed: the records are made again, and relearn.
    if (JSON.stringify(config.grpc) !== JSON.stringify(this.config.grpc)) this.grpcMethods.clear();
    this.config = config;
    this.path.settings = config;
    // Steps that are off are not in the chain: which are on may have changed.
    (this as { dispatch: Dispatch }).dispatch = requestPipeline(this.callerSteps, this.path);
    if (poolChanged) {
      const old = this.members;
      this.members = [];
      for (const e of old) this.retire(e, false);
      this.setMembers(config.endpoints);
      void Promise.all(old.map((e) => e.pool.close()));
    } else {
      if (probesChanged) {
        for (const [endpoint, watch] of this.watches) {
          void watch.prober?.stop();
          watch.prober = this.startProber(endpoint);
        }
      }
      this.setMembers(config.endpoints);
    }
  }

  setMembers(list: readonly EndpointInit[]): void {
    const byId = new Map(this.members.map((e) => [e.id, e]));
    const next: Endpoint[] = [];
    const settings = this.config.pool;
    for (const ep of list) {
      const id = formatEndpoint(ep.host, ep.port, ep.tls === true);
      const existing = byId.get(id);
      if (existing) {
        existing.weight = ep.weight;
        next.push(existing);
        byId.delete(id);
      } else {
        next.push(this.admit(new Endpoint(ep, settings, healthOptionsOf(this.config), this.clock.now(), this.hooks.pool)));
      }
    }
    for (const removed of byId.values()) this.retire(removed, true);
    this.members = next;
    this.path.outlier.setMembers(next);
    this.path.balancer.setMembers(next);
    this.refresh();
  }

  /** Starts watching a new member: its transitions and, when configured, its prober. */
  private admit(endpoint: Endpoint): Endpoint {
    const subscription = endpoint.health.onTransition((t) => this.transitioned(endpoint, t));
    this.watches.set(endpoint, { subscription, prober: this.startProber(endpoint) });
    return endpoint;
  }

  /** Stops watching a member that leaves; its pool closes once idle when `closePool`. */
  private retire(endpoint: Endpoint, closePool: boolean): void {
    const watch = this.watches.get(endpoint);
    this.watches.delete(endpoint);
    watch?.subscription.dispose();
    void watch?.prober?.stop();
    if (closePool) void endpoint.pool.close();
  }

  private startProber(endpoint: Endpoint): HealthProber | undefined {
    const hc = this.config.healthCheck;
    if (hc === false) return undefined;
    const transport = { tls: this.config.pool.tls ?? DEFAULT_UPSTREAM_TLS, http2: this.config.pool.http2 === true };
    const grpcService = this.config.protocol === 'grpc' ? this.config.grpc?.healthService ?? '' : undefined;
    const prober = new HealthProber(endpoint, { path: hc.path, intervalMs: hc.intervalMs, timeoutMs: hc.timeoutMs, grpcService }, this.clock, this.random, transport);
    prober.start();
    return prober;
  }

  /**
   * A new detector forgets failure counts and ejection timers; an endpoint it had ejected gets
   * its own timer here so it still comes back when its time is up.
   */
  private replaceOutlierDetector(config: UpstreamSettings): void {
    this.path.outlier.close();
    this.path.outlier = new OutlierDetector<Endpoint>(config.outlier, this.clock, this.random);
    this.path.outlier.setMembers(this.members);
    for (const e of this.members) {
      const state = e.health.state;
      if (state.kind !== 'ejected') continue;
      // +1: a real timer may fire a fraction of a millisecond early, and expiry would be refused.
      this.clock.setTimeout(() => e.health.expireEjection(this.clock.now()), Math.max(0, state.until - this.clock.now()) + 1);
    }
  }

  private transitioned(endpoint: Endpoint, t: HealthTransition): void {
    endpoint.transitions[HEALTH_STATE_KINDS.indexOf(t.to.kind)]!++;
    if (t.to.kind === 'ejected') this.stats.ejections++;
    this.refresh();
    this.hooks.onTransition?.({ service: this.name, endpoint: endpoint.id, from: t.from.kind, to: t.to.kind, reason: t.reason });
  }

  /** Recomputes the candidates: on membership and health changes only, never per request. */
  private refresh(): void {
    this.path.candidates = this.panic.select(this.members);
    const panicking = this.panic.inPanic && this.members.length > 0;
    if (panicking !== this.panicking) {
      this.panicking = panicking;
      this.hooks.onPanic?.(this.name, panicking);
    }
  }

  /**
   * Retries by reason, hedges sent and won, refused retries and hedges, what the budget allows
   * now and the current hedge delay (null while unknown or off), for /admin/cluster.
   */
  retrySnapshot(): { retries: Record<string, number>; hedges: number; hedgeWins: number; hedgeDelayMs: number | null; budgetExhausted: number; budgetAvailable: number | null } {
    const retries: Record<string, number> = {};
    FAILURE_KINDS.forEach((kind, i) => { retries[kind] = this.stats.retries[i]!; });
    const delay = this.path.hedging?.policy.delayFor(this.path.hedging.policy.options.methods[0] ?? 'GET');
    return {
      retries,
      hedges: this.stats.hedges,
      hedgeWins: this.stats.hedgeWins,
      hedgeDelayMs: delay === undefined ? null : Math.round(delay * 100) / 100,
      budgetExhausted: this.stats.budgetExhausted,
      budgetAvailable: this.path.budget?.available ?? null,
    };
  }

  snapshot(): EndpointSnapshot[] {
    const now = this.clock.now();
    return this.members.map((e) => ({
      id: e.id,
      weight: e.weight,
      state: e.health.state.kind,
      ...ejectionOf(e, now, this.path.outlier.timesEjected(e)),
      inflight: e.inflight,
      latencyEstimateMs: Math.round(e.ewmaMs * 100) / 100,
      connections: e.connections,
      responses: { '1xx': e.responses[0]!, '2xx': e.responses[1]!, '3xx': e.responses[2]!, '4xx': e.responses[3]!, '5xx': e.responses[4]!, error: e.responses[5]! },
    }));
  }

  /** Closes every pool once its in-flight requests finish. */
  async close(): Promise<void> {
    const members = this.stopWatching();
    await Promise.all(members.map((e) => e.pool.close()));
  }

  /** Closes every pool now, failing whatever is still in flight. */
  async destroy(): Promise<void> {
    const members = this.stopWatching();
    await Promise.all(members.map((e) => e.pool.destroy()));
  }

  /** Stops probers, timers and listeners; returns the members, now removed. */
  private stopWatching(): Endpoint[] {
    const members = this.members;
    this.members = [];
    this.path.candidates = [];
    for (const e of members) this.retire(e, false);
    this.path.outlier.close();
    this.path.hedgeQueue.clear();
    return members;
  }
}

function ejectionOf(e: Endpoint, now: number, times: number): { ejectedUntil?: string; timesEjected?: number } {
  const state = e.health.state;
  if (state.kind === 'ejected') return { ejectedUntil: new Date(Date.now() + (state.until - now)).toISOString(), timesEjected: times };
  return times > 0 ? { timesEjected: times } : {};
}

function healthOptionsOf(c: UpstreamSettings): Partial<HealthOptions> {
  // Without active checks the thresholds still matter: probation → healthy counts requests.
  return c.healthCheck === false ? {} : { healthyThreshold: c.healthCheck.healthyThreshold, unhealthyThreshold: c.healthCheck.unhealthyThreshold };
}

function budgetOptionsOf(c: UpstreamSettings): RetrySettings['budget'] | undefined {
  return c.retry === false ? undefined : c.retry.budget;
}

function budgetOf(c: UpstreamSettings, clock: Clock): RetryBudget | undefined {
  const b = budgetOptionsOf(c);
  return b === undefined ? undefined : new RetryBudget(b, clock);
}

/** Hedges draw on the retry budget and count as attempts: no hedging without retries. */
function hedgingOf(c: UpstreamSettings, clock: Clock, latency?: LatencyTracker): { policy: HedgePolicy; latency: LatencyTracker } | undefined {
  if (c.hedge === false || c.retry === false) return undefined;
  const tracker = latency ?? new LatencyTracker({}, clock);
  const policy = new HedgePolicy(tracker, c.hedge);
  return { policy, latency: tracker };
}
