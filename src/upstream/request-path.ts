import { TandemError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { Endpoint } from './endpoint.js';
import type { UpstreamSettings } from './settings.js';
import type { Balancer } from './balancer/balancer.js';
import type { OutlierDetector } from './health/outlier.js';
import type { RetryBudget } from './resilience/budget.js';
import { DueQueue } from './resilience/due-queue.js';
import type { HedgePolicy } from './resilience/hedge.js';
import type { LatencyTracker } from './resilience/latency.js';
import { FAILURE_KINDS, drawsOnBudget, type FailureKind } from './resilience/retry-policy.js';
import type { HedgeRace } from './resilience/hedge-step.js';

/** The counters a service's requests bump (the Upstream's `stats`). */
export interface RequestCounters {
  local: number[];
  overloaded: number;
  retries: number[];
  budgetExhausted: number;
  hedges: number;
  hedgeWins: number;
  active: number;
}

/**
 * What a service's request steps read and spend while a request is in flight: the endpoints
 * that may take one, the balancer, outlier detection, the retry budget and hedging. The
 * Upstream owns it, swaps its parts on membership, health and settings changes, and never
 * hands it out: only the steps (pipeline.ts) talk to it, so none of it is on the Upstream's
 * public surface.
 */
export class RequestPath {
  /** Members that may take a request now. Rebuilt on change, never per request. */
  candidates: readonly Endpoint[] = [];
  /** One timer for every pending hedge of the service. */
  readonly hedgeQueue: DueQueue<HedgeRace>;

  constructor(
    readonly name: string,
    /** The service's settings now (replaced on reload). */
    public settings: UpstreamSettings,
    readonly clock: Clock,
    readonly random: () => number,
    readonly stats: RequestCounters,
    public balancer: Balancer<Endpoint>,
    public outlier: OutlierDetector<Endpoint>,
    /** Shared by every request of the service; undefined when retries are off. */
    public budget: RetryBudget | undefined,
    /** When to hedge, from recent latency; undefined when hedging (or retrying) is off. */
    public hedging: { policy: HedgePolicy; latency: LatencyTracker } | undefined,
  ) {
    this.hedgeQueue = new DueQueue<HedgeRace>(clock, hedgeDue);
  }

  /** An endpoint for a first attempt; undefined when none can take a request. */
  pickFirst(hashKey: string | undefined): Endpoint | undefined {
    const candidates = this.candidates;
    return candidates.length === 0 ? undefined : this.balancer.pick(candidates, hashKey);
  }

  /** One not in `tried`, else any but `last`; undefined when there is none. */
  pickAgain(hashKey: string | undefined, tried: readonly Endpoint[], last: Endpoint): Endpoint | undefined {
    const candidates = this.candidates;
    let rest = candidates.filter((e) => !tried.includes(e));
    if (rest.length === 0) rest = candidates.filter((e) => e !== last);
    return rest.length === 0 ? undefined : this.balancer.pick(rest, hashKey);
  }

  /** True when pickAgain with `last` can find an endpoint: there is a candidate besides it. */
  hasCandidateBesides(last: Endpoint): boolean {
    for (const e of this.candidates) if (e !== last) return true;
    return false;
  }

  /** Milliseconds after which a request with this method is hedged; undefined = never. */
  hedgeDelay(method: string, idempotentCall?: boolean): number | undefined {
    return this.hedging?.policy.delayFor(method, idempotentCall);
  }

  /** Calls `race.hedgeDue()` `delayMs` from now; returns a ticket for `cancelHedge`. */
  scheduleHedge(race: HedgeRace, delayMs: number): number {
    return this.hedgeQueue.add(race, this.clock.now() + delayMs);
  }

  cancelHedge(ticket: number): void {
    this.hedgeQueue.cancel(ticket);
  }

  /** Takes a hedge from the retry budget (counted), or counts the refusal and says no. */
  withdrawHedge(): boolean {
    if (this.budget === undefined || !this.budget.tryWithdraw()) {
      this.stats.budgetExhausted++;
      return false;
    }
    this.stats.hedges++;
    return true;
  }

  /** A hedge answered first (counted). */
  hedgeWon(): void {
    this.stats.hedgeWins++;
  }

  /** Takes a retry from the budget (counted by reason), or counts the refusal and says no. */
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

  /** The error for a request no endpoint can take (counted). */
  noEndpoint(): TandemError {
    this.stats.local[4]!++;
    return new TandemError('TANDEM_ERR_NO_HEALTHY_ENDPOINT', `service ${this.name} has no endpoint available`, { status: 503, retryable: true });
  }
}

/**
 * A hedge falls due in the timers phase of the event loop, which runs before I/O. After a
 * stall (a GC pause, a busy CPU) answers that have already arrived are still unread then, and
 * hedging at once would send copies of requests that are in fact answered. The decision waits
 * for the check phase, after I/O: a request answered meanwhile has settled and is left alone.
 */
function hedgeDue(race: HedgeRace): void {
  setImmediate(decideHedge, race);
}

function decideHedge(race: HedgeRace): void {
  race.hedgeDue();
}
