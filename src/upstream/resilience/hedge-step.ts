import type { Duplex } from 'node:stream';
import type { TandemError } from '../../core/errors.js';
import type { Endpoint } from '../endpoint.js';
import type { RequestPath } from '../request-path.js';
import type { Dispatch, Leg, ResponseHandler, Step, Trailers, UpstreamRequest } from '../types.js';
import { isClientCaused } from '../classify.js';
import { isHeldStatus } from './retry-policy.js';
import { RecordingBody } from './replayable-body.js';

/**
 * Hedging: when a request has waited longer than the service's hedge delay (a recent latency
 * percentile, resilience/hedge.ts), a second copy goes through the next step to another
 * endpoint while the first keeps running. Only for the methods hedged, with a body that can be
 * sent twice, at most once per request, and within the attempts and the deadline. In the
 * chain only while hedging is on.
 */
export function hedge(path: RequestPath): Step {
  return (next) => (request, handler) => {
    const flight = request.flight!;
    const retry = path.settings.retry;
    const body = request.body;
    const delay = flight.hedged || retry === false || flight.attempts + 1 >= Math.min(retry.attempts, request.maxAttempts ?? Infinity) || (body !== null && !Buffer.isBuffer(body) && !(body instanceof RecordingBody))
      ? undefined
      : path.hedgeDelay(request.method, request.grpc?.idempotent);
    if (delay === undefined) {
      next(request, handler);
      return;
    }
    new HedgeRace(path, next, request, handler).start(delay);
  };
}

/**
 * A race between the first leg and its hedge. Both legs are the same kind of object (Attempts,
 * as Legs) reporting to this one handler, each naming itself; one method handles either leg's
 * headers, one either leg's error. The first leg to deliver usable headers wins and the other
 * is abandoned — cancelled when it was the hedge (it merely lost a race), held against its
 * endpoint when it was the first leg and its endpoint looks stuck. A leg that fails while the
 * other is live is dropped, and the survivor carries on. Exactly one outcome goes down.
 */
export class HedgeRace implements ResponseHandler {
  private first: Leg | undefined;
  private second: Leg | undefined;
  /** The pending hedge timer's ticket; -1 when none. */
  private ticket = -1;
  /** The outcome went down (headers or the error): callbacks now pass straight through. */
  private forwarded = false;

  constructor(
    private readonly path: RequestPath,
    private readonly next: Dispatch,
    private readonly request: UpstreamRequest,
    private readonly handler: ResponseHandler,
  ) {}

  start(delayMs: number): void {
    this.next(this.request, this);
    if (this.first !== undefined && !this.forwarded) this.ticket = this.path.scheduleHedge(this, delayMs);
  }

  /** The hedge delay passed (called by the service's queue, after I/O: see request-path.ts). */
  hedgeDue(): void {
    this.ticket = -1;
    const first = this.first!;
    const flight = this.request.flight!;
    const retry = this.path.settings.retry;
    if (this.forwarded || !first.live || flight.hedged || retry === false) return;
    if (flight.attempts >= retry.attempts || this.path.clock.now() >= flight.deadline) return;
    // A recorded streamed body (a gRPC call's) can go twice only once its sender has ended it.
    const body = this.request.body;
    const whole = body instanceof RecordingBody ? body.replay() : undefined;
    if (body instanceof RecordingBody && whole === undefined) return;
    if (!this.path.hasCandidateBesides(first.endpoint) || !this.path.withdrawHedge()) return;
    if (whole !== undefined) {
      this.request.body = whole;
      this.request.bodyLength = whole.length;
    }
    (flight.tried ??= []).push(first.endpoint);
    flight.hedged = true;
    this.next(this.request, this);
  }

  onAttempt(endpoint: Endpoint, leg?: Leg): void {
    if (this.first === undefined) this.first = leg;
    else this.second = leg;
    this.handler.onAttempt?.(endpoint, leg);
  }

  /**
   * A leg got its connection. The caller aborts the leg it last heard of: the first, or the
   * hedge while it is the only one waiting.
   */
  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void {
    if (leg === this.first || (!this.forwarded && this.otherLive(leg) === undefined)) this.handler.onStart(endpoint, abort, leg);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    if (this.forwarded) return this.handler.onHeaders(statusCode, rawHeaders, resume, leg);
    const held = isHeldStatus(statusCode, rawHeaders, this.request.grpc !== undefined);
    const other = this.otherLive(leg);
    if (other !== undefined && held) {
      // The other leg is still out: drop this answer and wait for it.
      leg!.abandon();
      this.survivor(other);
      return true;
    }
    this.finish();
    if (other !== undefined) {
      // A hedge that lost the race is cancelled, not held against its endpoint. A first leg
      // slower than its hedge is held against its endpoint (a failure for outlier detection,
      // its wait a latency sample) when that endpoint looks stuck — it has answered nothing
      // since the leg went out, and is not cold (just joined or back) — or a frozen endpoint
      // would keep getting requests that all need a hedge until its health checks fail; once
      // per moment of silence (the legs that lose in the same pause are one sign of it). An
      // endpoint that is merely slower (a busy CPU, a cold dependency) still answers its other
      // requests: losing races then is the balancer's business, not an ejection's; counting it
      // ejected healthy instances of a loaded service within seconds. Nor when the winning
      // answer is a 5xx (one naming a failed dependency): it says nothing about the first endpoint.
      other.abandon(other === this.second || statusCode >= 500 || !other.chargeSilence());
    }
    if (leg === this.second && leg !== undefined) {
      if (!held) this.path.hedgeWon();
      this.handler.onStart(leg.endpoint, leg.abortFn!, leg);
    }
    return this.handler.onHeaders(statusCode, rawHeaders, resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(trailers?: Trailers): void {
    this.finish();
    this.handler.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Leg): void {
    if (!this.forwarded) {
      const other = this.otherLive(leg);
      if (other !== undefined) {
        // No leg: the hedge found no endpoint after all; the first carries on.
        if (leg === undefined) return;
        if (!isClientCaused(error)) {
          (this.request.flight!.tried ??= []).push(leg.endpoint);
          this.survivor(other);
          return;
        }
        // The client left: the other leg is cancelled too, its end says nothing about its endpoint.
        other.abandon(true);
      }
    }
    this.finish();
    this.handler.onError(error, leg);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /** The leg beside `leg`, if it is still waiting for its response. */
  private otherLive(leg: Leg | undefined): Leg | undefined {
    const other = leg === this.first ? this.second : this.first;
    return other !== undefined && other.live ? other : undefined;
  }

  /** `leg` is now the only one live: the caller must be able to abort it. */
  private survivor(leg: Leg): void {
    if (leg.abortFn !== undefined) this.handler.onStart(leg.endpoint, leg.abortFn, leg);
  }

  private finish(): void {
    this.forwarded = true;
    if (this.ticket < 0) return;
    this.path.cancelHedge(this.ticket);
    this.ticket = -1;
  }
}
