import { realClock, type Clock } from '../../core/clock.js';
import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import { TandemError } from '../../core/errors.js';

/**
 * Recent latency of one service, for hedging: "how long does a normal request take right
 * now?". The last `capacity` samples are kept in a ring with their time; a percentile looks
 * only at samples younger than `windowMs`, so a burst long ago does not set today's delay.
 * Recording is two array writes; a percentile sorts at most every `refreshMs` of Clock time and
 * answers from the sorted copy in between.
 */
export interface LatencyTrackerOptions {
  capacity: number;
  windowMs: number;
  minSamples: number;
  refreshMs: number;
}

/** 1024 samples, the last 30 s, at least 50, sorted at most every 100 ms (core/defaults/upstream.ts says why). */
export const DEFAULT_LATENCY_TRACKER: Readonly<LatencyTrackerOptions> = Object.freeze({
  capacity: UPSTREAM_DEFAULTS.latency.capacity,
  windowMs: UPSTREAM_DEFAULTS.latency.window,
  minSamples: UPSTREAM_DEFAULTS.latency.minSamples,
  refreshMs: UPSTREAM_DEFAULTS.latency.refresh,
});

export class LatencyTracker {
  readonly options: Readonly<LatencyTrackerOptions>;
  private readonly values: Float64Array;
  private readonly stamps: Float64Array;
  private readonly sorted: Float64Array;
  /** Next ring slot to write, and samples held (≤ capacity). */
  private next = 0;
  private held = 0;
  /** Samples in `sorted` (the recent ones at the last refresh) and when that was. */
  private sortedCount = 0;
  private refreshedAt = -Infinity;

  constructor(options: Partial<LatencyTrackerOptions> = {}, private readonly clock: Clock = realClock) {
    this.options = resolveTrackerOptions(options);
    this.values = new Float64Array(this.options.capacity);
    this.stamps = new Float64Array(this.options.capacity);
    this.sorted = new Float64Array(this.options.capacity);
  }

  /** Records one latency in ms. Pass `now` when the caller already read the clock. */
  record(ms: number, now: number = this.clock.now()): void {
    if (!(ms >= 0)) return; // NaN or negative: a caller's bug must not poison every percentile
    this.values[this.next] = ms;
    this.stamps[this.next] = now;
    this.next = (this.next + 1) % this.options.capacity;
    if (this.held < this.options.capacity) this.held++;
  }

  /**
   * The latency below which a share `q` (0..1) of the recent samples fall (nearest rank), or
   * undefined while there are fewer than `minSamples` recent samples.
   */
  percentile(q: number): number | undefined {
    this.refresh();
    const n = this.sortedCount;
    if (n < this.options.minSamples) return undefined;
    const rank = Math.min(n, Math.max(1, Math.ceil(q * n)));
    return this.sorted[rank - 1]!;
  }

  /** Recent samples at the last refresh (what `percentile` answers from). */
  get samples(): number {
    this.refresh();
    return this.sortedCount;
  }

  private refresh(): void {
    const now = this.clock.now();
    if (now - this.refreshedAt < this.options.refreshMs) return;
    this.refreshedAt = now;
    const oldest = now - this.options.windowMs;
    let n = 0;
    for (let i = 0; i < this.held; i++) {
      if (this.stamps[i]! >= oldest) this.sorted[n++] = this.values[i]!;
    }
    this.sortedCount = n;
    // Typed arrays sort numerically; subarray shares the buffer (one small view per refresh).
    this.sorted.subarray(0, n).sort();
  }
}

function resolveTrackerOptions(options: Partial<LatencyTrackerOptions>): Readonly<LatencyTrackerOptions> {
  const resolved: LatencyTrackerOptions = {
    capacity: options.capacity ?? DEFAULT_LATENCY_TRACKER.capacity,
    windowMs: options.windowMs ?? DEFAULT_LATENCY_TRACKER.windowMs,
    minSamples: options.minSamples ?? DEFAULT_LATENCY_TRACKER.minSamples,
    refreshMs: options.refreshMs ?? DEFAULT_LATENCY_TRACKER.refreshMs,
  };
  if (!Number.isInteger(resolved.capacity) || resolved.capacity < 1) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `latency.capacity must be an integer >= 1, got ${resolved.capacity}`);
  }
  if (!Number.isInteger(resolved.minSamples) || resolved.minSamples < 1 || resolved.minSamples > resolved.capacity) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `latency.minSamples must be an integer in [1, capacity], got ${resolved.minSamples}`);
  }
  if (!(resolved.windowMs > 0)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `latency.windowMs must be > 0, got ${resolved.windowMs}`);
  if (!(resolved.refreshMs >= 0)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `latency.refreshMs must be >= 0, got ${resolved.refreshMs}`);
  return Object.freeze(resolved);
}
