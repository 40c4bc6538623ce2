import type { Logger } from 'pino';
import type { RouteConfig } from '../config/types.js';
import { cacheStep, RedisLevel, ResponseCache, STALE_REASONS } from '../cache/index.js';
import type { CacheStatsView } from '../observe/metrics.js';
import type { Step } from '../upstream/pipeline.js';
import type { ResponseHandler } from '../upstream/types.js';

/** A handler that says which cache its request uses: the proxy's exchange, from its route. */
export interface CacheRouted {
  readonly cache: ResponseCache | undefined;
}

/** The route's name in metrics and logs: host and prefix. */
export function routeName(route: Pick<RouteConfig, 'host' | 'prefix'>): string {
  return `${route.host ?? ''}${route.prefix}`;
}

/**
 * One response cache per route with `cache`, kept across reloads while the route and its cache
 * settings stay the same (entries survive a reload); a route whose settings changed starts empty.
 */
export class RouteCaches {
  private caches = new Map<string, { settings: string; cache: ResponseCache }>();

  constructor(
    private readonly logger: Logger,
    /** A route's origin started failing (its cache answers stale in its place) or answers again: for the dashboard's timeline. */
    private readonly onOriginState?: (route: string, service: string, failing: boolean, reason: string | undefined) => void,
  ) {}

  /** The caches for these routes, by route config; the caches of routes gone are dropped. */
  configure(routes: readonly RouteConfig[]): Map<RouteConfig, ResponseCache> {
    const next = new Map<string, { settings: string; cache: ResponseCache }>();
    const out = new Map<RouteConfig, ResponseCache>();
    for (const r of routes) {
      if (r.cache === undefined || r.cache === false) continue;
      const name = routeName(r);
      const settings = JSON.stringify(r.cache);
      const kept = this.caches.get(name);
      const cache = kept !== undefined && kept.settings === settings ? kept.cache : this.create(name, r.service, r.cache);
      next.set(name, { settings, cache });
      out.set(r, cache);
    }
    for (const [name, { cache }] of this.caches) if (next.get(name)?.cache !== cache) void cache.shared?.close();
    this.caches = next;
    return out;
  }

  /** Closes the Redis connections (at the gateway's stop). */
  async close(): Promise<void> {
    await Promise.all([...this.caches.values()].map(({ cache }) => cache.shared?.close()));
  }

  private create(name: string, service: string, c: NonNullable<RouteConfig['cache']> & object): ResponseCache {
    const r = c.redis;
    const shared = r && new RedisLevel({
      url: r.url, keyPrefix: `${r.keyPrefix}${name}:`, timeoutMs: r.timeout,
      onState: (up, reason) => this.logger[up ? 'info' : 'warn']({ msg: up ? 'cache: Redis available' : 'cache: Redis unavailable, the local level answers alone', event: 'cache-redis', route: name, up, reason }),
    });
    return new ResponseCache({
      maxSize: c.maxSize, maxEntrySize: c.maxEntrySize, staleIfErrorMs: c.staleIfError,
      staleWhileRevalidateMs: c.staleWhileRevalidate, lockTimeoutMs: c.lockTimeout, key: c.key,
    }, {
      onStale: (e) => this.logger.warn({ msg: 'served stale', event: 'cache-stale', route: name, path: e.path, reason: e.reason, staleMs: e.staleMs }),
      onOriginState: (failing, reason) => {
        this.logger[failing ? 'warn' : 'info']({ msg: failing ? 'origin failing: cache serves stale' : 'origin answers again', event: 'cache-origin', route: name, service, failing, reason });
        this.onOriginState?.(name, service, failing, reason);
      },
      shared,
    });
  }

  get size(): number {
    return this.caches.size;
  }

  /** For the metrics. */
  *stats(): Iterable<CacheStatsView> {
    for (const [route, { cache }] of this.caches) {
      const s = cache.stats;
      const redis = cache.shared && { hits: s.sharedHits, waits: s.sharedWaits, errors: cache.shared.errors, fallbacks: s.sharedFallbacks };
      yield { route, hits: s.hits, misses: s.misses, revalidated: s.revalidated, stale: s.stale, staleReasons: STALE_REASONS, coalesced: s.coalesced, evictions: s.evictions, bytes: cache.bytes, entries: cache.entries, ...(redis && { redis }) };
    }
  }
}

/** The cache step of the gateway's chains: the request's route decides the cache (none: passes through). */
export function routeCacheStep(): Step {
  return cacheStep((_request, handler: ResponseHandler) => (handler as Partial<CacheRouted>).cache);
}
