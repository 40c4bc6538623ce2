import { LRUCache } from 'lru-cache';
import type { Freshness } from './freshness.js';
import { requestHeader } from './headers.js';

/** One stored response. Times are on the cache's clock (ms). */
export interface Entry {
  status: number;
  /** As served, less Age and the cache's own headers (storedHeaders). */
  headers: Buffer[];
  body: Buffer;
  freshness: Freshness;
  /** When the response (or the 304 that refreshed it) arrived. */
  receivedAt: number;
  etag: string | undefined;
  lastModified: string | undefined;
  /** A background refresh is under way (stale-while-revalidate sends one at a time). */
  refreshing: boolean;
  /** The reason it was last served stale for (one log line per reason), undefined since it was stored. */
  lastStaleReason: string | undefined;
  /**
   * After a request to refresh it failed: until then (cache clock) it is served stale without
   * asking the origin again (ERROR_HOLDOFF_MS), for `failure`. -Infinity when its last refresh did not fail.
   */
  retryAt: number;
  failure: StaleReasonName;
}

/** StaleReason (response-cache.ts), named here so that the store does not import the cache. */
type StaleReasonName = 'updating' | 'status' | 'no-endpoint' | 'overloaded' | 'timeout' | 'error';

/** The responses of one key: one per combination of the request headers its Vary names. */
interface Variants {
  vary: readonly string[];
  entries: Map<string, Entry>;
  size: number;
}

const ENTRY_OVERHEAD = 256;

/** Bytes an entry is charged: body, headers, and a fixed share for the objects around them. */
function sizeOf(entry: Entry): number {
  let size = ENTRY_OVERHEAD + entry.body.length;
  for (const h of entry.headers) size += h.length;
  return size;
}

/** Evictions and bytes, counted as lru-cache reports them. */
export interface StoreCounters {
  evictions: number;
}

/**
 * The entries, bounded by bytes with least-recently-used eviction (lru-cache). A key holds the
 * variants of one URL; a request finds its variant by the values of the headers Vary names.
 */
export class EntryStore {
  private readonly lru: LRUCache<string, Variants>;

  constructor(maxSize: number, private readonly counters: StoreCounters) {
    this.lru = new LRUCache<string, Variants>({
      maxSize,
      sizeCalculation: (v) => Math.max(1, v.size),
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.counters.evictions++;
      },
    });
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  get size(): number {
    return this.lru.size;
  }

  /** The entry for this request's variant, or undefined. */
  find(key: string, requestHeaders: readonly string[]): Entry | undefined {
    const variants = this.lru.get(key);
    return variants?.entries.get(variantOf(variants.vary, requestHeaders));
  }

  /** Stores (or replaces) the request's variant. A Vary that names other headers than before replaces every variant. */
  put(key: string, vary: readonly string[], requestHeaders: readonly string[], entry: Entry): void {
    let variants = this.lru.peek(key);
    if (variants === undefined || variants.vary.join() !== vary.join()) variants = { vary, entries: new Map(), size: 0 };
    const variant = variantOf(vary, requestHeaders);
    const old = variants.entries.get(variant);
    variants.entries.set(variant, entry);
    variants.size += sizeOf(entry) - (old === undefined ? 0 : sizeOf(old));
    // set() again so lru-cache charges the new size (and counts the key as just used).
    this.lru.set(key, variants);
  }

  /** Re-charges an entry whose headers a 304 replaced. */
  touch(key: string): void {
    const variants = this.lru.peek(key);
    if (variants === undefined) return;
    let size = 0;
    for (const e of variants.entries.values()) size += sizeOf(e);
    variants.size = size;
    this.lru.set(key, variants);
  }

  delete(key: string): void {
    this.lru.delete(key);
  }

  clear(): void {
    this.lru.clear();
  }
}

/** Vary's header names, lower case; '*' never reaches here (not stored). */
export function varyNames(vary: string | undefined): string[] {
  if (vary === undefined) return [];
  return vary.split(',').map((v) => v.trim().toLowerCase()).filter((v) => v !== '').sort();
}

function variantOf(vary: readonly string[], requestHeaders: readonly string[]): string {
  if (vary.length === 0) return '';
  return vary.map((name) => requestHeader(requestHeaders, name) ?? '').join('\n');
}
