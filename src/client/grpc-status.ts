import type { TandemError } from '../core/errors.js';
import { GRPC, httpStatusOfGrpc } from '../upstream/grpc.js';

/** gRPC status codes (grpc/grpc doc/statuscodes.md), by name: the engine's (upstream/grpc.ts). */
export const GRPC_STATUS = GRPC;

export type GrpcStatusName = keyof typeof GRPC_STATUS;

const NAMES = Object.keys(GRPC_STATUS) as GrpcStatusName[];

export function grpcStatusName(code: number): string {
  return NAMES[code] ?? `STATUS_${code}`;
}

/**
 * The HTTP status the engine counts a gRPC status as (upstream/grpc.ts): UNAVAILABLE as 503 is
 * what makes it retry an idempotent call elsewhere, count it against the instance (outlier
 * detection) and spend the budget on it; DEADLINE_EXCEEDED as 504 likewise; a caller's mistake
 * (INVALID_ARGUMENT, NOT_FOUND …) as a 4xx is neither retried nor held against the instance.
 */
export { httpStatusOfGrpc };

/**
 * The gRPC status of a response without `grpc-status` (not a gRPC server, or a proxy's error
 * page): gRPC's own mapping (grpc/grpc doc/http-grpc-status-mapping.md).
 */
export function grpcStatusOfHttp(status: number): number {
  switch (status) {
    case 400: return GRPC_STATUS.INTERNAL;
    case 401: return GRPC_STATUS.UNAUTHENTICATED;
    case 403: return GRPC_STATUS.PERMISSION_DENIED;
    case 404: return GRPC_STATUS.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return GRPC_STATUS.UNAVAILABLE;
    default: return GRPC_STATUS.UNKNOWN;
  }
}

/**
 * The gRPC status a caller sees for a call that ended without an answer from an instance: what
 * grpc-js itself reports for the same situation (no connection, a dropped one: UNAVAILABLE; the
 * deadline: DEADLINE_EXCEEDED; the caller's cancel: CANCELLED).
 */
export function grpcStatusOfError(error: TandemError): number {
  switch (error.code) {
    case 'TANDEM_ERR_NO_HEALTHY_ENDPOINT':
    case 'TANDEM_ERR_UPSTREAM_CONNECT':
    case 'TANDEM_ERR_UPSTREAM_RESET':
    case 'TANDEM_ERR_UPSTREAM_REFUSED':
    case 'TANDEM_ERR_CLIENT_CLOSED':
      return GRPC_STATUS.UNAVAILABLE;
    case 'TANDEM_ERR_UPSTREAM_TIMEOUT':
      return GRPC_STATUS.DEADLINE_EXCEEDED;
    case 'TANDEM_ERR_CLIENT_ABORTED':
      return GRPC_STATUS.CANCELLED;
    case 'TANDEM_ERR_OVERLOADED':
      return GRPC_STATUS.RESOURCE_EXHAUSTED;
    case 'TANDEM_ERR_UPSTREAM_PROTOCOL':
      return GRPC_STATUS.INTERNAL;
    case 'TANDEM_ERR_INVALID_ARGUMENT':
    case 'TANDEM_ERR_BAD_REQUEST':
      return GRPC_STATUS.INVALID_ARGUMENT;
    default:
      return GRPC_STATUS.UNKNOWN;
  }
}
