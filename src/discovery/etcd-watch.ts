import type { EtcdClient } from './etcd-client.js';
import { errorOf } from './etcd-client.js';

/** A key-value as etcd's JSON gateway writes it (int64 fields as decimal strings, bytes as base64). */
export interface KeyValue {
  key: string;
  value?: string;
  mod_revision?: string;
  lease?: string;
}

interface WatchResult {
  header?: { revision?: string };
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: Array<{ type?: 'PUT' | 'DELETE'; kv: KeyValue }>;
}

export interface EtcdWatchOptions {
  client: EtcdClient;
  /** base64 key and range end of the watched prefix. */
  key: string;
  rangeEnd: string;
  /** A consistent read of the prefix: its keys and the revision they are at. */
  read(): Promise<{ revision: number; kvs: KeyValue[] }>;
  /** The keys after a change, and the revision of that change. */
  publish(revision: number, kvs: KeyValue[]): void;
}

const MIN_BACKOFF = 100;
const MAX_BACKOFF = 2_000;

/**
 * One prefix followed for as long as it runs: a read gives the keys at a revision, a watch from
 * the next revision gives every change after it. When the stream breaks (a member died, was left
 * by the checks, lost its leader) it opens again, on whichever member is current, from the last
 * revision seen — nothing is missed and nothing read twice. When etcd has compacted that
 * revision away, the watch starts over from a fresh read. While no member answers, the last keys
 * stay published: consumers keep the membership they have (static stability).
 */
export class EtcdWatch {
  private readonly kvs = new Map<string, KeyValue>();
  private revision: number | undefined;
  private stopped = false;
  private stream: { at: number; abort: AbortController } | undefined;
  private retry: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly o: EtcdWatchOptions) {
    // Requests moved to another member: a stream left on the old one may be on a frozen or
    // cut-off member, silent; reopen it where requests now go.
    this.unsubscribe = o.client.onRotate((current) => {
      if (this.stream !== undefined && this.stream.at !== current) this.stream.abort.abort();
    });
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe();
    clearTimeout(this.retry);
    this.stream?.abort.abort();
    this.wake?.();
  }

  private async run(): Promise<void> {
    let backoff = MIN_BACKOFF;
    while (!this.stopped) {
      try {
        if (this.revision === undefined) await this.freshRead();
        if (this.stopped) return;
        if (await this.follow()) backoff = MIN_BACKOFF;
      } catch {
        // Unreachable, refused, or a stream that broke: retried below; the keys published last stay.
      }
      if (this.stopped) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        // Jittered: a gateway fleet coming back does not hit the members in one burst.
        this.retry = setTimeout(resolve, backoff / 2 + Math.random() * backoff / 2);
        this.retry.unref();
      });
      backoff = Math.min(backoff * 2, MAX_BACKOFF);
    }
  }

  private async freshRead(): Promise<void> {
    const { revision, kvs } = await this.o.read();
    this.kvs.clear();
    for (const kv of kvs) this.kvs.set(kv.key, kv);
    this.revision = revision;
    this.o.publish(revision, [...this.kvs.values()]);
  }

  /** Streams changes until the stream ends; true when it had been established (the next outage starts from a short backoff). */
  private async follow(): Promise<boolean> {
    const abort = new AbortController();
    const request = { create_request: { key: this.o.key, range_end: this.o.rangeEnd, start_revision: String(this.revision! + 1) } };
    const { at, lines } = await this.o.client.stream('/v3/watch', request, abort.signal);
    this.stream = { at, abort };
    let established = false;
    try {
      for await (const line of lines) {
        if (this.stopped) break;
        const msg = line as { result?: WatchResult; error?: unknown } | undefined;
        if (msg?.error !== undefined) throw errorOf(this.o.client.connection.endpoints[at]!, 0, msg as never, '');
        const result = msg?.result;
        if (result === undefined) continue;
        if (result.created === true) established = true;
        if (result.canceled === true) {
          // Compacted past our revision: the changes in between are gone, only a fresh read is exact.
          if (result.compact_revision !== undefined && Number(result.compact_revision) > 0) this.revision = undefined;
          else if (/auth/i.test(result.cancel_reason ?? '')) this.o.client.dropToken();
          // Ended by its member (it lost its leader): try the next one.
          else this.o.client.rotate(at);
          break;
        }
        if (result.events !== undefined && result.events.length > 0) this.apply(result);
      }
    } finally {
      abort.abort();
      if (this.stream?.abort === abort) this.stream = undefined;
    }
    return established;
  }

  private apply(result: WatchResult): void {
    // Only the events' own revisions: a response's header may be ahead of events still to come
    // in a later batch, and resuming past them would lose them. Resuming from an older
    // revision only replays changes already applied.
    let revision = this.revision ?? 0;
    for (const event of result.events!) {
      if (event.type === 'DELETE') this.kvs.delete(event.kv.key);
      else this.kvs.set(event.kv.key, event.kv);
      revision = Math.max(revision, Number(event.kv.mod_revision ?? 0));
    }
    this.revision = revision;
    this.o.publish(this.revision, [...this.kvs.values()]);
  }
}
