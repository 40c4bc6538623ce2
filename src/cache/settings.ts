import { CACHE_DEFAULTS as D } from '../core/defaults/cache.js';

/** One cache's settings, in the engine's units (ms, bytes). Unset in `cacheSettings()`: CACHE_DEFAULTS. */
export interface CacheSettings {
  /** Bytes the cache keeps in all (bodies and headers); the least recently used entries go first. */
  readonly maxSize: number;
  /** A response larger than this is streamed through and not kept. */
  readonly maxEntrySize: number;
  /** Staleness allowed when the origin fails and the response said nothing (stale-if-error). */
  readonly staleIfErrorMs: number;
  /** Staleness allowed while refreshing in the background when the response said nothing. */
  readonly staleWhileRevalidateMs: number;
  /** Longest wait behind another request for the same key. */
  readonly lockTimeoutMs: number;
  /** Request headers in the key (lower case), besides the path with its query. */
  readonly key: readonly string[];
}

export interface CacheSettingsInput {
  maxSize?: number;
  maxEntrySize?: number;
  staleIfErrorMs?: number;
  staleWhileRevalidateMs?: number;
  lockTimeoutMs?: number;
  key?: readonly string[];
}

/** Settings with every unset one at its default, frozen. */
export function cacheSettings(input: CacheSettingsInput = {}): CacheSettings {
  return Object.freeze({
    maxSize: input.maxSize ?? D.maxSize,
    maxEntrySize: Math.min(input.maxEntrySize ?? D.maxEntrySize, input.maxSize ?? D.maxSize),
    staleIfErrorMs: input.staleIfErrorMs ?? D.staleIfError,
    staleWhileRevalidateMs: input.staleWhileRevalidateMs ?? D.staleWhileRevalidate,
    lockTimeoutMs: input.lockTimeoutMs ?? D.lockTimeout,
    key: Object.freeze((input.key ?? D.key).map((h) => h.toLowerCase())),
  });
}
