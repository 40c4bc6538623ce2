import { parseCacheControl, seconds } from './cache-control.js';
import type { CacheSettings } from './settings.js';

/** How long a stored response may be used, and how (RFC 9111 §4.2, RFC 5861). Milliseconds. */
export interface Freshness {
  /** Freshness lifetime: s-maxage, else max-age, else Expires − Date. */
  lifetimeMs: number;
  /** Past the lifetime, served while one background request refreshes it. */
  staleWhileRevalidateMs: number;
  /** Past the lifetime, served when the origin fails. */
  staleIfErrorMs: number;
  /** `no-cache`: kept only to revalidate; every use asks the origin first, and it is never served stale. */
  revalidateAlways: boolean;
  /** `public`: may answer requests that carry Authorization or cookies. */
  shared: boolean;
  /** The age the origin (or a cache before it) said the response had (Age), ms. */
  initialAgeMs: number;
}

/**
 * Statuses kept when the response says how long (RFC 9110 §15.1's heuristically cacheable ones,
 * less 206: the cache keeps whole bodies, and 405/414/501: rare enough to leave to the origin).
 */
const STORABLE_STATUS = new Set([200, 203, 204, 300, 301, 308, 404, 410]);

/**
 * Whether a shared cache may keep this response, and for how long: undefined when it may not
 * (no-store, private, Set-Cookie, Vary: *, no stated freshness, a status not kept, or a request
 * with credentials the response does not declare `public`).
 */
export function freshnessOf(status: number, headers: ReadonlyMap<string, string>, requestHasCredentials: boolean, settings: CacheSettings, wallNow: number): Freshness | undefined {
  if (!STORABLE_STATUS.has(status)) return undefined;
  const cc = parseCacheControl(headers.get('cache-control'));
  if (cc.has('no-store') || cc.has('private')) return undefined;
  // A response that sets a cookie is someone's: nginx and Varnish do not keep it either.
  if (headers.has('set-cookie')) return undefined;
  if ((headers.get('vary') ?? '').split(',').some((v) => v.trim() === '*')) return undefined;
  const shared = cc.has('public');
  if (requestHasCredentials && !shared) return undefined;
  const revalidateAlways = cc.has('no-cache');
  const lifetimeMs = revalidateAlways ? 0 : lifetime(cc, headers, wallNow);
  // no-cache is kept with its validators only: with neither, there is nothing to revalidate with.
  if (lifetimeMs === undefined || (revalidateAlways && !headers.has('etag') && !headers.has('last-modified'))) return undefined;
  // must-revalidate, proxy-revalidate and no-cache forbid serving stale (RFC 9111 §4.2.4);
  // s-maxage implies proxy-revalidate (§5.2.2.10), unless the origin explicitly allows stale.
  const forbidden = revalidateAlways || cc.has('must-revalidate') || cc.has('proxy-revalidate');
  const implied = cc.has('s-maxage');
  const stale = (name: string, fallback: number): number => {
    if (forbidden) return 0;
    const said = seconds(cc, name);
    return said ?? (implied ? 0 : fallback);
  };
  const age = Number(headers.get('age'));
  return {
    lifetimeMs,
    staleWhileRevalidateMs: stale('stale-while-revalidate', settings.staleWhileRevalidateMs),
    staleIfErrorMs: stale('stale-if-error', settings.staleIfErrorMs),
    revalidateAlways,
    shared,
    initialAgeMs: Number.isFinite(age) && age > 0 ? age * 1000 : 0,
  };
}

function lifetime(cc: ReadonlyMap<string, string>, headers: ReadonlyMap<string, string>, wallNow: number): number | undefined {
  const stated = seconds(cc, 's-maxage') ?? seconds(cc, 'max-age');
  if (stated !== undefined) return stated;
  const expires = headers.get('expires');
  if (expires === undefined) return undefined;
  // An invalid Expires (often "0") means already expired (RFC 9111 §5.3): kept, but stale.
  const at = Date.parse(expires);
  if (Number.isNaN(at)) return 0;
  const date = Date.parse(headers.get('date') ?? '');
  return Math.max(0, at - (Number.isNaN(date) ? wallNow : date));
}
