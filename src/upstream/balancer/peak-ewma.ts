import { EWMA_DECAY_MS, PEAK_DECAY_MS, SETTLE_SAMPLES, SLOW_START_MIN_FACTOR, SLOW_START_MS } from '../endpoint.js';
import { defaultRandomInt, type Balancer, type Pickable, type RandomInt } from './balancer.js';

/**
 * Lowest latency estimate used in a cost (ms). Without it an estimate of 0 (nothing known yet)
 * would make any queue look free; with it, endpoints that know nothing compare by requests in
 * flight, as least-request does. Well below any real round trip, so it never decides otherwise.
 */
const FLOOR_MS = 0.01;
/**
 * Latency estimates within this ratio of each other count as equal; beyond it, only the part
 * past the band counts (3× slower weighs as 2×). On a busy machine identical instances differ
 * in measured latency by tens of percent, and the differences feed themselves — an instance
 * that gets fewer requests is descheduled more often and answers its next one later — which a
 * comparison of raw estimates turned into shares 2.7× apart in the balancing drill. In-flight
 * counts are not banded: a queue is never noise.
 */
const DEAD_BAND = 1.5;
/** How often the service's typical latency (the prior) is recomputed from the candidates. */
const PRIOR_REFRESH_MS = 100;
/** Resolution of the coin that settles a comparison. */
const COIN = 1 << 30;

/**
 * Peak-EWMA with power of two choices (Finagle, Linkerd): sample two distinct candidates and
 * compare their cost = latency estimate × (inflight + 1) ÷ (weight × slow-start factor), where
 * latency estimates within DEAD_BAND of each other count as equal.
 *
 * Where Finagle and Linkerd always take the cheaper of the two, this takes the costlier with
 * probability 1 / (1 + r²) for a cost ratio r: equal costs are a fair coin, 2× gives the
 * costlier one 20 % of its comparisons, 5× about 4 %, 30× about 0.1 %. Among identical
 * instances the estimates differ only by noise, and a strict comparison turns noise into a
 * strict order in which the cheapest instance wins every comparison it is in (2/3 of the
 * traffic of three) and the costliest none (tandem issue 12; linkerd2 #14086): the soft
 * comparison keeps such shares close, while a really slower or busier endpoint still gets
 * little. Every endpoint keeps getting a trickle, so its estimate stays current and a recovery
 * is seen.
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
    // The cost ratio of first to second: latency (dead-banded) × load.
    const loadA = load(first, now);
    const loadB = load(second, now);
    if (loadA === Infinity || loadB === Infinity) return loadA <= loadB ? first : second;
    let latency = floored(latencyEstimate(first, now, this.prior)) / floored(latencyEstimate(second, now, this.prior));
    latency = latency > DEAD_BAND ? latency / DEAD_BAND : latency < 1 / DEAD_BAND ? latency * DEAD_BAND : 1;
    const ratio = (latency * loadA) / loadB;
    if (ratio === 1) return first; // drawn at random: a tie is already a fair coin
    const x = ratio > 1 ? 1 / ratio : ratio;
    const costlierOdds = (x * x) / (1 + x * x);
    const costlier = ratio > 1 ? first : second;
    return this.random(COIN) < costlierOdds * COIN ? costlier : costlier === first ? second : first;
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
  // Too few answers to judge: no slower than typical (slow start and in-flight counts still apply).
  if (endpoint.ewmaSamples < SETTLE_SAMPLES && prior > 0 && prior < endpoint.ewmaMs) return prior;
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

/** Requests in flight, counting the one being placed, per unit of (slow-start ramped) weight. */
function load(endpoint: Pickable, now: number): number {
  if (endpoint.weight <= 0) return Infinity;
  return (endpoint.inflight + 1) / (endpoint.weight * warmth(endpoint, now));
}

function floored(estimate: number): number {
  return estimate > FLOOR_MS ? estimate : FLOOR_MS;
}
