import type { HashOn, RouteConfig, ServiceConfig } from '../config/types.js';
import type { Upstream } from '../upstream/upstream.js';
import type { ResponseCache } from '../cache/index.js';

/** A route ready for matching. */
export interface Route {
  readonly prefix: string;
  readonly host: string | undefined;
  readonly service: string;
  readonly stripPrefix: boolean;
  readonly upstream: Upstream;
  /** Where the service's consistent-hash key comes from; undefined when it does not hash. */
  readonly hash: HashOn | undefined;
  /** The route's response cache (`cache` in its config); undefined = none. */
  readonly cache: ResponseCache | undefined;
  /** 2 exact host, 1 wildcard host ("*.example.com"), 0 any host. */
  readonly hostRank: 0 | 1 | 2;
}

/**
 * Host first, then the longest path prefix. A prefix matches on segment boundaries: `/api`
 * matches `/api`, `/api/x` and `/api?q`, not `/apiary`; a prefix ending in `/` matches any
 * path that starts with it. Routes for a specific host win over routes for any host.
 */
export class Router {
  private readonly routes: Route[];
  /** When no route names a host, matching skips Host parsing entirely. */
  private readonly usesHost: boolean;

  constructor(configs: readonly RouteConfig[], upstreams: ReadonlyMap<string, Upstream>, services?: ReadonlyMap<string, Pick<ServiceConfig, 'hash'>>, caches?: ReadonlyMap<RouteConfig, ResponseCache>) {
    this.routes = configs.map((c) => ({
      prefix: c.prefix,
      host: c.host,
      service: c.service,
      stripPrefix: c.stripPrefix,
      upstream: upstreams.get(c.service)!,
      hash: services?.get(c.service)?.hash,
      cache: caches?.get(c),
      hostRank: c.host === undefined ? 0 : c.host.startsWith('*.') ? 1 : 2,
    }));
    this.routes.sort((a, b) => b.hostRank - a.hostRank || b.prefix.length - a.prefix.length);
    this.usesHost = this.routes.some((r) => r.hostRank > 0);
  }

  get all(): readonly Route[] {
    return this.routes;
  }

  match(hostHeader: string | undefined, path: string): Route | undefined {
    const host = this.usesHost ? normalizeHost(hostHeader) : '';
    for (const r of this.routes) {
      if (r.hostRank === 2 && r.host !== host) continue;
      if (r.hostRank === 1 && !(host.endsWith(r.host!.slice(1)) && host.length > r.host!.length - 1)) continue;
      if (prefixMatches(r.prefix, path)) return r;
    }
    return undefined;
  }
}

export function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith('/')) return true;
  const next = path.charCodeAt(prefix.length);
  return next === 47 /* / */ || next === 63 /* ? */;
}

/** Removes the matched prefix, keeping a leading slash: /api/users?x → /users?x, /api → /. */
export function stripPrefix(prefix: string, path: string): string {
  const rest = path.slice(prefix.endsWith('/') ? prefix.length - 1 : prefix.length);
  if (rest === '' ) return '/';
  return rest.startsWith('/') ? rest : `/${rest}`;
}

function normalizeHost(header: string | undefined): string {
  if (!header) return '';
  let h = header.toLowerCase();
  // "[::1]:8080" → "::1": routes name IPv6 hosts bare (config rejects the bracketed form).
  if (h.charCodeAt(0) === 91 /* [ */) {
    const close = h.indexOf(']');
    return close > 0 ? h.slice(1, close) : h;
  }
  const colon = h.lastIndexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  return h.endsWith('.') ? h.slice(0, -1) : h;
}
