import { TandemError } from '../core/errors.js';
import { Attempt } from './attempt.js';
import { RetryingRequest } from './retrying-request.js';
import type { RequestPath } from './request-path.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';

/** Sends a request on: to the next step, or (the last) to an endpoint. */
export type Dispatch = (request: UpstreamRequest, handler: ResponseHandler) => void;
/** One step of the request path: takes the next dispatch, returns a dispatch (undici's interceptor shape). */
export type Step = (next: Dispatch) => Dispatch;

/** Chains steps so that the first listed runs first: compose([a, b], send) = a(b(send)). */
export function compose(steps: readonly Step[], terminal: Dispatch): Dispatch {
  return steps.reduceRight<Dispatch>((next, step) => step(next), terminal);
}

/**
 * Every step a request of one service goes through, in order:
 *
 * 1. the caller's steps — the gateway's or the client's own (`Upstream.setSteps`);
 * 2. upgrade: a protocol upgrade (WebSocket) goes once to one endpoint — a tunnel is not
 *    limited, replayed or hedged;
 * 3. concurrency limit: past `concurrencyLimit` requests in progress, 503 at once;
 * 4. the attempt loop (RetryingRequest): the deadline over all attempts and each attempt's
 *    per-try timeout, retry (policy, budget, backoff) and hedge, re-dispatching to an endpoint
 *    not tried yet (RequestPath.pickAgain); it forwards exactly one outcome;
 * 5. each attempt (Attempt, made by RequestPath.createAttempt): status counting and in-flight,
 *    outlier tracking, latency tracking (the endpoint's estimate, the hedge delay's samples),
 *    then the endpoint's undici pool.
 *
 * Steps 2–3 are stateless closures, made once per chain: a request costs them a call each and
 * no allocation. The attempt loop is the one object a request makes (plus its Attempt).
 */
export function requestPipeline(callerSteps: readonly Step[], path: RequestPath): Dispatch {
  return compose([...callerSteps, upgrade(path), concurrencyLimit(path)], attemptLoop(path));
}

function upgrade(path: RequestPath): Step {
  return (next) => (request, handler) => {
    if (request.upgrade === undefined) {
      next(request, handler);
      return;
    }
    const endpoint = path.pickFirst(request.hashKey);
    if (endpoint === undefined) handler.onError(path.noEndpoint());
    else Attempt.send(endpoint, request, handler, path.settings.timeoutMs, path.outlier);
  };
}

function concurrencyLimit(path: RequestPath): Step {
  return (next) => (request, handler) => {
    const stats = path.stats;
    const limit = path.settings.concurrencyLimit;
    if (stats.active >= limit) {
      // Fail fast rather than queue without bound: the client (or the gateway's caller) can go
      // elsewhere or come back; a queue would only turn overload into timeouts.
      stats.overloaded++;
      stats.local[4]!++;
      handler.onError(new TandemError('TANDEM_ERR_OVERLOADED', `service ${path.name} has ${stats.active} requests in progress (concurrencyLimit ${limit})`, { status: 503, retryable: true }));
      return;
    }
    // Given back when the request settles (RequestPath.settled), retries included.
    stats.active++;
    next(request, handler);
  };
}

function attemptLoop(path: RequestPath): Dispatch {
  return (request, handler) => {
    path.budget?.recordRequest();
    const settings = path.settings;
    new RetryingRequest(path, request, handler, settings.retry, request.timeoutMs ?? settings.timeoutMs).start();
  };
}
