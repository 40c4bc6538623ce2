import type { Clock, TimerHandle } from '../core/clock.js';

/**
 * Tells a peer that stopped answering (a frozen process, a host gone without closing its
 * connections) from one that has nothing to say. `sent()` when the peer owes an answer,
 * `answered()` when any byte of one arrives; `onSilent` runs once, when something sent stayed
 * unanswered for `timeout` ms.
 *
 * Only what was sent is owed: a caller whose own event loop stalled sent nothing meanwhile, so
 * it never blames the peer for its own gap. And the verdict waits for the I/O phase after the
 * timer (setImmediate): an answer that arrived while this process stalled is read first, rather
 * than judged missing by a timer that fired late. One timer at a time, re-armed lazily: a beat
 * and its answer cost no timer operation.
 */
export class AnswerWatch {
  /** When the oldest unanswered message was sent; undefined while nothing is owed. */
  private owedSince: number | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    readonly timeout: number,
    private readonly onSilent: (waitedMs: number) => void,
  ) {}

  /** The peer owes an answer to something sent now (a request, a heartbeat). */
  sent(): void {
    if (this.stopped || this.owedSince !== undefined) return;
    this.owedSince = this.clock.now();
    this.timer ??= this.clock.setTimeout(() => this.check(), this.timeout);
  }

  /** Something came back: everything sent so far counts as answered. */
  answered(): void {
    this.owedSince = undefined;
  }

  /** No verdict after this (the connection closed for another reason, or on purpose). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private check(): void {
    this.timer = undefined;
    if (this.stopped || this.owedSince === undefined) return;
    const waited = this.clock.now() - this.owedSince;
    if (waited < this.timeout) {
      // Answered since the timer was set, and owed again later: the newer debt's own deadline.
      this.timer = this.clock.setTimeout(() => this.check(), this.timeout - waited);
      return;
    }
    const since = this.owedSince;
    setImmediate(() => {
      // An answer read in this loop's I/O phase clears the debt (sent() arms a newer one's timer).
      if (this.stopped || this.owedSince !== since) return;
      this.stop();
      this.onSilent(this.clock.now() - since);
    });
  }
}
