import { realClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import type { WithHealth } from './state.js';
import { TandemError } from '../../core/errors.js';

/**
 * Passive outlier detection: real traffic is the health check that never lies about the path
 * clients take. The caller classifies each outcome (connect error, reset, 5xx, timeout = a
 * failure) and reports it; this decides when an endpoint leaves rotation and for how long.
 */
export interface OutlierOptions {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  jitter: number;
  maxEjectedShare: number;
  decayMs: number;
}

/** Envoy's defaults except the share; the reasons are in core/defaults/upstream.ts. */
export const DEFAULT_OUTLIER: Readonly<OutlierOptions> = Object.freeze({
  consecutiveFailures: UPSTREAM_DEFAULTS.outlier.consecutiveFailures,
  baseEjectionMs: UPSTREAM_DEFAULTS.outlier.baseEjectionTime,
  maxEjectionMs: UPSTREAM_DEFAULTS.outlier.maxEjectionTime,
  jitter: UPSTREAM_DEFAULTS.outlier.jitter,
  maxEjectedShare: UPSTREAM_DEFAULTS.outlier.maxEjectedShare,
  decayMs: UPSTREAM_DEFAULTS.outlier.decay,
});

/** Uniform random number in [0, 1). Injectable so tests pin the jitter. */
export type Random = () => number;

interface OutlierRecord {
  /** Failures in a row since the last success (or the last ejection attempt). */
  consecutive: number;
  /** Ejections so far, after decay. */
  times: number;
  /** Decay counts from here: the end of the last ejection, moved on by each step taken. */
  decayFrom: number;
  timer: TimerHandle | undefined;
}

/**
 * Tracks consecutive failures per member and ejects through each member's EndpointHealth; ends
 * ejections with Clock timers. Rules:
 * - `consecutiveFailures` failures in a row eject; a success resets the count.
 * - An endpoint on probation after being out (ejected, unhealthy, drained) is ejected by its
 *   first failure, and its ejection count keeps growing. A new endpoint gets the normal count:
 *   one unlucky first request must not cost it 30 s.
 * - The n-th ejection lasts min(base × n, max) ± jitter; n decays over healthy time.
 * - Failures of endpoints that are out or draining are ignored: they get traffic only in
 *   panic, or are finishing old requests, and must not lengthen their own ejection.
 * - When the ejection cap is reached the endpoint stays in and its count starts over (as in
 *   Envoy): it will be tried again after another run of failures. `blocked` counts these.
 */
export class OutlierDetector<T extends WithHealth = WithHealth> {
  readonly options: Readonly<OutlierOptions>;
  private members: readonly T[] = [];
  private readonly records = new Map<T, OutlierRecord>();
  private ejectionCount = 0;
  private blockedCount = 0;

  constructor(
    options: Partial<OutlierOptions> = {},
    private readonly clock: Clock = realClock,
    private readonly random: Random = Math.random,
  ) {
    this.options = resolveOutlierOptions(options);
  }

  /** Ejections made so far (for a metric). */
  get ejections(): number {
    return this.ejectionCount;
  }

  /** Ejections refused because the share of ejected members was at its cap. */
  get blocked(): number {
    return this.blockedCount;
  }

  /** Called whenever membership changes. Removed members lose their timers and history. */
  setMembers(members: readonly T[]): void {
    const next = new Set(members);
    for (const [member, record] of this.records) {
      if (next.has(member)) continue;
      if (record.timer !== undefined) this.clock.clearTimeout(record.timer);
      this.records.delete(member);
    }
    for (const member of members) {
      if (!this.records.has(member)) this.records.set(member, { consecutive: 0, times: 0, decayFrom: 0, timer: undefined });
    }
    this.members = members;
  }

  /** A request to `target` succeeded. Hot path: no allocation, no clock read unless on probation. */
  recordSuccess(target: T): void {
    const record = this.records.get(target);
    if (record === undefined) return;
    record.consecutive = 0;
    if (target.health.state.kind === 'probation') target.health.requestSucceeded(this.clock.now());
  }

  /** A request to `target` failed. Returns true when this failure ejected it. */
  recordFailure(target: T): boolean {
    const record = this.records.get(target);
    if (record === undefined) return false;
    const state = target.health.state;
    if (state.kind !== 'healthy' && state.kind !== 'probation') return false;
    record.consecutive++;
    const strict = state.kind === 'probation' && state.from !== 'new';
    if (!strict && record.consecutive < this.options.consecutiveFailures) return false;
    record.consecutive = 0;
    return this.eject(target, record);
  }

  /** Ejections counted for `target` now, after decay (0 for a non-member). */
  timesEjected(target: T): number {
    const record = this.records.get(target);
    if (record === undefined) return 0;
    this.decay(record, this.clock.now());
    return record.times;
  }

  /** Cancels every pending timer and forgets all members. */
  close(): void {
    for (const record of this.records.values()) {
      if (record.timer !== undefined) this.clock.clearTimeout(record.timer);
    }
    this.records.clear();
    this.members = [];
  }

  private eject(target: T, record: OutlierRecord): boolean {
    if (!this.underCap()) {
      this.blockedCount++;
      return false;
    }
    const now = this.clock.now();
    this.decay(record, now);
    const times = record.times + 1;
    const durationMs = this.ejectionLength(times);
    if (!target.health.eject(now, durationMs, times)) return false;
    record.times = times;
    record.decayFrom = now + durationMs;
    this.ejectionCount++;
    this.scheduleExpiry(target, record, durationMs);
    return true;
  }

  private ejectionLength(times: number): number {
    const { baseEjectionMs, maxEjectionMs, jitter } = this.options;
    const nominal = Math.min(baseEjectionMs * times, maxEjectionMs);
    return Math.round(nominal * (1 + jitter * (2 * this.random() - 1)));
  }

  /**
   * Real timers may fire a fraction of a millisecond before the Clock says the time is up (they
   * round differently); then expiry is refused and the timer re-armed for the rest, otherwise the
   * endpoint would stay ejected for good.
   */
  private scheduleExpiry(target: T, record: OutlierRecord, delayMs: number): void {
    if (record.timer !== undefined) this.clock.clearTimeout(record.timer);
    record.timer = this.clock.setTimeout(() => {
      record.timer = undefined;
      const now = this.clock.now();
      if (target.health.expireEjection(now)) return;
      const state = target.health.state;
      if (state.kind === 'ejected' && state.until > now) this.scheduleExpiry(target, record, state.until - now);
    }, delayMs);
  }

  private decay(record: OutlierRecord, now: number): void {
    if (record.times === 0) return;
    const steps = Math.floor((now - record.decayFrom) / this.options.decayMs);
    if (steps <= 0) return;
    const taken = Math.min(steps, record.times);
    record.times -= taken;
    record.decayFrom += taken * this.options.decayMs;
  }

  /** Ejecting one more keeps the ejected share within the cap. Scans members: ejections are rare. */
  private underCap(): boolean {
    let counted = 0;
    let ejected = 0;
    for (const member of this.members) {
      const kind = member.health.state.kind;
      if (kind === 'draining') continue;
      counted++;
      if (kind === 'ejected') ejected++;
    }
    if (counted < 2) return false;
    // The epsilon keeps 0.3 × 10 = 2.9999… from losing an ejection to float rounding.
    const limit = Math.max(1, Math.floor(counted * this.options.maxEjectedShare + 1e-9));
    return ejected < limit;
  }
}

function resolveOutlierOptions(options: Partial<OutlierOptions>): Readonly<OutlierOptions> {
  const resolved: OutlierOptions = {
    consecutiveFailures: options.consecutiveFailures ?? DEFAULT_OUTLIER.consecutiveFailures,
    baseEjectionMs: options.baseEjectionMs ?? DEFAULT_OUTLIER.baseEjectionMs,
    maxEjectionMs: options.maxEjectionMs ?? DEFAULT_OUTLIER.maxEjectionMs,
    jitter: options.jitter ?? DEFAULT_OUTLIER.jitter,
    maxEjectedShare: options.maxEjectedShare ?? DEFAULT_OUTLIER.maxEjectedShare,
    decayMs: options.decayMs ?? DEFAULT_OUTLIER.decayMs,
  };
  if (!Number.isInteger(resolved.consecutiveFailures) || resolved.consecutiveFailures < 1) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `outlier.consecutiveFailures must be an integer >= 1, got ${resolved.consecutiveFailures}`);
  }
  for (const key of ['baseEjectionMs', 'maxEjectionMs', 'decayMs'] as const) {
    if (!(resolved[key] > 0) || !Number.isFinite(resolved[key])) {
      throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `outlier.${key} must be a finite number > 0, got ${resolved[key]}`);
    }
  }
  if (resolved.maxEjectionMs < resolved.baseEjectionMs) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `outlier.maxEjectionMs (${resolved.maxEjectionMs}) must be >= baseEjectionMs (${resolved.baseEjectionMs})`);
  }
  if (!(resolved.jitter >= 0 && resolved.jitter < 1)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `outlier.jitter must be in [0, 1), got ${resolved.jitter}`);
  }
  if (!(resolved.maxEjectedShare >= 0 && resolved.maxEjectedShare <= 1)) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `outlier.maxEjectedShare must be in [0, 1], got ${resolved.maxEjectedShare}`);
  }
  return Object.freeze(resolved);
}
