import { TandemError } from '../../core/errors.js';
import { Flight } from '../flight.js';
import type { RequestCounters } from '../request-path.js';
import type { Step } from '../types.js';

/**
 * Past `limit()` requests in progress, a 503 at once; otherwise the request takes a slot, given
 * back with its one outcome (retries and hedges included), and gets its Flight — the record the
 * steps below share.
 */
export function concurrencyLimit(service: string, stats: RequestCounters, limit: () => number): Step {
  return (next) => (request, handler) => {
    if (stats.active >= limit()) {
      // Fail fast rather than queue without bound: the client (or the gateway's caller) can go
      // elsewhere or come back; a queue would only turn overload into timeouts.
      stats.overloaded++;
      stats.local[4]!++;
      handler.onError(new TandemError('TANDEM_ERR_OVERLOADED', `service ${service} has ${stats.active} requests in progress (concurrencyLimit ${limit()})`, { status: 503, retryable: true }));
      return;
    }
    stats.active++;
    const flight = new Flight(handler, stats);
    request.flight = flight;
    next(request, flight);
  };
}
