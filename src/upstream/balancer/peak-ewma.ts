import { EWMA_DECAY_MS, PEAK_DECAY_MS, SLOW_START_MIN_FACTOR, SLOW_START_MS } from '../endpoint.js';
import { defaultRandomInt, type Balancer, type Pickable, type RandomInt } from './balancer.js';

/**
 * Lowest latency estimate used in a cost (ms). Without it an estimate of 0 (nothing known yet)
 * would make any queue look free; with it, endpoints that know nothing compare by requests in
 * flight, as least-request does. Well below any real round trip, so it never decides otherwise.
 */
const FLOOR_MS = 0.01;
/** How often the service's typical latency (the prior) is recomputed from the candidates. */
const PRIOR_REFRESH_MS = 100;
/** Resolution of the coin that settles a comparison. */
const COIN = 1 << 30;

/**
 * Peak-EWMA with power of two choices (Finagle, Linkerd): sample two distinct candidates and
 * compare their cost = latency estimate × (inflight + 1) ÷ (weight × slow-start factor).
 *
 * Where Finagle and Linkerd always take the cheaper of the two, this takes it with probability
 * b² / (a² + b²) for costs a < b: equal costs are a fair coin, a 2× cost gives the costlier one
 * 20 % of its comparisons, 5× under 4 %, 30× about 0.1 %. Among identical instances the
 * estimates differ only by noise, and a strict comparison turns noise into a strict order in
 * which the cheapest instance wins every comparison it is in (2/3 of the traffic of three) and
 * the costliest none (tandem issue 12; linkerd2 #14086): the soft comparison keeps such shares
 * within a few percent, while a really slower or busier endpoint still gets little. Every
 * endpoint keeps getting a trickle, so its estimate stays current and a recovery is seen.
 *
 * The estimate (see Endpoint.observeLatency) is the moving average, plus a peak that jumps to a
 * slow sample and decays over PEAK_DECAY_MS, while the average drifts back toward the service's
 * typical latency (the prior: the median of the candidates' averages) over EWMA_DECAY_MS without
 * samples — toward the prior rather than toward 0 as in Finagle, so an avoided endpoint comes
 * back to an even chance, not to a flood. An endpoint without samples is read as the prior.
 *
 * A new endpoint, or one back from failing health checks, is in slow start (Envoy's
 * slow_start_window): its weight ramps from SLOW_START_MIN_FACTOR to 1 over SLOW_START_MS, so a
 * cold process gets a trickle first and its fair share after a second.
 *
 * All decay is computed at pick time from stamps and never written back: a pick writes nothing
 * on the endpoints and allocates nothing.
 */
export class PeakEwmaBalancer<E extends Pickable = Pickable> implements Balancer<E> {
  readonly kind = 'peak-ewma' as const;
  private readonly random: RandomInt;
  private readonly now: () => number;
  /** The service's typical latency (ms), 0 while no candidate has a sample. */
  private prior = 0;
  private priorAt = -Infinity;
  private scratch = new Float64Array(8);

  /** `now` must be the clock the endpoints stamp samples with (performance.now() by default). */
  constructor(random: RandomInt = defaultRandomInt, now: () => number = () => performance.now()) {
    this.random = random;
    this.now = now;
  }

  setMembers(_members: readonly E[]): void {
    // The estimates live on the endpoints; the prior is refreshed from the candidates.
    this.priorAt = -Infinity;
  }

  /** The current prior, for tests and introspection. */
  get typicalLatencyMs(): number {
    return this.prior;
  }

  pick(candidates: readonly E[], _hashKey: string | undefined): E {
    const n = candidates.length;
    if (n === 1) return candidates[0]!;
    const now = this.now();
    if (now - this.priorAt >= PRIOR_REFRESH_MS || now < this.priorAt) this.refreshPrior(candidates, now);
    const i = this.random(n);
    let j = this.random(n - 1);
    // Draw j from the n - 1 others: shifting past i keeps the pair distinct and uniform.
    if (j >= i) j++;
    const first = candidates[i]!;
    const second = candidates[j]!;
    const a = cost(first, now, this.prior);
    const b = cost(second, now, this.prior);
    if (a === b) return first; // drawn at random: a tie is already a fair coin
    const cheap = a < b ? first : second;
    const low = a < b ? a : b;
    const high = a < b ? b : a;
    if (high === Infinity) return cheap;
    const ratio = low / high;
    const costlierOdds = (ratio * ratio) / (1 + ratio * ratio);
    return this.random(COIN) < costlierOdds * COIN ? (cheap === first ? second : first) : cheap;
  }

  /** Median of the candidates' moving averages, over those with samples. */
  private refreshPrior(candidates: readonly E[], now: number): void {
    this.priorAt = now;
    if (this.scratch.length < candidates.length) this.scratch = new Float64Array(candidates.length * 2);
    let count = 0;
    for (let k = 0; k < candidates.length; k++) {
      const c = candidates[k]!;
      if (c.ewmaSamples > 0) this.scratch[count++] = c.ewmaMs;
    }
    if (count === 0) {
      this.prior = 0;
      return;
    }
    const sorted = this.scratch.subarray(0, count).sort();
    this.prior = count % 2 === 1 ? sorted[count >> 1]! : (sorted[(count >> 1) - 1]! + sorted[count >> 1]!) / 2;
  }
}

/** The latency the balancer believes `endpoint` has now (ms). Exported for tests. */
export function latencyEstimate(endpoint: Pickable, now: number, prior: number): number {
  if (endpoint.ewmaSamples === 0) return prior;
  const idle = now > endpoint.ewmaStamp ? now - endpoint.ewmaStamp : 0;
  let estimate = prior + (endpoint.ewmaMs - prior) * Math.exp(-idle / EWMA_DECAY_MS);
  if (endpoint.peakMs > 0) {
    const since = now > endpoint.peakStamp ? now - endpoint.peakStamp : 0;
    estimate += endpoint.peakMs * Math.exp(-since / PEAK_DECAY_MS);
  }
  return estimate;
}

/** The slow-start factor of `endpoint` at `now`: SLOW_START_MIN_FACTOR → 1 over SLOW_START_MS. */
export function warmth(endpoint: Pickable, now: number): number {
  const age = now - endpoint.warmingSince;
  if (age >= SLOW_START_MS) return 1;
  const ramp = age / SLOW_START_MS;
  return ramp > SLOW_START_MIN_FACTOR ? ramp : SLOW_START_MIN_FACTOR;
}

function cost(endpoint: Pickable, now: number, prior: number): number {
  if (endpoint.weight <= 0) return Infinity;
  const estimate = latencyEstimate(endpoint, now, prior);
  return ((estimate > FLOOR_MS ? estimate : FLOOR_MS) * (endpoint.inflight + 1)) / (endpoint.weight * warmth(endpoint, now));
}
