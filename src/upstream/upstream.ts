import { TandemError } from '../core/errors.js';
import { formatHostPort } from '../core/address.js';
import type { ServiceConfig, EndpointConfig } from '../config/types.js';
import { Endpoint, HEALTH_STATE_KINDS, type PoolSettings } from './endpoint.js';
import { realClock, type Clock } from '../core/clock.js';
import { OutlierDetector, type OutlierOptions } from './health/outlier.js';
import { PanicThreshold } from './health/panic.js';
import { HealthProber } from './health/prober.js';
import type { HealthOptions, HealthStateKind, HealthTransition, TransitionReason } from './health/state.js';
import { Attempt } from './attempt.js';
import { RetryingRequest, type RetryHost } from './retrying-request.js';
import { RetryBudget } from './resilience/budget.js';
import { DueQueue } from './resilience/due-queue.js';
import { HedgePolicy } from './resilience/hedge.js';
import { LatencyTracker } from './resilience/latency.js';
import { FAILURE_KINDS, drawsOnBudget, type FailureKind } from './resilience/retry-policy.js';
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
  /** Time for health decisions; tests pass a FakeClock. */
  clock?: Clock;
  /** Uniform [0, 1) for jitter; tests pin it. */
  random?: () => number;
  /** Every endpoint state change. Runs synchronously inside the transition: keep it cheap. */
  onTransition?: (transition: EndpointTransition) => void;
  /** The service entered (true) or left (false) panic. */
  onPanic?: (service: string, panic: boolean) => void;
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
export class Upstream implements RetryHost {
  readonly name: string;
  private config: ServiceConfig;
  private members: Endpoint[] = [];
  /** Members that may take a request now. Rebuilt on change, never per request. */
  private candidates: readonly Endpoint[] = [];
  private balancer: Balancer<Endpoint>;
  private outlier: OutlierDetector<Endpoint>;
  private panic: PanicThreshold<Endpoint>;
  private readonly watches = new Map<Endpoint, Watch>();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly hooks: UpstreamOptions;
  private panicking = false;
  /** Shared by every request of the service; undefined when retries are off. */
  private budget: RetryBudget | undefined;
  /** When to hedge, from recent latency; undefined when hedging (or retrying) is off. */
  private hedging: { policy: HedgePolicy; latency: LatencyTracker } | undefined;
  /** One timer for every pending hedge of the service. */
  private readonly hedgeQueue: DueQueue<RetryingRequest>;
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

  constructor(config: ServiceConfig, steps: readonly Step[] = [], options: UpstreamOptions = {}) {
    this.name = config.name;
    this.config = config;
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.hooks = options;
    this.balancer = createBalancer<Endpoint>(config.balancer);
    this.outlier = new OutlierDetector<Endpoint>(outlierOptionsOf(config), this.clock, this.random);
    this.panic = new PanicThreshold<Endpoint>({ panicThreshold: config.panicThreshold });
    this.budget = budgetOf(config, this.clock);
    this.hedging = hedgingOf(config, this.clock);
    this.hedgeQueue = new DueQueue<RetryingRequest>(this.clock, hedgeDue);
    this.setMembers(config.endpoints);
    this.dispatch = compose(steps, (request, handler) => this.send(request, handler));
  }

  /** True while too few endpoints are eligible and traffic is spread over all. */
  get inPanic(): boolean {
    return this.panicking;
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
    const probesChanged = JSON.stringify(config.healthCheck) !== JSON.stringify(this.config.healthCheck);
    const outlierChanged = JSON.stringify(outlierOptionsOf(config)) !== JSON.stringify(outlierOptionsOf(this.config));
    if (config.balancer !== this.config.balancer) this.balancer = createBalancer<Endpoint>(config.balancer);
    if (config.panicThreshold !== this.config.panicThreshold) this.panic = new PanicThreshold<Endpoint>({ panicThreshold: config.panicThreshold });
    if (outlierChanged) this.replaceOutlierDetector(config);
    if (JSON.stringify(budgetOptionsOf(config)) !== JSON.stringify(budgetOptionsOf(this.config))) this.budget = budgetOf(config, this.clock);
    if (JSON.stringify(config.hedge) !== JSON.stringify(this.config.hedge) || (config.retry === false) !== (this.config.retry === false)) {
      // Recent latency is kept: it describes the endpoints, not the settings.
      this.hedging = hedgingOf(config, this.clock, this.hedging?.latency);
    }
    this.config = config;
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
        next.push(this.admit(new Endpoint(ep, settings, healthOptionsOf(this.config), this.clock.now())));
      }
    }
    for (const removed of byId.values()) this.retire(removed, true);
    this.members = next;
    this.outlier.setMembers(next);
    this.balancer.setMembers(next);
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
    const prober = new HealthProber(endpoint, { path: hc.path, intervalMs: hc.interval, timeoutMs: hc.timeout }, this.clock, this.random);
    prober.start();
    return prober;
  }

  /**
   * A new detector forgets failure counts and ejection timers; an endpoint it had ejected gets
   * its own timer here so it still comes back when its time is up.
   */
  private replaceOutlierDetector(config: ServiceConfig): void {
    this.outlier.close();
    this.outlier = new OutlierDetector<Endpoint>(outlierOptionsOf(config), this.clock, this.random);
    this.outlier.setMembers(this.members);
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
    this.candidates = this.panic.select(this.members);
    const panicking = this.panic.inPanic && this.members.length > 0;
    if (panicking !== this.panicking) {
      this.panicking = panicking;
      this.hooks.onPanic?.(this.name, panicking);
    }
  }

  /**
   * The terminal step: an attempt loop (RetryingRequest) per request. Upgrades are sent once:
   * a tunnel is not replayed.
   */
  private send(request: UpstreamRequest, handler: ResponseHandler): void {
    if (request.upgrade !== undefined) {
      const endpoint = this.pickFirst(request.hashKey);
      if (endpoint === undefined) handler.onError(this.noEndpoint());
      else Attempt.send(endpoint, request, handler, this.config.timeout, this.outlier);
      return;
    }
    if (this.stats.active >= this.config.concurrencyLimit) {
      // Fail fast rather than queue without bound: the client (or the gateway's caller) can go
      // elsewhere or come back; a queue would only turn overload into timeouts.
      this.stats.overloaded++;
      this.stats.local[4]!++;
      handler.onError(new TandemError('TANDEM_ERR_OVERLOADED', `service ${this.name} has ${this.stats.active} requests in progress (concurrencyLimit ${this.config.concurrencyLimit})`, { status: 503, retryable: true }));
      return;
    }
    this.stats.active++;
    this.budget?.recordRequest();
    new RetryingRequest(this, request, handler, this.config.retry, request.timeoutMs ?? this.config.timeout).start();
  }

  pickFirst(hashKey: string | undefined): Endpoint | undefined {
    const candidates = this.candidates;
    return candidates.length === 0 ? undefined : this.balancer.pick(candidates, hashKey);
  }

  pickAgain(hashKey: string | undefined, tried: readonly Endpoint[], last: Endpoint): Endpoint | undefined {
    const candidates = this.candidates;
    let rest = candidates.filter((e) => !tried.includes(e));
    if (rest.length === 0) rest = candidates.filter((e) => e !== last);
    return rest.length === 0 ? undefined : this.balancer.pick(rest, hashKey);
  }

  createAttempt(endpoint: Endpoint, handler: ResponseHandler): Attempt {
    return new Attempt(endpoint, handler, this.outlier, this.hedging?.latency);
  }

  hedgeDelay(method: string): number | undefined {
    return this.hedging?.policy.delayFor(method);
  }

  scheduleHedge(request: RetryingRequest, delayMs: number): number {
    return this.hedgeQueue.add(request, this.clock.now() + delayMs);
  }

  cancelHedge(ticket: number): void {
    this.hedgeQueue.cancel(ticket);
  }

  withdrawHedge(): boolean {
    if (this.budget === undefined || !this.budget.tryWithdraw()) {
      this.stats.budgetExhausted++;
      return false;
    }
    this.stats.hedges++;
    return true;
  }

  hedgeWon(): void {
    this.stats.hedgeWins++;
  }

  withdrawRetry(failure: FailureKind): boolean {
    // A refused connection cost the endpoint nothing, so sending the request elsewhere adds no
    // load anywhere; the budget guards against retry storms on a struggling service, and
    // charging it here would fail requests that an instant retry saves (two of three instances
    // killed). Such retries are still bounded by `attempts`, and counted. A stale connection's
    // resend too, and it goes even with `retry: false` (no budget then).
    if (drawsOnBudget(failure)) {
      if (this.budget === undefined) return false;
      if (!this.budget.tryWithdraw()) {
        this.stats.budgetExhausted++;
        return false;
      }
    }
    this.stats.retries[FAILURE_KINDS.indexOf(failure)]!++;
    return true;
  }

  settled(): void {
    this.stats.active--;
  }

  noEndpoint(): TandemError {
    this.stats.local[4]!++;
    return new TandemError('TANDEM_ERR_NO_HEALTHY_ENDPOINT', `service ${this.name} has no endpoint available`, { status: 503, retryable: true });
  }

  /**
   * Retries by reason, hedges sent and won, refused retries and hedges, what the budget allows
   * now and the current hedge delay (null while unknown or off), for /admin/cluster.
   */
  retrySnapshot(): { retries: Record<string, number>; hedges: number; hedgeWins: number; hedgeDelayMs: number | null; budgetExhausted: number; budgetAvailable: number | null } {
    const retries: Record<string, number> = {};
    FAILURE_KINDS.forEach((kind, i) => { retries[kind] = this.stats.retries[i]!; });
    const delay = this.hedging?.policy.delayFor(this.hedging.policy.options.methods[0] ?? 'GET');
    return {
      retries,
      hedges: this.stats.hedges,
      hedgeWins: this.stats.hedgeWins,
      hedgeDelayMs: delay === undefined ? null : Math.round(delay * 100) / 100,
      budgetExhausted: this.stats.budgetExhausted,
      budgetAvailable: this.budget?.available ?? null,
    };
  }

  snapshot(): EndpointSnapshot[] {
    const now = this.clock.now();
    return this.members.map((e) => ({
      id: e.id,
      weight: e.weight,
      state: e.health.state.kind,
      ...ejectionOf(e, now, this.outlier.timesEjected(e)),
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
    this.candidates = [];
    for (const e of members) this.retire(e, false);
    this.outlier.close();
    this.hedgeQueue.clear();
    return members;
  }
}

function ejectionOf(e: Endpoint, now: number, times: number): { ejectedUntil?: string; timesEjected?: number } {
  const state = e.health.state;
  if (state.kind === 'ejected') return { ejectedUntil: new Date(Date.now() + (state.until - now)).toISOString(), timesEjected: times };
  return times > 0 ? { timesEjected: times } : {};
}

function healthOptionsOf(c: ServiceConfig): Partial<HealthOptions> {
  // Without active checks the thresholds still matter: probation → healthy counts requests.
  return c.healthCheck === false ? {} : { healthyThreshold: c.healthCheck.healthyThreshold, unhealthyThreshold: c.healthCheck.unhealthyThreshold };
}

function outlierOptionsOf(c: ServiceConfig): Partial<OutlierOptions> {
  return {
    consecutiveFailures: c.outlier.consecutiveFailures,
    baseEjectionMs: c.outlier.baseEjectionTime,
    maxEjectionMs: c.outlier.maxEjectionTime,
    maxEjectedShare: c.outlier.maxEjectedShare,
  };
}

function budgetOptionsOf(c: ServiceConfig): { percent: number; minPerSecond: number } | undefined {
  return c.retry === false ? undefined : c.retry.budget;
}

function budgetOf(c: ServiceConfig, clock: Clock): RetryBudget | undefined {
  const b = budgetOptionsOf(c);
  return b === undefined ? undefined : new RetryBudget({ percent: b.percent / 100, minPerSecond: b.minPerSecond }, clock);
}

/**
 * A hedge falls due in the timers phase of the event loop, which runs before I/O. After a
 * stall (a GC pause, a busy CPU) answers that have already arrived are still unread then, and
 * hedging at once would send copies of requests that are in fact answered. The decision waits
 * for the check phase, after I/O: a request answered meanwhile has settled and is left alone.
 */
function hedgeDue(request: RetryingRequest): void {
  setImmediate(decideHedge, request);
}

function decideHedge(request: RetryingRequest): void {
  request.hedgeDue();
}

/** Hedges draw on the retry budget and count as attempts: no hedging without retries. */
function hedgingOf(c: ServiceConfig, clock: Clock, latency?: LatencyTracker): { policy: HedgePolicy; latency: LatencyTracker } | undefined {
  if (c.hedge === false || c.retry === false) return undefined;
  const tracker = latency ?? new LatencyTracker({}, clock);
  const policy = new HedgePolicy(tracker, { percentile: c.hedge.percentile / 100, minDelayMs: c.hedge.minDelay, methods: c.hedge.methods });
  return { policy, latency: tracker };
}

function poolSettingsOf(c: ServiceConfig): PoolSettings {
  return {
    maxConnections: c.maxConnections,
    connectTimeoutMs: c.connectTimeout,
    keepAliveTimeoutMs: c.keepAliveTimeout,
    maxResponseHeaderSize: c.maxResponseHeaderSize,
  };
}
