import { IDEMPOTENT_METHODS, isIdempotent } from '../../core/methods.js';

export { isIdempotent };

/**
 * When a failed attempt may be sent again (to another endpoint). The one rule behind the
 * table: never risk running a request twice unless running it twice is harmless.
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
  /** Reset or closed after the request may have been sent, without a response. */
  'reset',
  /** The per-try timeout elapsed without a response. */
  'timeout',
  /** A response arrived with this status. */
  'status-502',
  'status-503',
  'status-504',
] as const;

export type FailureKind = (typeof FAILURE_KINDS)[number];

export const DEFAULT_RETRY_POLICY = Object.freeze({
  /** RFC 9110 §9.2.2 (see core/methods.ts). */
  idempotentMethods: IDEMPOTENT_METHODS,
});

export interface RetryQuestion {
  /** The request method exactly as sent (methods are case-sensitive: 'get' is not GET). */
  method: string;
  failure: FailureKind;
  /** True when the body can be sent again: buffered, or there is no body. */
  bodyReplayable: boolean;
}

/** True when the request never reached the upstream, so it cannot have been processed. */
export function neverSent(failure: FailureKind): boolean {
  return failure === 'connect' || failure === 'reset-before-send';
}

export function mayRetry(question: RetryQuestion): boolean {
  if (!question.bodyReplayable) return false;
  return neverSent(question.failure) || isIdempotent(question.method);
}
