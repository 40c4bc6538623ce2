import type { OutRecord } from './kafka-subscription.js';

interface Queued {
  record: OutRecord;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * One produce request in flight at a time; records that come meanwhile go together in the next
 * request. @platformatic/kafka's idempotent producer numbers concurrent `send()` calls with the
 * same sequence, and the broker then drops all but one as duplicates while every call resolves
 * (platformatic/kafka#326, seen with 1.35 here): so nothing else may send on the producer.
 */
export class SerialSender {
  private queue: Queued[] = [];
  private busy = false;

  constructor(
    private readonly send: (records: OutRecord[]) => Promise<void>,
    /** Records per request at most. */
    private readonly maxBatch = 500,
  ) {}

  enqueue(record: OutRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ record, resolve, reject });
      if (!this.busy) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      try {
        await this.send(batch.map((q) => q.record));
        for (const q of batch) q.resolve();
      } catch (err) {
        for (const q of batch) q.reject(err);
      }
    }
    this.busy = false;
  }
}
