import type { Duplex } from 'node:stream';
import type { TandemError } from '../core/errors.js';
import type { Endpoint } from './endpoint.js';
import type { Leg, ResponseHandler, Trailers } from './types.js';

/**
 * One request in flight through the engine, made by the concurrency-limit step: what the steps
 * below it share — the deadline, the attempts sent, the endpoints tried — and the handler
 * between them and the caller. It passes exactly one outcome on (a response or an error) and
 * gives the request's slot back with it.
 */
export class Flight implements ResponseHandler {
  /** Wait for response headers over all attempts (ms); set by the deadline step. */
  timeoutMs = 0;
  /** Clock time at which that wait ends; set by the deadline step. */
  deadline = 0;
  /** Attempts sent: the first, retries, the hedge and stale resends (counted by the terminal). */
  attempts = 0;
  /** Endpoints tried, the latest last; undefined until a retry or a hedge. The terminal picks another. */
  tried: Endpoint[] | undefined = undefined;
  /** The endpoint the next attempt must go to (a stale connection's resend); taken by the terminal. */
  pinned: Endpoint | undefined = undefined;
  /** A hedge was sent: at most one per request. */
  hedged = false;
  /** Where the timeout header's value is in request.headers; -1 before the first attempt. */
  headerAt = -1;
  private settled = false;

  constructor(
    private readonly handler: ResponseHandler,
    private readonly counters: { active: number },
  ) {}

  onAttempt(endpoint: Endpoint, leg?: Leg): void {
    this.handler.onAttempt?.(endpoint, leg);
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void {
    this.handler.onStart(endpoint, abort, leg);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    return this.handler.onHeaders(statusCode, rawHeaders, resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(trailers?: Trailers): void {
    if (this.settle()) this.handler.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Leg): void {
    if (this.settle()) this.handler.onError(error, leg);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /** True the first time: the slot is given back once, and a second outcome goes nowhere. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.counters.active--;
    return true;
  }
}
