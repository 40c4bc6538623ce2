/**
 * A latency histogram for the hot path: observing is a short loop over a typed array, with no
 * label hashing and no allocation. Exported to Prometheus at scrape time (see metrics.ts).
 */
export const LATENCY_BUCKETS_SECONDS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

export class LatencyHistogram {
  /** counts[i] = observations ≤ LATENCY_BUCKETS_SECONDS[i] and > the bucket before; last = +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    const n = LATENCY_BUCKETS_SECONDS.length;
    while (i < n && seconds > LATENCY_BUCKETS_SECONDS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }

  /** Cumulative counts per bucket upper bound, as Prometheus wants them. */
  cumulative(): Array<{ le: string; value: number }> {
    const out: Array<{ le: string; value: number }> = [];
    let acc = 0;
    for (let i = 0; i < LATENCY_BUCKETS_SECONDS.length; i++) {
      acc += this.counts[i]!;
      out.push({ le: String(LATENCY_BUCKETS_SECONDS[i]), value: acc });
    }
    acc += this.counts[LATENCY_BUCKETS_SECONDS.length]!;
    out.push({ le: '+Inf', value: acc });
    return out;
  }

  /** Approximate quantile (upper bound of the bucket holding it), seconds; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = q * this.count;
    let acc = 0;
    for (let i = 0; i < this.counts.length; i++) {
      acc += this.counts[i]!;
      if (acc >= rank) return LATENCY_BUCKETS_SECONDS[i] ?? Infinity;
    }
    return Infinity;
  }
}
