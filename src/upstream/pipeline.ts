import { Attempt } from './attempt.js';
import { latencyTracking, outlierTracking, statusCounting, type AttemptStep } from './attempt-steps.js';
import type { RequestPath } from './request-path.js';
import { concurrencyLimit } from './resilience/concurrency-limit.js';
import { deadline } from './resilience/deadline-step.js';
import { hedge } from './resilience/hedge-step.js';
import { replayableBody } from './resilience/replayable-body.js';
import { retry } from './resilience/retry-step.js';
import { sendAttempt } from './send-attempt.js';
import type { Dispatch, Step } from './types.js';

export type { Dispatch, Step };

/** Chains steps so that the first listed runs first: compose([a, b], send) = a(b(send)). */
export function compose(steps: readonly Step[], terminal: Dispatch): Dispatch {
  return steps.reduceRight<Dispatch>((next, step) => step(next), terminal);
}

/**
 * Every step a request of one service goes through, in order. Request steps:
 *
 * 1. the caller's own — the gateway's or the client's (`Upstream.setSteps`), e.g. the access log;
 * 2. upgrade: a protocol upgrade (WebSocket) goes once to one endpoint — a tunnel is not
 *    limited, replayed or hedged;
 * 3. concurrency limit (resilience/concurrency-limit.ts): past `concurrencyLimit` requests in
 *    progress, 503 at once; else the request's Flight (flight.ts), shared by the steps below;
 * 4. replayable body (resilience/replayable-body.ts): a small streamed body read into memory so
 *    it can be sent again — while retries are on;
 * 5. deadline (resilience/deadline-step.ts): one wait for headers over all attempts;
 * 6. retry (resilience/retry-step.ts): a failure the policy, attempts, deadline and budget
 *    allow goes through the next step again, the endpoints tried excluded;
 * 7. hedge (resilience/hedge-step.ts): after the hedge delay a second leg goes through the
 *    next step, the first leg's endpoint excluded — while hedging is on;
 * 8. the terminal (send-attempt.ts): picks an endpoint and sends one attempt.
 *
 * Attempt steps, told how each attempt ended before the request steps hear of it
 * (attempt-steps.ts): status counting, latency tracking (the endpoint's estimate, the hedge
 * delay's samples), outlier tracking — then the endpoint's undici pool.
 *
 * A step that is off is not in the chain; the chain is made again when settings change.
 * Requests already under way finish with the chain they started with.
 */
export function requestPipeline(callerSteps: readonly Step[], path: RequestPath): Dispatch {
  const settings = path.settings;
  const attemptSteps = attemptPipeline(path);
  const retries = settings.retry !== false && settings.retry.attempts > 1;
  const steps: Step[] = [
    ...callerSteps,
    upgrade(path, attemptSteps),
    concurrencyLimit(path.name, path.stats, () => path.settings.concurrencyLimit),
    ...(retries ? [replayableBody(() => (path.settings.retry === false ? 0 : path.settings.retry.bodyLimit))] : []),
    deadline(path.clock, () => path.settings.timeoutMs),
    retry(path),
    ...(retries && path.hedging !== undefined ? [hedge(path)] : []),
  ];
  return compose(steps, sendAttempt(path, attemptSteps));
}

/** The attempt steps, in order. */
export function attemptPipeline(path: RequestPath): readonly AttemptStep[] {
  return [statusCounting, latencyTracking(path), outlierTracking(path)];
}

function upgrade(path: RequestPath, attemptSteps: readonly AttemptStep[]): Step {
  return (next) => (request, handler) => {
    if (request.upgrade === undefined) {
      next(request, handler);
      return;
    }
    const endpoint = path.pickFirst(request.hashKey);
    if (endpoint === undefined) handler.onError(path.noEndpoint());
    else Attempt.send(endpoint, request, handler, path.settings.timeoutMs, attemptSteps, path.clock);
  };
}
