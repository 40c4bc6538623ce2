import { Attempt } from './attempt.js';
import type { AttemptStep } from './attempt-steps.js';
import type { RequestPath } from './request-path.js';
import { attemptWait } from './resilience/deadline-step.js';
import type { Dispatch } from './types.js';

/**
 * The terminal: picks an endpoint — the balancer's choice among the candidates, avoiding the
 * endpoints this request already tried (retry, hedge), or the one a stale connection's resend
 * is pinned to — and sends one attempt to it through the attempt steps, waiting for its
 * headers what is left of the deadline (resilience/deadline-step.ts). No endpoint: the error
 * goes up without a leg.
 */
export function sendAttempt(path: RequestPath, steps: readonly AttemptStep[]): Dispatch {
  return (request, handler) => {
    const flight = request.flight!;
    const tried = flight.tried;
    let endpoint = flight.pinned;
    if (endpoint !== undefined) flight.pinned = undefined;
    else endpoint = tried === undefined ? path.pickFirst(request.hashKey) : path.pickAgain(request.hashKey, tried, tried[tried.length - 1]!);
    if (endpoint === undefined) {
      handler.onError(path.noEndpoint());
      return;
    }
    flight.attempts++;
    const attempt = new Attempt(endpoint, handler, steps, path.clock);
    handler.onAttempt?.(endpoint, attempt);
    const timeout = flight.timeoutMs;
    const retry = path.settings.retry;
    const wait = attemptWait(request, flight, retry === false ? undefined : retry.perTryTimeoutMs, path.clock);
    // undici's own wait stays `timeout`, equal to the body timeout (one timer per request in
    // the common case); a shorter wait is the attempt's own timer.
    if (wait < timeout) attempt.timeAfter(wait);
    attempt.dispatch(request, timeout, timeout);
  };
}
