/**
 * RFC 9110 §9.2.2: methods whose repetition has the same effect as one request. CONNECT, POST
 * and PATCH are not; unknown methods are treated as not idempotent. Shared by the retry policy
 * and the config (which refuses to hedge anything else).
 */
export const IDEMPOTENT_METHODS = Object.freeze(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'] as const);

const IDEMPOTENT: ReadonlySet<string> = new Set(IDEMPOTENT_METHODS);

/** Methods are case-sensitive: 'get' is not GET. */
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}
