import type { Freshness } from './freshness.js';

/**
 * The second level of a response cache, shared by several gateways (or clients): the port the
 * cache talks to; redis-level.ts is the Redis adapter. A miss or a stale entry in the local
 * level looks here before the origin; a fill writes here; the request that goes to the origin
 * holds the key's lock, and the others — in any process — wait for its outcome.
 *
 * Every method settles: a failure of the shared store is never the request's failure. The
 * level counts it and, while `available` is false, the cache works with its local level alone.
 */
export interface SharedLevel {
  /** The store can be asked now (connected, not held open by its circuit breaker). */
  readonly available: boolean;
  /** Operations that failed or timed out. */
  readonly errors: number;
  /** The stored response for this request's key and variant; undefined when none (or the store failed). */
  get(key: string, requestHeaders: readonly string[]): Promise<SharedResponse | undefined>;
  /** Stores (replaces) the key's response, kept `ttlMs`. Not awaited: ordered before a later `release`. */
  put(key: string, requestHeaders: readonly string[], response: SharedResponse, ttlMs: number): void;
  /** Takes the key's fill lock for `ttlMs` (its holder's death frees it then): 'held' when another holds it. */
  lock(key: string, ttlMs: number): Promise<'acquired' | 'held' | 'unavailable'>;
  /** Frees the key's lock this process holds and tells the waiting processes how the fill ended. */
  release(key: string, outcome: string): void;
  /** Waits at most `timeoutMs` for the fill of another process to end: its outcome, or undefined when the wait ran out. */
  waitFill(key: string, timeoutMs: number): Promise<string | undefined>;
  close(): Promise<void>;
}

/** A stored response as the shared level keeps it (the local Entry less its per-process state). */
export interface SharedResponse {
  status: number;
  headers: Buffer[];
  body: Buffer;
  freshness: Freshness;
  /** Its age (ms) when read: the age when stored plus the time since (on the wall clock). */
  ageMs: number;
  etag: string | undefined;
  lastModified: string | undefined;
  /** The request headers its Vary names (lower case, sorted). */
  vary: readonly string[];
}
