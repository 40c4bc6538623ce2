import type { Clock, TimerHandle } from '../../core/clock.js';

/**
 * Work to do at a time, for many requests, on one timer. Hedging needs a "wake me at t" per
 * request; a timer per request would be created and cleared on nearly every request for
 * nothing, since most answer first. Here a request costs an array push, a cancel is a slot
 * cleared, and one timer (armed for the oldest entry) serves the whole service.
 *
 * Entries are kept in the order they were added and fired in that order: an entry due
 * earlier than one ahead of it waits for that one. Callers add with a delay that changes
 * slowly (a latency percentile), so the lateness is at most how much the delay fell meanwhile.
 */
export class DueQueue<T> {
  private items: (T | undefined)[] = [];
  private times: number[] = [];
  /** Tickets are positions counted since the queue was made: `base` is the ticket of items[0]. */
  private base = 0;
  private head = 0;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly fire: (item: T) => void,
  ) {}

  /** Schedules `item` for clock time `at`; returns a ticket for `cancel`. */
  add(item: T, at: number): number {
    const ticket = this.base + this.items.length;
    this.items.push(item);
    this.times.push(at);
    if (this.timer === undefined) this.arm(at);
    return ticket;
  }

  /** Drops an entry that has not fired; unknown or spent tickets are ignored. */
  cancel(ticket: number): void {
    const i = ticket - this.base;
    if (i >= this.head && i < this.items.length) this.items[i] = undefined;
  }

  /** Entries waiting (cancelled ones included until their time comes). */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Cancels everything and the timer. */
  clear(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.base += this.items.length;
    this.items = [];
    this.times = [];
    this.head = 0;
  }

  private arm(at: number): void {
    this.timer = this.clock.setTimeout(() => this.run(), Math.max(0, at - this.clock.now()));
  }

  private run(): void {
    this.timer = undefined;
    const now = this.clock.now();
    // Fired items may add new ones: they go to the end and are looked at in this loop too
    // when already due.
    while (this.head < this.items.length && this.times[this.head]! <= now) {
      const item = this.items[this.head];
      this.items[this.head] = undefined;
      this.head++;
      if (item !== undefined) this.fire(item);
    }
    this.compact();
    if (this.head < this.items.length) this.arm(this.times[this.head]!);
  }

  /** Drops the fired prefix once it is most of the arrays (amortized O(1) per entry). */
  private compact(): void {
    if (this.head === this.items.length) {
      this.base += this.items.length;
      this.items = [];
      this.times = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.base += this.head;
      this.items = this.items.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}
