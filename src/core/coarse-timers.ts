import { realClock, type Clock, type TimerHandle } from './clock.js';

/**
 * Something waiting on a coarse timer: usually stopped before it fires (a stream's wait for
 * its response headers, an idle connection's keep-alive). The waiter carries its own
 * bookkeeping, so starting and stopping a wait allocates nothing.
 */
export interface CoarseWait {
  /** Called once when the wait runs out (not after `stop`). */
  expire(): void;
  /**
   * Bookkeeping of the timers that hold it (when it is due; its own timer; its neighbours in
   * the list of waits pending): theirs alone.
   */
  coarseDue?: number | undefined;
  coarseTimer?: TimerHandle | undefined;
  coarsePrev?: CoarseWait | undefined;
  coarseNext?: CoarseWait | undefined;
}

/**
 * `coarseDue` of a wait taken off the list by a tick, to expire in it unless stopped first: no
 * clock reading plus a wait can equal it, whatever the clock's origin.
 */
const EXPIRING = Number.NEGATIVE_INFINITY;

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
 *
 * The waits pending are a list linked through the waits themselves, not a Set: a Set that
 * outlives many scavenges (this one lives as long as the process) holds its entries in a
 * table that V8 replaces as entries come and go, and each table it replaces, once old, still
 * points to the next — which keeps every wait put in the Set since the last full collection,
 * and all a call's wait holds, alive through scavenges (docs/benchmarks.md, "What a long-lived
 * table keeps"). A wait taken off the list keeps no link, and nothing links to it.
 */
export class CoarseTimers {
  private head: CoarseWait | undefined = undefined;
  private tail: CoarseWait | undefined = undefined;
  private count = 0;
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
    this.link(wait);
    if (this.ticking === undefined) this.ticking = this.clock.setTimeout(this.tick, this.resolutionMs);
  }

  /** Stops `wait` if it is pending; otherwise nothing. */
  stop(wait: CoarseWait): void {
    if (wait.coarseTimer !== undefined) {
      this.clock.clearTimeout(wait.coarseTimer);
      wait.coarseTimer = undefined;
    } else if (wait.coarseDue !== undefined) {
      // A wait a tick has taken off the list already (EXPIRING) is only marked: it won't expire.
      if (wait.coarseDue !== EXPIRING) this.unlink(wait);
      wait.coarseDue = undefined;
    }
  }

  /** Waits pending on the shared tick (not those with a timer of their own). */
  get size(): number {
    return this.count;
  }

  private link(wait: CoarseWait): void {
    const tail = this.tail;
    wait.coarsePrev = tail;
    wait.coarseNext = undefined;
    if (tail === undefined) this.head = wait;
    else tail.coarseNext = wait;
    this.tail = wait;
    this.count++;
  }

  private unlink(wait: CoarseWait): void {
    const prev = wait.coarsePrev;
    const next = wait.coarseNext;
    if (prev === undefined) this.head = next;
    else prev.coarseNext = next;
    if (next === undefined) this.tail = prev;
    else next.coarsePrev = prev;
    wait.coarsePrev = undefined;
    wait.coarseNext = undefined;
    this.count--;
  }

  private readonly tick = (): void => {
    this.ticking = undefined;
    const now = this.clock.now();
    // First the waits due come off the list, in the order they were started; then each
    // expires, unless an earlier one's expiry stopped or restarted it.
    const due: CoarseWait[] = [];
    for (let wait = this.head; wait !== undefined;) {
      const next = wait.coarseNext;
      if (wait.coarseDue! <= now) {
        this.unlink(wait);
        wait.coarseDue = EXPIRING;
        due.push(wait);
      }
      wait = next;
    }
    let i = 0;
    try {
      for (; i < due.length; i++) {
        const wait = due[i]!;
        if (wait.coarseDue !== EXPIRING) continue;
        wait.coarseDue = undefined;
        wait.expire();
      }
    } finally {
      // An expiry that threw leaves the others to the next tick, not unticked.
      for (i++; i < due.length; i++) {
        const wait = due[i]!;
        if (wait.coarseDue !== EXPIRING) continue;
        wait.coarseDue = now;
        this.link(wait);
      }
      if (this.count > 0 && this.ticking === undefined) this.ticking = this.clock.setTimeout(this.tick, this.resolutionMs);
    }
  };
}

/** The process's coarse timers, on the real clock. */
export const coarseTimers = new CoarseTimers();
