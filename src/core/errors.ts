/**
 * Every error tandem raises carries a stable `code`. Users match on the code, never on the
 * message. The catalog below is the single list; docs/errors.md is kept in step by a test.
 */
export const ERROR_CATALOG = {
  TANDEM_ERR_CONFIG: 'The configuration is invalid; `problems` lists every path with a hint.',
  TANDEM_ERR_BAD_REQUEST: 'The request is not one the gateway forwards (HTTP 400, connection closed): an HTTP/0.9 or HTTP/2 request line, invalid HTTP/1.1 framing, a target that is not a path, a malformed percent-escape, a fragment or a path that climbs above the root, no single valid Host, Transfer-Encoding on HTTP/1.0.',
  TANDEM_ERR_NO_ROUTE: 'No route matches the request host and path (HTTP 404).',
  TANDEM_ERR_NO_HEALTHY_ENDPOINT: 'The service has no endpoint that can take the request (HTTP 503).',
  TANDEM_ERR_OVERLOADED: 'The service has concurrencyLimit requests in progress; this one is refused at once (HTTP 503 with Retry-After).',
  TANDEM_ERR_UPSTREAM_CONNECT: 'Connecting to the upstream endpoint failed (HTTP 502).',
  TANDEM_ERR_UPSTREAM_RESET: 'The upstream connection closed or reset before the response completed (HTTP 502).',
  TANDEM_ERR_UPSTREAM_PROTOCOL: 'The upstream answered something that is not valid HTTP/1.1 (HTTP 502).',
  TANDEM_ERR_UPSTREAM_TIMEOUT: 'The upstream did not answer within the timeout (HTTP 504).',
  TANDEM_ERR_BODY_TOO_LARGE: 'The request body is larger than limits.maxBodySize (HTTP 413).',
  TANDEM_ERR_HEADERS_TOO_LARGE: 'The request has more than limits.maxHeaders header lines, or a header section larger than limits.maxHeaderSize (HTTP 431, connection closed).',
  TANDEM_ERR_REQUEST_TIMEOUT: 'The client was too slow sending its request: the header section took longer than limits.headersTimeout, the whole request longer than limits.requestTimeout, or its body stalled for limits.bodyTimeout or came slower than limits.minBodyRate (HTTP 408, connection closed).',
  TANDEM_ERR_CLIENT_ABORTED: 'The client went away before the response was complete.',
  TANDEM_ERR_CLIENT_CLOSED: 'A service client was used after close().',
  TANDEM_ERR_REGISTRY_INVALID: 'A registry request is malformed or names an address no instance can have: a bad address, one of the gateway\'s own listeners, a link-local, unspecified, multicast or broadcast address, an unknown field, a value out of range (HTTP 400).',
  TANDEM_ERR_UNAUTHORIZED: 'A request to the admin listener (registry API, /admin, the dashboard) without the gateway\'s secret, or with a wrong one (HTTP 401); docs/security.md says where the secret comes from.',
  TANDEM_ERR_FORBIDDEN: 'The admin listener refuses the request whoever sends it: a Host that is not its own address or a loopback name, or a write from another site (Origin, Sec-Fetch-Site) (HTTP 403); a write whose body is not declared application/json (HTTP 415).',
  TANDEM_ERR_REGISTRY_CONFLICT: 'The instance id is held by another live lease; register again once it is deregistered or expired (HTTP 409).',
  TANDEM_ERR_REGISTRY_LIMIT: 'A registry limit is reached: metadata or request body too large (HTTP 413), too many instances from one peer or in all (HTTP 429).',
  TANDEM_ERR_LEASE_NOT_FOUND: 'The lease expired or never existed; register again (HTTP 404).',
  TANDEM_ERR_REGISTRY_UNAVAILABLE: 'The registry cannot be reached, or answered something unexpected.',
  TANDEM_ERR_REGISTRY_READ_ONLY: 'The registry adapter takes no writes (static: the members come from the config).',
  TANDEM_ERR_INVALID_ARGUMENT: 'An events API argument is invalid (a topic or group name, an option value); the message names it and says what is allowed.',
  TANDEM_ERR_MISSING_DEPENDENCY: 'An optional package the chosen adapter or store needs is not installed; the message names the npm package to install.',
  TANDEM_ERR_PUBLISH_FAILED: 'The broker did not confirm a publish within publishTimeout (connection down, broker refused or overloaded); retryable, and safe to repeat with the same message id.',
  TANDEM_ERR_BUS_CLOSED: 'The bus, subscription or relay is closed or closing; it takes no more work.',
  TANDEM_ERR_INTERNAL: 'An unexpected internal failure (HTTP 500); please report it.',
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOG;

export interface TandemErrorOptions {
  cause?: unknown;
  /** True when repeating the same operation elsewhere may succeed. */
  retryable?: boolean;
  /** HTTP status to answer with when this error ends a proxied request. */
  status?: number;
}

export class TandemError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly status: number;
  /**
   * Set on errors of tandem/client calls: the service that failed. An instance that answers
   * 5xx because of it is healthy itself (core/dependency.ts).
   */
  dependency?: string;
  /**
   * Response headers for whoever turns this error into an HTTP answer (express, koa and
   * http-errors-style handlers copy `err.headers`): the failed dependency's name, on client errors.
   */
  headers?: Record<string, string>;

  constructor(code: ErrorCode, message: string, options: TandemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TandemError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.status = options.status ?? 500;
  }
}

export function isTandemError(value: unknown): value is TandemError {
  return value instanceof TandemError;
}
