import { isDependencyFailure } from '../core/dependency.js';
import { COLD_ANSWERS, type Endpoint } from './endpoint.js';
import type { OutlierDetector } from './health/outlier.js';
import type { LatencyTracker } from './resilience/latency.js';

/**
 * A step around the pool: told how each attempt ended, before the request steps hear of it.
 * Every step has all three methods (an empty one where it has nothing to do), so an attempt
 * calls them without checks; a step that is off is not in the list (see pipeline.ts).
 */
export interface AttemptStep {
  /**
   * The endpoint answered with `statusCode` after `waitedMs`, or -1 when the wait was the
   * client's (its streamed body was still going out: it teaches nothing about the endpoint).
   */
  answered(endpoint: Endpoint, statusCode: number, rawHeaders: readonly Buffer[], waitedMs: number, now: number): void;
  /**
   * The endpoint failed the attempt without answering — its own failure: an attempt that lost a
   * race, that the client broke, or that met a connection the endpoint had closed is not told.
   */
  failed(endpoint: Endpoint, waitedMs: number, now: number): void;
  /** The endpoint switched protocols (an upgrade). */
  upgraded(endpoint: Endpoint): void;
}

/**
 * Status counting: answers by class and failures (the endpoint's `responses`), and when it last
 * answered — which tells a stuck endpoint from a slow one (Attempt.chargeSilence).
 */
export const statusCounting: AttemptStep = {
  answered(endpoint, statusCode, _raw, _waited, now) {
    const cls = (statusCode / 100) | 0;
    endpoint.responses[cls <= 5 ? cls - 1 : 5]!++;
    endpoint.answeredAt = now;
    if (endpoint.answersSinceWarming < COLD_ANSWERS) endpoint.answersSinceWarming++;
  },
  failed(endpoint) {
    endpoint.responses[5]!++;
  },
  upgraded(endpoint) {
    endpoint.responses[0]!++;
  },
};

/** Where the latency step sends the service-wide samples (read per call: reload replaces it). */
export interface LatencySink {
  readonly hedging: { latency: LatencyTracker } | undefined;
}

/**
 * Latency tracking: the endpoint's estimate (the balancer's peak EWMA) from every wait, a
 * failure's included, so a hanging endpoint looks as slow as it is; and the service's recent
 * latency (the hedge delay's samples) from answers below 500.
 */
export function latencyTracking(sink: LatencySink): AttemptStep {
  return {
    answered(endpoint, statusCode, _raw, waitedMs, now) {
      if (waitedMs < 0) return;
      endpoint.observeLatency(waitedMs, now);
      if (statusCode < 500) sink.hedging?.latency.record(waitedMs);
    },
    failed(endpoint, waitedMs, now) {
      if (waitedMs >= 0) endpoint.observeLatency(waitedMs, now);
    },
    upgraded() {},
  };
}

/** Where the outlier step finds the service's detector (read per call: reload replaces it). */
export interface OutlierSink {
  readonly outlier: OutlierDetector<Endpoint>;
}

/**
 * Outlier tracking: an answer below 500 is a success; a 5xx or no answer, a failure — except a
 * 5xx that reports a dependency's failure (core/dependency.ts): the endpoint itself works.
 */
export function outlierTracking(sink: OutlierSink): AttemptStep {
  return {
    answered(endpoint, statusCode, rawHeaders) {
      if (statusCode >= 500 && !isDependencyFailure(statusCode, rawHeaders)) sink.outlier.recordFailure(endpoint);
      else sink.outlier.recordSuccess(endpoint);
    },
    failed(endpoint) {
      sink.outlier.recordFailure(endpoint);
    },
    upgraded(endpoint) {
      sink.outlier.recordSuccess(endpoint);
    },
  };
}
