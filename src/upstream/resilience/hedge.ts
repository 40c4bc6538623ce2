import type { LatencyTracker } from './latency.js';
import { isIdempotent } from './retry-policy.js';
import { TandemError } from '../../core/errors.js';

/**
 * When to send a hedge: a second copy of a request to another endpoint, once the first has
 * taken longer than most requests do. The first answer wins, the other is cancelled. It cuts
 * the tail a slow or stuck endpoint adds, at the price of a few extra requests — which is why
 * only safe methods hedge, and why each hedge must also get past the retry budget (the caller
 * asks `RetryBudget.tryWithdraw()` when the delay is up).
 */
export interface HedgeOptions {
  minDelayMs: number;
  percentile: number;
  methods: readonly string[];
}

export const DEFAULT_HEDGE: Readonly<HedgeOptions> = Object.freeze({
  /**
   * Never hedge sooner than this, whatever the percentile says: on a service answering in
   * 1 ms, a 1 ms hedge would double the load for nothing a client could notice.
   */
  minDelayMs: 10,
  /**
   * Hedge once a request is slower than this share of recent requests: at p95 at most ≈ 5 %
   * of requests send a second copy (Finagle's backup requests and "The Tail at Scale" alike).
   */
  percentile: 0.95,
  /**
   * Methods that hedge. Two copies both run on the server, so only methods that are safe to
   * run twice and cheap to waste: GET, HEAD, OPTIONS. PUT and DELETE are idempotent and may
   * retry after a failure, but are not doubled on a hunch by default. Only idempotent methods
   * are accepted here. Matched exactly (methods are case-sensitive).
   */
  methods: Object.freeze(['GET', 'HEAD', 'OPTIONS']),
});

export class HedgePolicy {
  readonly options: Readonly<HedgeOptions>;
  private readonly methods: ReadonlySet<string>;

  constructor(private readonly latency: LatencyTracker, options: Partial<HedgeOptions> = {}) {
    this.options = resolveHedgeOptions(options);
    this.methods = new Set(this.options.methods);
  }

  /**
   * Milliseconds to wait before hedging a request with this method, or undefined when it must
   * not be hedged: the method is not one that hedges, or there are too few recent samples to
   * know what "slow" is.
   */
  delayFor(method: string): number | undefined {
    if (!this.methods.has(method)) return undefined;
    const p = this.latency.percentile(this.options.percentile);
    return p === undefined ? undefined : Math.max(this.options.minDelayMs, p);
  }
}

function resolveHedgeOptions(options: Partial<HedgeOptions>): Readonly<HedgeOptions> {
  const resolved: HedgeOptions = {
    minDelayMs: options.minDelayMs ?? DEFAULT_HEDGE.minDelayMs,
    percentile: options.percentile ?? DEFAULT_HEDGE.percentile,
    methods: Object.freeze([...(options.methods ?? DEFAULT_HEDGE.methods)]),
  };
  if (!(resolved.minDelayMs >= 0) || !Number.isFinite(resolved.minDelayMs)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `hedge.minDelayMs must be a finite number >= 0, got ${resolved.minDelayMs}`);
  }
  if (!(resolved.percentile > 0 && resolved.percentile < 1)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `hedge.percentile must be in (0, 1), got ${resolved.percentile}`);
  }
  // Both copies may run to completion on two endpoints: a method that is not idempotent
  // would be executed twice.
  const unsafe = resolved.methods.filter((m) => !isIdempotent(m));
  if (unsafe.length > 0) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `hedge.methods must be idempotent; ${unsafe.join(', ')} is not`);
  }
  return Object.freeze(resolved);
}
