import { TandemError } from '../core/errors.js';
import { kindOf } from '../core/options.js';
import { EVENTS_DEFAULTS } from './defaults.js';

/**
 * The idempotent-consumer port. `once` runs `effect` only if (group, id) has not been recorded,
 * and records it when the effect succeeds. When the effect writes through `tx` (a PostgreSQL
 * transaction, a Redis MULTI), the record and the effect commit together: exactly one effect
 * per message id, however often the message is delivered.
 */
export interface Inbox<Tx = undefined> {
  once(group: string, id: string, effect: (tx: Tx) => Promise<void> | void): Promise<'done' | 'duplicate'>;
  close?(): Promise<void>;
}

interface Entry {
  state: 'running' | 'done';
  /** Settles when a running effect finishes (either way). */
  settled?: Promise<void>;
  expiresAt: number;
}

/**
 * The inbox in process memory: exactly once within one process's lifetime (a restart forgets).
 * A duplicate that arrives while the first is still running waits for its outcome.
 */
export class MemoryInbox implements Inbox<undefined> {
  private readonly entries = new Map<string, Entry>();
  private sweptAt = Date.now();

  constructor(private readonly retention: number = EVENTS_DEFAULTS.inboxRetention) {
    if (!(typeof retention === 'number' && retention >= 1 && Number.isFinite(retention))) {
      throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `new MemoryInbox(retention): expected a number of milliseconds >= 1, got ${kindOf(retention)}`);
    }
  }

  async once(group: string, id: string, effect: (tx: undefined) => Promise<void> | void): Promise<'done' | 'duplicate'> {
    const key = `${group}\u0000${id}`;
    this.sweep();
    for (;;) {
      const entry = this.entries.get(key);
      if (entry === undefined || entry.expiresAt < Date.now()) break;
      if (entry.state === 'done') return 'duplicate';
      await entry.settled;
    }
    let settle!: () => void;
    const entry: Entry = { state: 'running', settled: new Promise<void>((r) => (settle = r)), expiresAt: Number.POSITIVE_INFINITY };
    this.entries.set(key, entry);
    try {
      await effect(undefined);
      entry.state = 'done';
      entry.expiresAt = Date.now() + this.retention;
      delete entry.settled;
      return 'done';
    } catch (err) {
      this.entries.delete(key);
      throw err;
    } finally {
      settle();
    }
  }

  /** Drops expired entries at most once a minute, so memory stays bounded by the retention window. */
  private sweep(): void {
    const now = Date.now();
    if (now - this.sweptAt < 60_000) return;
    this.sweptAt = now;
    for (const [k, e] of this.entries) if (e.state === 'done' && e.expiresAt < now) this.entries.delete(k);
  }

  get size(): number {
    return this.entries.size;
  }
}
