import type { GrpcSettings } from './settings.js';

/**
 * What the engine knows of gRPC (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
 * a call is an HTTP/2 POST whose outcome is the `grpc-status` of its trailers — or of its only
 * HEADERS frame (a Trailers-Only response) — not the HTTP status, which is 200 either way.
 */

/** The status codes the engine and the gateway act on (grpc/status.h). */
export const GRPC = Object.freeze({
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const);

/** One call as the engine sees it: set on the request by the caller for a `protocol: grpc` service. */
export interface GrpcCall {
  /** The full method name, `/pkg.Service/Method` (the request's path). */
  readonly method: string;
  /** Configured safe to run twice (`grpc.idempotentMethods`): retried after it may have been processed, and hedged. */
  readonly idempotent: boolean;
  /**
   * The method's answers carry more than one message (a server or bidirectional stream): known
   * to a caller that has the method's definition, or learnt by the engine from an answer that
   * did (Attempt). Until then an idempotent call's answer is held for its status, so a process
   * killed between its message and its trailers costs a retry, not a failed call.
   */
  streams: boolean;
}

/** A call of the method at `path`, as the settings make it (a gateway shares one per method: Upstream.grpcCall). */
export function grpcCallOf(path: string, settings: GrpcSettings | undefined): GrpcCall {
  const q = path.indexOf('?');
  const method = q < 0 ? path : path.slice(0, q);
  return { method, idempotent: settings !== undefined && settings.idempotentMethods.includes(method), streams: false };
}

/** The `grpc-status` in raw response headers (a Trailers-Only response), or -1 when there is none. */
export function grpcStatusOfHeaders(raw: readonly Buffer[]): number {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 11 && name.toString('latin1').toLowerCase() === 'grpc-status') return Number(raw[i + 1]!.toString('latin1'));
  }
  return -1;
}

/** The `grpc-status` of trailers; INTERNAL when a call ended without one (a protocol failure). */
export function grpcStatusOfTrailers(trailers: Readonly<Record<string, unknown>> | undefined): number {
  const v = trailers?.['grpc-status'];
  return v === undefined ? GRPC.INTERNAL : Number(v);
}

/**
 * A gRPC status as the HTTP status the engine's counters and outlier detection understand — the
 * mapping of gRPC's own HTTP gateway (google.rpc.Code): the endpoint's failures (UNKNOWN,
 * INTERNAL, UNAVAILABLE, DATA_LOSS, DEADLINE_EXCEEDED, UNIMPLEMENTED) are 5xx, the caller's
 * 4xx, OK 200.
 */
export function httpStatusOfGrpc(code: number): number {
  switch (code) {
    case GRPC.OK: return 200;
    case GRPC.CANCELLED: return 499;
    case GRPC.INVALID_ARGUMENT: case GRPC.FAILED_PRECONDITION: case GRPC.OUT_OF_RANGE: return 400;
    case GRPC.DEADLINE_EXCEEDED: return 504;
    case GRPC.NOT_FOUND: return 404;
    case GRPC.ALREADY_EXISTS: case GRPC.ABORTED: return 409;
    case GRPC.PERMISSION_DENIED: return 403;
    case GRPC.RESOURCE_EXHAUSTED: return 429;
    case GRPC.UNIMPLEMENTED: return 501;
    case GRPC.UNAVAILABLE: return 503;
    case GRPC.UNAUTHENTICATED: return 401;
    default: return 500; // UNKNOWN, INTERNAL, DATA_LOSS, anything not in the list
  }
}

/**
 * `grpc-timeout` (PROTOCOL-HTTP2.md: 1–8 digits and a unit H, M, S, m, u, n) in milliseconds,
 * or undefined when absent or malformed (then the service's timeout applies).
 */
export function parseGrpcTimeout(value: string | undefined): number | undefined {
  if (value === undefined || value.length < 2 || value.length > 9) return undefined;
  const amount = Number(value.slice(0, -1));
  if (!Number.isInteger(amount) || amount < 0) return undefined;
  switch (value.charCodeAt(value.length - 1)) {
    case 72 /* H */: return amount * 3_600_000;
    case 77 /* M */: return amount * 60_000;
    case 83 /* S */: return amount * 1000;
    case 109 /* m */: return amount;
    case 117 /* u */: return Math.ceil(amount / 1000);
    case 110 /* n */: return Math.ceil(amount / 1_000_000);
    default: return undefined;
  }
}

/** Milliseconds as a `grpc-timeout` value (at most 8 digits: longer waits in seconds). */
export function formatGrpcTimeout(ms: number): string {
  const whole = Math.max(0, Math.ceil(ms));
  return whole < 100_000_000 ? `${whole}m` : `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}
