import type { Duplex } from 'node:stream';
import { TandemError } from '../../core/errors.js';
import type { Endpoint } from '../endpoint.js';
import type { RequestPath } from '../request-path.js';
import type { RetrySettings } from '../settings.js';
import type { Dispatch, Leg, ResponseHandler, Step, Trailers, UpstreamRequest } from '../types.js';
import { isClientCaused } from '../classify.js';
import { RecordingBody } from './replayable-body.js';
import { RetryBufferBody } from './retry-buffer.js';
import { MAX_STALE_RESENDS, failureOfError, failureOfStatus, isHeldStatus, mayRetry, neverSent, type FailureKind } from './retry-policy.js';

/** Retries after a failure that reached the endpoint wait a random 0–25 ms (Envoy's base interval). */
const BACKOFF_MS = 25;

const NO_RETRY: RetrySettings = Object.freeze({ attempts: 1, perTryTimeoutMs: undefined, bodyLimit: 0, budget: Object.freeze({ percent: 0, minPerSecond: 0 }) });

/**
 * Retry: when what comes back up from the next step is a failure the retry policy allows
 * (retry-policy.ts) and attempts, the deadline, another endpoint and the budget allow too, the
 * request is dispatched through the next step again, its failed endpoint added to the ones the
 * terminal must avoid. A 502/503/504 that will be retried is held back and its exchange
 * abandoned; once headers went to the caller nothing is retried. Always in the chain: with
 * `retry: false` it still resends a request that met a stale connection (never read by the
 * endpoint) — nothing else.
 */
export function retry(path: RequestPath): Step {
  return (next) => (request, handler) => {
    // The budget allows retries as a share of requests: every request counts.
    path.budget?.recordRequest();
    const settings = path.settings.retry;
    next(request, new RetryLoop(path, next, request, handler, settings === false ? NO_RETRY : settings));
  };
}

class RetryLoop implements ResponseHandler {
  /** Resends after a stale connection: not counted against `attempts` (see resendStale). */
  private staleResends = 0;
  /** Headers went to the caller: from here on, callbacks pass straight through. */
  private forwarded = false;
  /** The outcome went to the caller. */
  private done = false;
  /** The retry policy said yes but the deadline had passed. */
  private expired = false;

  constructor(
    private readonly path: RequestPath,
    private readonly next: Dispatch,
    private readonly request: UpstreamRequest,
    private readonly handler: ResponseHandler,
    private readonly policy: RetrySettings,
  ) {}

  onAttempt(endpoint: Endpoint, leg?: Leg): void {
    this.handler.onAttempt?.(endpoint, leg);
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void {
    this.handler.onStart(endpoint, abort, leg);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    if (!this.forwarded && leg !== undefined && isHeldStatus(statusCode, rawHeaders, this.request.grpc !== undefined)) {
      const failure = failureOfStatus(statusCode);
      if (this.mayGoAgain(failure, leg.endpoint)) {
        // Held back: the caller never sees this answer.
        leg.abandon();
        this.again(failure);
        return true;
      }
    }
    this.forwarded = true;
    return this.handler.onHeaders(statusCode, rawHeaders, resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(trailers?: Trailers): void {
    this.done = true;
    this.handler.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Leg): void {
    // No leg: no endpoint could take the request — nothing to retry.
    if (!this.forwarded && leg !== undefined && !isClientCaused(error) && this.recover(error, leg)) return;
    this.done = true;
    this.handler.onError(error, leg);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /** After the last live leg failed: goes again (true), or says why not once the deadline stopped it. */
  private recover(error: TandemError, leg: Leg): boolean {
    const failure = failureOfError(error, leg.sent);
    if (failure === 'stale-connection' && this.resendStale(leg.endpoint)) return true;
    if (failure !== undefined && this.mayGoAgain(failure, leg.endpoint)) {
      this.again(failure);
      return true;
    }
    if (!this.expired) return false;
    const flight = this.request.flight!;
    this.done = true;
    this.handler.onError(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `no answer from ${this.path.name} within ${flight.timeoutMs} ms over ${flight.attempts} attempts`, { cause: error, status: 504 }), leg);
    return true;
  }

  /**
   * The endpoint closed a reused connection with the request unread: sent again at once to the
   * same endpoint (undici opens a new connection, or takes an idle one it has just checked),
   * whatever the method and the retry settings — the request never reached it. Bounded by the
   * deadline and MAX_STALE_RESENDS.
   */
  private resendStale(endpoint: Endpoint): boolean {
    const flight = this.request.flight!;
    if (this.staleResends >= MAX_STALE_RESENDS || !this.replayable('stale-connection')) return false;
    if (this.path.clock.now() >= flight.deadline || !this.path.withdrawRetry('stale-connection')) return false;
    this.staleResends++;
    flight.pinned = endpoint;
    this.next(this.request, this);
    return true;
  }

  /** The request carries the service's idempotency header: safe to resend whatever its method (else the method decides). */
  private keyed(): true | undefined {
    const name = this.policy.idempotencyHeader;
    if (name === undefined) return undefined;
    const h = this.request.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i]!.length === name.length && h[i]!.toLowerCase() === name) return true;
    return undefined;
  }

  /** Policy, attempts, deadline, another endpoint, budget — in that order (the budget last: it is spent). */
  private mayGoAgain(failure: FailureKind, last: Endpoint): boolean {
    const flight = this.request.flight!;
    if (flight.attempts - this.staleResends >= Math.min(this.policy.attempts, this.request.maxAttempts ?? Infinity)) return false;
    if (!mayRetry({ method: this.request.method, idempotent: this.request.grpc?.idempotent ?? this.keyed(), failure, bodyReplayable: this.replayable(failure) })) return false;
    if (this.path.clock.now() >= flight.deadline) {
      this.expired = true;
      return false;
    }
    (flight.tried ??= []).push(last);
    return this.path.hasCandidateBesides(last) && this.path.withdrawRetry(failure);
  }

  /**
   * A buffered body (or none) can always go again, a recorded one the sender has ended, and one
   * written through a retry buffer while the buffer still keeps it (retry-buffer.ts: a gRPC
   * request stream, sent again from its start though still being written). A streamed one only
   * when the failure came before the request was written and not a byte of the body was read.
   */
  private replayable(failure: FailureKind): boolean {
    const body = this.request.body;
    if (body === null || Buffer.isBuffer(body)) return true;
    if (body instanceof RetryBufferBody) {
      const again = body.replay();
      if (again !== undefined) {
        this.request.body = again;
        return true;
      }
    }
    if (body instanceof RecordingBody) {
      // Streamed, but kept: whole once the sender ended it.
      const whole = body.replay();
      if (whole !== undefined) {
        this.request.body = whole;
        this.request.bodyLength = whole.length;
        return true;
      }
    }
    return neverSent(failure) && !body.readableDidRead && !body.destroyed;
  }

  /**
   * A refused connection did not touch the endpoint: again at once. Otherwise after a short
   * random pause, so that retries from many callers do not arrive together.
   */
  private again(failure: FailureKind): void {
    if (failure === 'connect' || failure === 'refused') {
      this.next(this.request, this);
      return;
    }
    this.path.clock.setTimeout(() => {
      if (!this.done) this.next(this.request, this);
    }, this.path.random() * BACKOFF_MS, true);
  }
}
