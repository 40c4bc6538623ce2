import { realClock, type Clock, type TimerHandle } from './clock.js';

/**
 * Something waiting on a coarse timer: usually stopped before it fires (a stream's wait for
 * its response headers, an idle connection's keep-alive). The waiter carries its own
 * bookkeeping, so starting and stopping a wait allocates nothing.
 */
export interface CoarseWait {
  /** Called once when the wait runs out (not after `stop`). */
  expire(): void;
  /** Bookkeeping of the timers that hold it (when it is due; its own timer): theirs alone. */
  coarseDue?: number | undefined;
  coarseTimer?: TimerHandle | undefined;
}

/**
 * Timeouts of a second or more, timed to a quarter of a second: one shared tick walks the
 * waits pending, instead of a Node timer per wait. The gateway arms such a wait for every
 * call (its stream's wait for response headers) and for every connection going idle, and
 * almost never lets one fire; a Node timer per call — or a stream timeout, which node:http2
 * re-arms on every frame of the stream and of its connection — was a measured part of a gRPC
 * call's cost (docs/benchmarks.md). A wait fires no sooner than asked and at most
 * `resolutionMs` later (plus whatever delays the event loop); a wait shorter than `minCoarseMs`
 * gets a timer of its own, to the millisecond. The tick runs only while a wait is pending and
 * never keeps the process alive.
 */
export class CoarseTimers {
  private readonly pending = new Set<CoarseWait>();
  private ticking: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock = realClock,
    readonly resolutionMs = 250,
    readonly minCoarseMs = 1000,
  ) {}

  /** Starts (or restarts) `wait`: it expires `ms` from now unless stopped. */
  start(wait: CoarseWait, ms: number): void {
    this.stop(wait);
    if (ms < this.minCoarseMs) {
      wait.coarseTimer = this.clock.setTimeout(() => {
        wait.coarseTimer = undefined;
        wait.expire();
      }, ms);
      return;
    }
    wait.coarseDue = this.clock.now() + ms;
    this.pending.add(wait);
    if (this.ticking === undefined) this.ticking = this.clock.setTimeout(this.tick, this.resolutionMs);
  }

  /** Stops `wait` if it is pending; otherwise nothing. */
  stop(wait: CoarseWait): void {
    if (wait.coarseTimer !== undefined) {
      this.clock.clearTimeout(wait.coarseTimer);
      wait.coarseTimer = undefined;
    } else if (wait.coarseDue !== undefined) {
      wait.coarseDue = undefined;
      this.pending.delete(wait);
    }
  }

  /** Waits pending on the shared tick (not those with a timer of their own). */
  get size(): number {
    return this.pending.size;
  }

  private readonly tick = (): void => {
    this.ticking = undefined;
    const now = this.clock.now();
    try {
      for (const wait of this.pending) {
        if (wait.coarseDue! > now) continue;
        this.pending.delete(wait);
        wait.coarseDue = undefined;
        wait.expire();
      }
    } finally {
      // An expiry that threw leaves the others to the next tick, not unticked.
      if (this.pending.size > 0 && this.ticking === undefined) this.ticking = this.clock.setTimeout(this.tick, this.resolutionMs);
    }
  };
}

/** The process's coarse timers, on the real clock. */
export const coarseTimers = new CoarseTimers();
