import { realClock, type Clock } from '../../core/clock.js';
import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import { TandemError } from '../../core/errors.js';

/**
 * A retry budget after Finagle's: retries (and hedges) may add at most `percent` of the
 * requests seen over the last `ttlMs`, plus a small reserve so a quiet service can still retry.
 * Per-request retry limits multiply under an outage (3 tries × every client = 3× load on the
 * instances still standing); a budget caps the extra load for the whole service instead.
 */
export interface RetryBudgetOptions {
  percent: number;
  ttlMs: number;
  minPerSecond: number;
}

/** Finagle's: 20 % of requests over 10 s, plus 10 per second (core/defaults/upstream.ts). */
export const DEFAULT_RETRY_BUDGET: Readonly<RetryBudgetOptions> = Object.freeze({
  /** A share: the config's percent / 100. */
  percent: UPSTREAM_DEFAULTS.retry.budget.percent / 100,
  ttlMs: UPSTREAM_DEFAULTS.retry.budget.window,
  minPerSecond: UPSTREAM_DEFAULTS.retry.budget.minPerSecond,
});

/** The window is kept as this many time buckets; an old bucket drops out whole. */
const BUCKETS = 10;
/**
 * Balances are kept in integer units so that a thousand deposits of 0.2 add up to exactly 200
 * retries: a deposit is `percent × UNIT` units, a retry costs UNIT.
 */
const UNIT = 1000;

export class RetryBudget {
  readonly options: Readonly<RetryBudgetOptions>;
  private readonly buckets = new Float64Array(BUCKETS);
  private readonly bucketMs: number;
  private readonly deposit: number;
  private readonly reserve: number;
  /** Index in `buckets` of the bucket for the current time slot, and that slot's number. */
  private head = 0;
  private slot: number;
  /** Sum of all buckets: deposits minus withdrawals within the window. */
  private total = 0;
  private refused = 0;

  constructor(options: Partial<RetryBudgetOptions> = {}, private readonly clock: Clock = realClock) {
    this.options = resolveBudgetOptions(options);
    this.bucketMs = this.options.ttlMs / BUCKETS;
    this.deposit = Math.round(this.options.percent * UNIT);
    this.reserve = Math.round(this.options.minPerSecond * (this.options.ttlMs / 1000) * UNIT);
    this.slot = Math.floor(clock.now() / this.bucketMs);
  }

  /** Times `tryWithdraw` said no (for a metric). */
  get exhausted(): number {
    return this.refused;
  }

  /** Retries (or hedges) that could go now. */
  get available(): number {
    this.rotate();
    return Math.max(0, Math.floor((this.total + this.reserve) / UNIT));
  }

  /** Call once per original request (not for its retries or hedges). */
  recordRequest(): void {
    this.rotate();
    this.buckets[this.head]! += this.deposit;
    this.total += this.deposit;
  }

  /** Takes one retry from the budget: true = it may go, false = budget spent (counted). */
  tryWithdraw(): boolean {
    this.rotate();
    if (this.total + this.reserve < UNIT) {
      this.refused++;
      return false;
    }
    this.buckets[this.head]! -= UNIT;
    this.total -= UNIT;
    return true;
  }

  /** Drops the buckets that slid out of the window; at most BUCKETS steps, usually none. */
  private rotate(): void {
    const slot = Math.floor(this.clock.now() / this.bucketMs);
    if (slot <= this.slot) return;
    const steps = Math.min(slot - this.slot, BUCKETS);
    for (let i = 0; i < steps; i++) {
      this.head = (this.head + 1) % BUCKETS;
      this.total -= this.buckets[this.head]!;
      this.buckets[this.head] = 0;
    }
    this.slot = slot;
  }
}

function resolveBudgetOptions(options: Partial<RetryBudgetOptions>): Readonly<RetryBudgetOptions> {
  const resolved: RetryBudgetOptions = {
    percent: options.percent ?? DEFAULT_RETRY_BUDGET.percent,
    ttlMs: options.ttlMs ?? DEFAULT_RETRY_BUDGET.ttlMs,
    minPerSecond: options.minPerSecond ?? DEFAULT_RETRY_BUDGET.minPerSecond,
  };
  // Finagle accepts up to 1000 %: a budget may allow several retries per request.
  if (!(resolved.percent >= 0 && resolved.percent <= 10)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `retryBudget.percent must be in [0, 10], got ${resolved.percent}`);
  }
  if (!(resolved.ttlMs >= 1000 && resolved.ttlMs <= 60_000)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `retryBudget.ttlMs must be in [1000, 60000], got ${resolved.ttlMs}`);
  }
  if (!(resolved.minPerSecond >= 0) || !Number.isFinite(resolved.minPerSecond)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `retryBudget.minPerSecond must be a finite number >= 0, got ${resolved.minPerSecond}`);
  }
  return Object.freeze(resolved);
}
