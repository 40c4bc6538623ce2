/**
 * Per-partition bookkeeping for commits: a Kafka group keeps one committed offset per partition,
 * so a message finished out of order (handlers run concurrently) may only be committed once
 * every message before it in its partition has finished too. Offsets arrive in increasing order
 * (gaps are fine: control records, compaction), so the oldest unfinished one is the first entry
 * of an insertion-ordered Set.
 */
export class PartitionProgress {
  /** The next offset this consumer expects; a record below it was already taken (a re-fetch after a rebalance). */
  next = -1n;
  /** The offset committed last (the next one to read, Kafka's convention). */
  committed = -1n;
  private readonly running = new Set<bigint>();

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** Records `offset` as taken; false if this consumer already has it. */
  take(offset: bigint): boolean {
    if (offset < this.next) return false;
    this.next = offset + 1n;
    this.running.add(offset);
    return true;
  }

  finish(offset: bigint): void {
    this.running.delete(offset);
  }

  /** Where the group may resume: the oldest unfinished offset, or past the last one taken. */
  get commitPoint(): bigint {
    for (const first of this.running) return first;
    return this.next;
  }

  /** Something finished that is not committed yet. */
  get dirty(): boolean {
    return this.next >= 0n && this.commitPoint > this.committed;
  }

  get inFlight(): number {
    return this.running.size;
  }
}
