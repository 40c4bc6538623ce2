import { TIMEOUT_HEADER } from '../../core/deadline.js';
import type { Clock } from '../../core/clock.js';
import { formatGrpcTimeout } from '../grpc.js';

const GRPC_TIMEOUT = 'grpc-timeout';
import type { Flight } from '../flight.js';
import type { Step, UpstreamRequest } from '../types.js';

/**
 * The deadline: one wait for response headers over all attempts — the request's own
 * (`timeoutMs`, from the caller's deadline) or the service's `timeout` — counted from here,
 * after a replayable body was read (the client's time, bounded by limits.requestTimeout).
 * The retry and hedge steps stop sending attempts once it has passed; each attempt waits for
 * what is left of it (attemptWait).
 */
export function deadline(clock: Clock, serviceTimeoutMs: () => number): Step {
  return (next) => (request, handler) => {
    const flight = request.flight!;
    const timeout = request.timeoutMs ?? serviceTimeoutMs();
    flight.timeoutMs = timeout;
    flight.deadline = clock.now() + timeout;
    next(request, handler);
  };
}

/**
 * How long the attempt about to go out waits for its headers: what is left of the deadline
 * (the first attempt: exactly the timeout), capped by the per-try timeout. Also written into
 * the request's timeout header (`x-tandem-timeout-ms`; a gRPC call's: `grpc-timeout`), so the
 * endpoint (and its own calls) know how long the caller will wait.
 */
export function attemptWait(request: UpstreamRequest, flight: Flight, perTryTimeoutMs: number | undefined, clock: Clock): number {
  const left = flight.attempts === 1 ? flight.timeoutMs : Math.max(1, Math.ceil(flight.deadline - clock.now()));
  const wait = perTryTimeoutMs === undefined ? left : Math.min(perTryTimeoutMs, left);
  const headers = request.headers;
  // A gRPC endpoint reads its deadline from grpc-timeout (the caller's own was taken off), and
  // only from it: one header per call, not two.
  const grpc = request.grpc !== undefined;
  const value = grpc ? formatGrpcTimeout(wait) : String(wait);
  if (flight.headerAt < 0) {
    headers.push(grpc ? GRPC_TIMEOUT : TIMEOUT_HEADER, value);
    flight.headerAt = headers.length - 1;
  } else {
    headers[flight.headerAt] = value;
  }
  return wait;
}
