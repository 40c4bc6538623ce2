import { IDEMPOTENT_METHODS, isIdempotent } from '../../core/methods.js';
import { isDependencyFailure } from '../../core/dependency.js';
import type { TandemError } from '../../core/errors.js';
import { GRPC, grpcStatusOfHeaders } from '../grpc.js';

export { isIdempotent };

/**
 * When a failed attempt may be sent again (to another endpoint). The one rule behind the
 * table: never risk running a request twice unless running it twice is harmless.
 *
 * - A stale connection ('stale-connection': the endpoint reset a reused connection with the
 *   request unread, see classify.ts) is not a failure of the endpoint: the request goes again to
 *   it, whatever its method and the retry settings (MAX_STALE_RESENDS).
 *
 * - Failures before the request left ('connect', 'reset-before-send') never reached the
 *   upstream: any method may go again — the classic case is a keep-alive connection the
 *   upstream closed just as it was reused.
 * - After the request may have left ('reset', 'timeout', a 502/503/504), the upstream may have
 *   acted on it: only idempotent methods go again. A POST or PATCH that may have been
 *   processed is never re-sent (NGINX's rule too).
 * - Either way the body must be replayable (buffered, or none): a streamed body already
 *   consumed by the first attempt cannot be sent twice.
 *
 * Whether a retry then really goes also depends on the retry budget and the deadline.
 */

export const FAILURE_KINDS = [
  /** Never reached the upstream: refused, connect timeout, unreachable. */
  'connect',
  /** A pooled connection was found closed before the request was written. */
  'reset-before-send',
  /** The endpoint refused the request unprocessed: HTTP/2 REFUSED_STREAM, or left out by a GOAWAY. */
  'refused',
  /**
   * The endpoint reset a reused keep-alive connection before a byte of response: it had closed
   * it (idle) with the request unread. Sent again to the same endpoint (retry-step.ts).
   */
  'stale-connection',
  /** Reset or closed after the request may have been sent, without a response. */
  'reset',
  /** The per-try timeout elapsed without a response. */
  'timeout',
  /** A response arrived with this status. */
  'status-502',
  'status-503',
  'status-504',
  /** A gRPC call answered UNAVAILABLE before any response message (Trailers-Only). */
  'grpc-unavailable',
] as const;

export type FailureKind = (typeof FAILURE_KINDS)[number];

export const DEFAULT_RETRY_POLICY = Object.freeze({
  /** RFC 9110 §9.2.2 (see core/methods.ts). */
  idempotentMethods: IDEMPOTENT_METHODS,
});

export interface RetryQuestion {
  /** The request method exactly as sent (methods are case-sensitive: 'get' is not GET). */
  method: string;
  /** Decides instead of the method when set: a gRPC call (always POST) configured idempotent or not. */
  idempotent?: boolean;
  failure: FailureKind;
  /** True when the body can be sent again: buffered, or there is no body. */
  bodyReplayable: boolean;
}

/** True when the request never reached the upstream, so it cannot have been processed. */
export function neverSent(failure: FailureKind): boolean {
  return failure === 'connect' || failure === 'reset-before-send' || failure === 'stale-connection' || failure === 'refused';
}

/**
 * Retries after these draw nothing from the retry budget: they add no load anywhere (the
 * request never reached an application), and the budget guards against retry storms.
 */
export function drawsOnBudget(failure: FailureKind): boolean {
  return failure !== 'connect' && failure !== 'stale-connection' && failure !== 'refused';
}

/**
 * Resends after a stale connection, per request, beyond `attempts`. A stale connection is not
 * a failed attempt: the endpoint closed an idle connection, as servers may at any time, and
 * the request never reached it. Like Go's transport (which resends a request the server never
 * saw whatever the method and without any retry setting), the request goes again — with any
 * method, with `retry: false` too, without the budget, to the same endpoint (which is not at
 * fault, and is not charged a failure for it), on another connection. Each one found stale is
 * gone from the pool, so a few at most can be in a row; the bound only guards against the
 * unforeseen.
 */
export const MAX_STALE_RESENDS = 2;

export function mayRetry(question: RetryQuestion): boolean {
  if (!question.bodyReplayable) return false;
  return neverSent(question.failure) || (question.idempotent ?? isIdempotent(question.method));
}

/**
 * A 502/503/504 is held back from the caller while the request may still go elsewhere (or,
 * in a hedge, while the other leg is out) — unless it reports a dependency's failure
 * (core/dependency.ts): the siblings share the dependency, so it goes to the caller at once.
 */
export function isHeldStatus(statusCode: number, rawHeaders: readonly Buffer[], grpc = false): boolean {
  if (grpc && statusCode === 200) return grpcStatusOfHeaders(rawHeaders) === GRPC.UNAVAILABLE;
  return (statusCode === 502 || statusCode === 503 || statusCode === 504) && !isDependencyFailure(statusCode, rawHeaders);
}

/** The failure kind of a held status (isHeldStatus). */
export function failureOfStatus(statusCode: number): FailureKind {
  return statusCode === 200 ? 'grpc-unavailable' : statusCode === 502 ? 'status-502' : statusCode === 503 ? 'status-503' : 'status-504';
}

/** Which kind of failure an attempt's error is; undefined = never sent again. `sent`: see Leg.sent. */
export function failureOfError(error: TandemError, sent: boolean): FailureKind | undefined {
  switch (error.code) {
    case 'TANDEM_ERR_UPSTREAM_CONNECT': return 'connect';
    case 'TANDEM_ERR_UPSTREAM_REFUSED': return 'refused';
    case 'TANDEM_ERR_UPSTREAM_RESET': return error.retryable ? 'stale-connection' : sent ? 'reset' : 'reset-before-send';
    case 'TANDEM_ERR_UPSTREAM_TIMEOUT': return 'timeout';
    default: return undefined;
  }
}
