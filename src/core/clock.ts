import { TandemError } from './errors.js';
/**
 * Time as the decision logic sees it. Health, outlier detection, budgets and hedging read the
 * time and schedule work only through a Clock, so tests drive them with a FakeClock: no
 * sleeping, no flakiness, years of behaviour in a millisecond.
 */
export interface Clock {
  /** Milliseconds on a monotonic scale (the origin is arbitrary; only differences mean anything). */
  now(): number;
  /**
   * Calls `fn` once, `ms` from now. A real timer does not keep the process alive unless
   * `keepAlive` is true: for work a caller is waiting on (a retry's backoff), not housekeeping.
   */
  setTimeout(fn: () => void, ms: number, keepAlive?: boolean): TimerHandle;
  /** Cancels a timer; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: TimerHandle): void;
}

declare const timerBrand: unique symbol;

/** A timer as its clock knows it. Opaque: only the clock that made it can clear it. */
export interface TimerHandle {
  readonly [timerBrand]: 'TimerHandle';
}

/**
 * The process clock. performance.now() is monotonic, unlike Date.now(), which jumps with NTP
 * and the wall-clock. Timers are unref'd: a pending ejection or budget timer must never keep a
 * process alive that has otherwise finished (unless the caller asks: see Clock.setTimeout).
 */
export const realClock: Clock = Object.freeze({
  now: (): number => performance.now(),
  setTimeout(fn: () => void, ms: number, keepAlive = false): TimerHandle {
    const timer = setTimeout(fn, ms);
    if (!keepAlive) timer.unref();
    return timer as unknown as TimerHandle;
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as unknown as NodeJS.Timeout);
  },
});

interface FakeTimer {
  readonly at: number;
  readonly fn: () => void;
}

/**
 * A clock that moves only when told to. `advance(ms)` fires the timers that fall due, in time
 * order (ties in the order they were scheduled), each seeing `now()` equal to its due time;
 * timers scheduled by those timers fire in the same advance when they fall due within it.
 */
export class FakeClock implements Clock {
  private time: number;
  /** Pending timers sorted by due time; equal times keep scheduling order. */
  private readonly timers: FakeTimer[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  /**
   * Like Node, a delay below 1 ms (or not a number) counts as 1 ms. Besides matching real
   * timers, it keeps a timer that re-arms itself with 0 from looping forever inside advance().
   */
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const delay = ms >= 1 ? ms : 1;
    const timer: FakeTimer = { at: this.time + delay, fn };
    this.timers.splice(this.insertionIndex(timer.at), 0, timer);
    return timer as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    const i = this.timers.indexOf(handle as unknown as FakeTimer);
    if (i >= 0) this.timers.splice(i, 1);
  }

  /**
   * Moves time forward by `ms`, firing every timer due by then. A timer that throws stops the
   * advance with that error (time stays at the failed timer's due time), as an uncaught
   * exception would surface in a real process.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `FakeClock.advance: ms must be >= 0, got ${ms}`);
    const target = this.time + ms;
    for (let next = this.timers[0]; next !== undefined && next.at <= target; next = this.timers[0]) {
      this.timers.shift();
      this.time = next.at;
      next.fn();
    }
    this.time = target;
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pending(): number {
    return this.timers.length;
  }

  /** First index whose due time is later than `at`: equal times stay in scheduling order. */
  private insertionIndex(at: number): number {
    let lo = 0;
    let hi = this.timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.timers[mid]!.at <= at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
