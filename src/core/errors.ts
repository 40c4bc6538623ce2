/**
 * Every error tandem raises carries a stable `code`. Users match on the code, never on the
 * message. The catalog below is the single list, ERROR_STATUS gives each code its HTTP status;
 * docs/errors.md is kept in step with both by a test.
 */
export const ERROR_CATALOG = {
  TANDEM_ERR_CONFIG: 'The configuration is invalid; `problems` lists every path with a hint.',
  TANDEM_ERR_BAD_REQUEST: 'The request is not one the gateway forwards (HTTP 400, connection closed): an HTTP/0.9 or HTTP/2 request line, invalid HTTP/1.1 framing, a target that is not a path, a malformed percent-escape, a fragment or a path that climbs above the root, no single valid Host, Transfer-Encoding on HTTP/1.0. Over HTTP/2 only the stream ends, not the connection.',
  TANDEM_ERR_NO_ROUTE: 'No route matches the request host and path (HTTP 404).',
  TANDEM_ERR_NO_HEALTHY_ENDPOINT: 'The service has no endpoint that can take the request, or a draining gateway refuses a new WebSocket upgrade (HTTP 503).',
  TANDEM_ERR_OVERLOADED: 'The service has concurrencyLimit requests in progress; this one is refused at once (HTTP 503 with Retry-After).',
  TANDEM_ERR_UPSTREAM_CONNECT: 'Connecting to the upstream endpoint failed (HTTP 502).',
  TANDEM_ERR_UPSTREAM_RESET: 'The upstream connection closed or reset before the response completed (HTTP 502).',
  TANDEM_ERR_UPSTREAM_REFUSED: 'The upstream refused the request before processing it — an HTTP/2 REFUSED_STREAM, or a GOAWAY that left its stream out — so it is sent to another endpoint whatever its method (HTTP 502; gRPC UNAVAILABLE).',
  TANDEM_ERR_UPSTREAM_PROTOCOL: 'The upstream answered something that is not valid HTTP/1.1 (HTTP 502).',
  TANDEM_ERR_UPSTREAM_TIMEOUT: 'The upstream did not answer within the timeout (HTTP 504).',
  TANDEM_ERR_BODY_TOO_LARGE: 'The request body is larger than limits.maxBodySize (HTTP 413).',
  TANDEM_ERR_HEADERS_TOO_LARGE: 'The request has more than limits.maxHeaders header lines, or a header section larger than limits.maxHeaderSize (HTTP 431, connection closed).',
  TANDEM_ERR_REQUEST_TIMEOUT: 'The client was too slow sending its request: the header section took longer than limits.headersTimeout, the whole request longer than limits.requestTimeout, or its body stalled for limits.bodyTimeout or came slower than limits.minBodyRate (HTTP 408, connection closed).',
  TANDEM_ERR_CLIENT_ABORTED: 'The client went away (or a service client\'s request was aborted by its signal) before the response was complete (HTTP 499 in logs and metrics).',
  TANDEM_ERR_CLIENT_CLOSED: 'A service client was used after close().',
  TANDEM_ERR_REGISTRY_INVALID: 'A registry request is malformed or names an address no instance can have: a bad address, one of the gateway\'s own listeners, a link-local, unspecified, multicast or broadcast address, an unknown field, a value out of range (HTTP 400); no such registry route (404), a method the route does not take (405), a body that did not arrive in time (408).',
  TANDEM_ERR_UNAUTHORIZED: 'A request to the admin listener (registry API, /admin, the dashboard) without the gateway\'s secret, or with a wrong one (HTTP 401); docs/security.md says where the secret comes from. Also: etcd refused the user, password or permissions of the etcd registry (docs/registry.md).',
  TANDEM_ERR_FORBIDDEN: 'The admin listener refuses the request whoever sends it: a Host that is not its own address or a loopback name, or a write from another site (Origin, Sec-Fetch-Site) (HTTP 403); a write whose body is not declared application/json (HTTP 415).',
  TANDEM_ERR_REGISTRY_CONFLICT: 'The instance id is held by another live lease; register again once it is deregistered or expired (HTTP 409).',
  TANDEM_ERR_REGISTRY_LIMIT: 'A registry limit is reached: metadata or request body too large (HTTP 413), too many instances from one peer or in all (HTTP 429).',
  TANDEM_ERR_LEASE_NOT_FOUND: 'The lease expired or never existed; register again (HTTP 404).',
  TANDEM_ERR_REGISTRY_UNAVAILABLE: 'The registry cannot be reached, or answered something unexpected (HTTP 502).',
  TANDEM_ERR_REGISTRY_READ_ONLY: 'The registry adapter takes no writes (static: the members come from the config) (HTTP 405).',
  TANDEM_ERR_INVALID_ARGUMENT: 'An argument or option passed to tandem\'s API is invalid — serve(), createClient(), a client request, the events API (a topic or group name, bus, subscribe, inbox, outbox and relay options), an upstream setting: an unknown key (with a did-you-mean hint), a wrong type or a value out of range. The message names the path and says what is allowed.',
  TANDEM_ERR_MISSING_DEPENDENCY: 'An optional package the chosen adapter or store needs is not installed; the message names the npm package to install.',
  TANDEM_ERR_PUBLISH_FAILED: 'The broker did not confirm a publish within publishTimeout (connection down, broker refused or overloaded); retryable, and safe to repeat with the same message id.',
  TANDEM_ERR_BUS_CLOSED: 'The bus, subscription or relay is closed or closing; it takes no more work.',
  TANDEM_ERR_CONSUMER_LEFT_GROUP: 'A Kafka subscription\'s consumer is no longer a member of its group and would not become one again by itself (its heartbeat failed, or it could not rejoin after a rebalance); passed to the bus\'s onError: the subscription closes that consumer, a new one joins the group in its place, and the records the old one had not finished are redelivered.',
  TANDEM_ERR_STORE_FAILED: 'The Redis inbox could not record a message as handled (its MULTI transaction aborted): none of the handler\'s queued writes were applied, the claim is released and the message is retried.',
  TANDEM_ERR_NOT_LEADER: 'Leadership may be lost (a renewal failed or was refused, the local deadline passed, or the leader closed): the reason a leader\'s AbortSignal fires.',
  TANDEM_ERR_FENCED: 'A fenced write came under a fencing token that is no longer the latest: a newer leader has taken over, and the write was refused.',
  TANDEM_ERR_DRAIN_TIMEOUT: 'A drain did not finish within drainTimeout: the buses and drain hooks of a `serve()` instance were still running; the process exits 1.',
  TANDEM_ERR_LISTEN: 'A listener could not bind its address (in use, not permitted, not an address of this host); the message names the listener and the reason.',
  TANDEM_ERR_TOKEN: 'The shared secret cannot be read or kept: the token file is unreadable or not a valid token, or the directory that keeps a generated one is not private to this user.',
  TANDEM_ERR_CLI: 'A `tandem` command could not do what it was asked: a bad flag value, a demo instance that exited before serving, an admin listener that answered something unexpected.',
  TANDEM_ERR_INTERNAL: 'An unexpected internal failure (HTTP 500); please report it.',
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/**
 * The HTTP status of each code: the first is what a TandemError of that code carries; the
 * others are the documented alternatives an explicit `status` may pick (any other is ignored).
 * Codes never answered over HTTP carry 500, so an application that answers with `status`
 * treats them as its own failure.
 */
export const ERROR_STATUS: { readonly [C in ErrorCode]: readonly [number, ...number[]] } = Object.freeze({
  TANDEM_ERR_CONFIG: [500],
  TANDEM_ERR_BAD_REQUEST: [400],
  TANDEM_ERR_NO_ROUTE: [404],
  TANDEM_ERR_NO_HEALTHY_ENDPOINT: [503],
  TANDEM_ERR_OVERLOADED: [503],
  TANDEM_ERR_UPSTREAM_CONNECT: [502],
  TANDEM_ERR_UPSTREAM_RESET: [502],
  TANDEM_ERR_UPSTREAM_REFUSED: [502],
  TANDEM_ERR_UPSTREAM_PROTOCOL: [502],
  TANDEM_ERR_UPSTREAM_TIMEOUT: [504],
  TANDEM_ERR_BODY_TOO_LARGE: [413],
  TANDEM_ERR_HEADERS_TOO_LARGE: [431],
  TANDEM_ERR_REQUEST_TIMEOUT: [408],
  TANDEM_ERR_CLIENT_ABORTED: [499],
  TANDEM_ERR_CLIENT_CLOSED: [500],
  TANDEM_ERR_REGISTRY_INVALID: [400, 404, 405, 408],
  TANDEM_ERR_UNAUTHORIZED: [401],
  TANDEM_ERR_FORBIDDEN: [403, 415],
  TANDEM_ERR_REGISTRY_CONFLICT: [409],
  TANDEM_ERR_REGISTRY_LIMIT: [413, 429],
  TANDEM_ERR_LEASE_NOT_FOUND: [404],
  TANDEM_ERR_REGISTRY_UNAVAILABLE: [502],
  TANDEM_ERR_REGISTRY_READ_ONLY: [405],
  TANDEM_ERR_INVALID_ARGUMENT: [500],
  TANDEM_ERR_MISSING_DEPENDENCY: [500],
  TANDEM_ERR_PUBLISH_FAILED: [503],
  TANDEM_ERR_BUS_CLOSED: [500],
  TANDEM_ERR_CONSUMER_LEFT_GROUP: [500],
  TANDEM_ERR_STORE_FAILED: [500],
  TANDEM_ERR_NOT_LEADER: [500],
  TANDEM_ERR_FENCED: [409],
  TANDEM_ERR_DRAIN_TIMEOUT: [500],
  TANDEM_ERR_LISTEN: [500],
  TANDEM_ERR_TOKEN: [500],
  TANDEM_ERR_CLI: [500],
  TANDEM_ERR_INTERNAL: [500],
});

/** The status a TandemError of `code` carries, or `wanted` when the catalog allows it for that code. */
export function statusOf(code: ErrorCode, wanted?: number): number {
  const allowed = ERROR_STATUS[code];
  return wanted !== undefined && allowed.includes(wanted) ? wanted : allowed[0];
}

export interface TandemErrorOptions {
  cause?: unknown;
  /** True when repeating the same operation elsewhere may succeed. */
  retryable?: boolean;
  /**
   * HTTP status to answer with, when the code has more than one (ERROR_STATUS lists them,
   * docs/errors.md says when each applies). Unset, or one the code does not have: the code's own.
   */
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
    this.status = statusOf(code, options.status);
  }
}

export function isTandemError(value: unknown): value is TandemError {
  return value instanceof TandemError;
}
