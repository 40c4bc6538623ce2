/**
 * Every default of the response cache (cache/), written once: the cache reads it when built
 * without a setting, the config (config/defaults.ts) when a route says `cache: true` or leaves
 * a key out. Durations are milliseconds, sizes bytes.
 */
export const CACHE_DEFAULTS = Object.freeze({
  /** Bytes of response bodies and headers one route's cache keeps; least recently used go first. */
  maxSize: 64 * 1024 * 1024,
  /** A response larger than this is streamed through and not kept (nginx and Varnish keep far larger ones on disk; this is memory). */
  maxEntrySize: 1024 * 1024,
  /**
   * How long past its freshness an entry may be served when the origin fails and the response
   * said nothing (no `stale-if-error`). Serving what is known good during an outage is why the
   * cache is here; a minute covers a deploy gone wrong or a failover without hiding a long outage.
   */
  staleIfError: 60_000,
  /** How long past its freshness an entry may be served while one background request refreshes it, when the response says nothing. */
  staleWhileRevalidate: 0,
  /** Longest wait of a request behind another that fetches the same key (nginx's proxy_cache_lock_timeout); then it goes to the origin itself. */
  lockTimeout: 5_000,
  /** Request headers that are part of the key, besides method and path with query (nginx's default key has the host). */
  key: Object.freeze(['host']) as readonly string[],
  /** The Redis second level, when a route names one (`cache.redis`). */
  redis: Object.freeze({
    /** Prepended to every key; the gateway adds the route (host and prefix) after it, so routes never share entries. */
    keyPrefix: 'tandem:cache:',
    /** Longest wait for one Redis command; a slower one counts as a Redis failure and the request goes on with the local level. */
    timeout: 100,
  }),
});
