import { LATENCY_BUCKETS_SECONDS } from '../observe/histogram.js';

/**
 * A service's recent history for the dashboard's charts: one point per sample (a second), the
 * last HISTORY_POINTS of them, in a ring of typed arrays — 24 bytes a point, 7.2 KB a service
 * at 300 points, allocated once. The gateway keeps it (ClusterFeed), so a page opened later
 * draws the last minutes at once.
 */

const LAST_BOUND_MS = LATENCY_BUCKETS_SECONDS[LATENCY_BUCKETS_SECONDS.length - 1]! * 1000;

/** Points kept per service: 5 minutes at one sample a second. */
export const HISTORY_POINTS = 300;

/** One point as the page and /admin/history see it. */
export interface HistoryPoint {
  /** Sample time, ms since the epoch. */
  t: number;
  /** Requests per second as callers saw them. */
  rate: number;
  /** Share of those answered 5xx or not at all (0..1). */
  errorRate: number;
  /** p99 of the whole request as callers saw it, over this point's interval, ms (null: no request; at most 10 000). */
  p99Ms: number | null;
}

/** A service's history in columns (compact JSON): `t[i]`, `rate[i]`, … are point i, oldest first. */
export interface ServiceHistory {
  service: string;
  intervalMs: number;
  t: number[];
  rate: number[];
  errorRate: number[];
  p99Ms: Array<number | null>;
}

export class HistoryRing {
  private readonly t = new Float64Array(HISTORY_POINTS);
  private readonly dt = new Float32Array(HISTORY_POINTS);
  private readonly count = new Float32Array(HISTORY_POINTS);
  private readonly errors = new Float32Array(HISTORY_POINTS);
  /** NaN: no request in the interval. */
  private readonly p99 = new Float32Array(HISTORY_POINTS);
  /** Where the next point goes. */
  private next = 0;
  private size = 0;

  /** Adds a point: `count` requests (of which `errors` failed) over the `seconds` before `t`. */
  push(t: number, seconds: number, count: number, errors: number, p99Ms: number | null): HistoryPoint {
    const i = this.next;
    this.t[i] = t;
    this.dt[i] = seconds;
    this.count[i] = count;
    this.errors[i] = errors;
    this.p99[i] = p99Ms ?? NaN;
    this.next = (i + 1) % HISTORY_POINTS;
    this.size = Math.min(HISTORY_POINTS, this.size + 1);
    return this.point(i);
  }

  /** Requests and failures over the newest `points` points. */
  recent(points: number): { count: number; errors: number } {
    let count = 0;
    let errors = 0;
    for (let k = Math.max(0, this.size - points); k < this.size; k++) {
      const i = this.index(k);
      count += this.count[i]!;
      errors += this.errors[i]!;
    }
    return { count, errors };
  }

  view(service: string, intervalMs: number): ServiceHistory {
    const out: ServiceHistory = { service, intervalMs, t: [], rate: [], errorRate: [], p99Ms: [] };
    for (let k = 0; k < this.size; k++) {
      const p = this.point(this.index(k));
      out.t.push(p.t);
      out.rate.push(p.rate);
      out.errorRate.push(p.errorRate);
      out.p99Ms.push(p.p99Ms);
    }
    return out;
  }

  /** The k-th oldest point's slot. */
  private index(k: number): number {
    return (this.next - this.size + k + HISTORY_POINTS) % HISTORY_POINTS;
  }

  private point(i: number): HistoryPoint {
    const count = this.count[i]!;
    const p99 = this.p99[i]!;
    return {
      t: this.t[i]!,
      rate: round(count / Math.max(0.001, this.dt[i]!)),
      errorRate: count > 0 ? round(this.errors[i]! / count, 3) : 0,
      // Past the last bucket (10 s) a quantile has no bound: drawn at the top of the scale.
      p99Ms: Number.isNaN(p99) ? null : Math.min(p99, LAST_BOUND_MS),
    };
  }
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
