import type { ResponseHandler, Step, UpstreamRequest } from '../upstream/types.js';
import type { ResponseCache } from './response-cache.js';

/** Which cache a request uses, decided per request (the gateway: the request's route); undefined = none. */
export type CacheChoice = (request: UpstreamRequest, handler: ResponseHandler) => ResponseCache | undefined;

/**
 * The response cache as a request step: put it in a client's `steps` (one cache for the
 * client's service), or let `choose` pick one per request (the gateway: one cache per route
 * with `cache`). It goes ahead of the engine's steps, so a hit takes no concurrency slot, no
 * retry budget and no endpoint. Protocol upgrades pass untouched.
 */
export function cacheStep(cache: ResponseCache | CacheChoice): Step {
  const choose: CacheChoice = typeof cache === 'function' ? cache : () => cache;
  return (next) => (request, handler) => {
    const c = request.upgrade === undefined ? choose(request, handler) : undefined;
    if (c === undefined) next(request, handler);
    else c.handle(request, handler, next);
  };
}
