import { encodeWindow, type DeliveryWindow } from './kafka-window.js';

/**
 * Per-partition bookkeeping for commits: a Kafka group keeps one committed offset per partition,
 * so a message finished out of order (handlers run concurrently) may only be committed once
 * every message before it in its partition has finished too. Offsets arrive in increasing order
 * (gaps are fine: control records, compaction), so the oldest unfinished one is the first entry
 * of an insertion-ordered Map. Beside the offset, each commit carries the delivery window
 * (kafka-window.ts): how often each unfinished record was started, and which later ones are done.
 */
export class PartitionProgress {
  /** The next offset this consumer expects; a record below it was already taken (a re-fetch after a rebalance). */
  next = -1n;
  /** The offset committed last (the next one to read, Kafka's convention). */
  committed = -1n;
  /** Taken records without an outcome: how many times each was started (0: waiting for its key, time or a slot). */
  private readonly running = new Map<bigint, number>();
  /** Records with an outcome past the commit point (an earlier one has none yet). */
  private readonly done = new Set<bigint>();
  /** Bumped by every start and finish; `durable` is the version the last successful commit carried. */
  version = 0;
  durable = 0;
  /**
   * Records below this offset start only once a commit carries their start: the ones the
   * partition's previous owner may have started (at most `4 × concurrency` past the commit point
   * it left), among them whatever killed it. Past it a handler starts at once and its start goes
   * out with the next commit — a crash before that commit loses one count, never a record.
   */
  carefulUntil = -1n;

  constructor(
    readonly topic: string,
    readonly partition: number,
    /** The window the partition's previous owner committed (starts without outcome; 0 = done). */
    readonly prior: DeliveryWindow = new Map(),
  ) {}

  /** Records `offset` as taken; false if this consumer already has it. */
  take(offset: bigint): boolean {
    if (offset < this.next) return false;
    this.next = offset + 1n;
    this.running.set(offset, 0);
    return true;
  }

  /** Set while a suspect (below) is waiting or running: the partition's later records wait for it. */
  barrier: Promise<void> | undefined;

  /** Was the record started before without an outcome (it may be what killed its consumer)? */
  suspect(offset: bigint): boolean {
    return (this.prior.get(offset) ?? 0) > 0;
  }

  /** Had the record an outcome under a previous owner (it is then skipped)? */
  wasDone(offset: bigint): boolean {
    return this.prior.get(offset) === 0;
  }

  /** The handler is about to run: returns how many times the record has been started, this time included. */
  start(offset: bigint): number {
    const starts = (this.running.get(offset) || this.prior.get(offset) || 0) + 1;
    this.running.set(offset, starts);
    this.version++;
    return starts;
  }

  /** The record was counted as started but never ran (the subscription closed first): the count goes back. */
  unstart(offset: bigint): void {
    const n = this.running.get(offset);
    if (!n) return;
    this.running.set(offset, n - 1);
    this.version++;
  }

  finish(offset: bigint): void {
    if (!this.running.delete(offset)) return;
    this.version++;
    const point = this.commitPoint;
    if (offset > point) this.done.add(offset);
    else for (const d of this.done) if (d < point) this.done.delete(d);
  }

  /** Where the group may resume: the oldest unfinished offset, or past the last one taken. */
  get commitPoint(): bigint {
    for (const first of this.running.keys()) return first;
    return this.next;
  }

  /** Something started or finished that the last commit did not carry. */
  get dirty(): boolean {
    return this.next >= 0n && this.version > this.durable;
  }

  /** The commit's metadata for `base` (its offset): this consumer's window, and the previous owner's for records not taken yet. */
  window(base: bigint): string {
    const entries: Array<[bigint, number]> = [];
    for (const [offset, starts] of this.running) {
      const n = starts || this.prior.get(offset) || 0;
      if (n > 0) entries.push([offset, n]);
    }
    for (const offset of this.done) entries.push([offset, 0]);
    for (const [offset, n] of this.prior) if (offset >= this.next) entries.push([offset, n]);
    return encodeWindow(base, entries);
  }

  get inFlight(): number {
    return this.running.size;
  }
}
