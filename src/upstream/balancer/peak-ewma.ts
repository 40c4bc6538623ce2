import { EWMA_DECAY_MS } from '../endpoint.js';
import { defaultRandomInt, type Balancer, type Pickable, type RandomInt } from './balancer.js';
import { powerOfTwoChoices } from './p2c.js';

/** Cost of an endpoint whose latency estimate decayed to 0 but that has requests in flight. */
const PENALTY = 1e9;

/**
 * Peak-EWMA with power of two choices (Finagle, Linkerd): sample two distinct candidates and
 * take the lower cost = latency estimate × (inflight + 1) / weight. The estimate jumps to a
 * slow sample at once and forgets it over EWMA_DECAY_MS, so a slowing endpoint sheds traffic
 * within one response, and the inflight factor spreads a burst before latencies come back.
 *
 * The estimate also decays while no samples arrive, as Finagle's and Linkerd's do: an endpoint
 * avoided after a slow spike gets no samples, and without decay it would stay avoided forever.
 * The decay is computed from `ewmaStamp` at pick time and never written back; `ewmaStamp === 0`
 * means no sample yet, so the initial estimate is used as is.
 */
export class PeakEwmaBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'peak-ewma' as const;
  private readonly random: RandomInt;
  private readonly now: () => number;

  /** `now` must be the clock the endpoints stamp samples with (performance.now() by default). */
  constructor(random: RandomInt = defaultRandomInt, now: () => number = () => performance.now()) {
    this.random = random;
    this.now = now;
  }

  setMembers(_members: readonly E[]): void {
    // Stateless: the estimates live on the endpoints.
  }

  pick(candidates: readonly E[], _hashKey: string | undefined): E {
    if (candidates.length === 1) return candidates[0]!;
    return powerOfTwoChoices(candidates, this.random, cost, this.now());
  }
}

function cost(endpoint: Pickable, now: number): number {
  if (endpoint.weight <= 0) return Infinity;
  let estimate = endpoint.ewmaMs;
  if (endpoint.ewmaStamp !== 0) {
    const idle = Math.max(0, now - endpoint.ewmaStamp);
    estimate *= Math.exp(-idle / EWMA_DECAY_MS);
  }
  // A zero estimate would make any queue look free; Finagle penalises it instead.
  const raw = estimate === 0 && endpoint.inflight > 0 ? PENALTY + endpoint.inflight : estimate * (endpoint.inflight + 1);
  return raw / endpoint.weight;
}
