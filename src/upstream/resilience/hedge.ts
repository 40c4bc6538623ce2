import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
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

/** p95, at least 10 ms, GET/HEAD/OPTIONS (core/defaults/upstream.ts says why). Only idempotent methods are accepted; matched exactly (methods are case-sensitive). */
export const DEFAULT_HEDGE: Readonly<HedgeOptions> = Object.freeze({
  minDelayMs: UPSTREAM_DEFAULTS.hedge.minDelay,
  /** A share: the config's percentile / 100. */
  percentile: UPSTREAM_DEFAULTS.hedge.percentile / 100,
  methods: UPSTREAM_DEFAULTS.hedge.methods,
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
  delayFor(method: string, idempotentCall?: boolean): number | undefined {
    // A gRPC call (always POST) hedges when it is configured idempotent, whatever `methods` says.
    if (idempotentCall === undefined ? !this.methods.has(method) : !idempotentCall) return undefined;
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
