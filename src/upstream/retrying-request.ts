import type { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { TandemError } from '../core/errors.js';
// Sent on every attempt: how long the caller will wait for this attempt's response headers.
import { TIMEOUT_HEADER } from '../core/deadline.js';
import type { RetryConfig } from '../config/types.js';
import type { Attempt } from './attempt.js';
import type { Endpoint } from './endpoint.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';
import { MAX_STALE_RESENDS, mayRetry, neverSent, type FailureKind } from './resilience/retry-policy.js';
import { isClientCaused } from './classify.js';
import { isDependencyFailure } from '../core/dependency.js';


/** Retries after a failure that reached the endpoint wait a random 0–25 ms (Envoy's base interval). */
const BACKOFF_MS = 25;

/** What a RetryingRequest needs from its Upstream. */
export interface RetryHost {
  readonly name: string;
  /** An endpoint for the first attempt; undefined when none can take a request. */
  pickFirst(hashKey: string | undefined): Endpoint | undefined;
  /** One not in `tried`, else any but `last`; undefined when there is none. */
  pickAgain(hashKey: string | undefined, tried: readonly Endpoint[], last: Endpoint): Endpoint | undefined;
  /** An exchange with `endpoint` reporting to `handler`, not dispatched yet. */
  createAttempt(endpoint: Endpoint, handler: ResponseHandler): Attempt;
  /** Takes a retry from the budget (counted by reason), or counts the refusal and says no. */
  withdrawRetry(failure: FailureKind): boolean;
  /** Milliseconds after which a request with this method is hedged; undefined = never. */
  hedgeDelay(method: string): number | undefined;
  /** Calls `request.hedgeDue()` `delayMs` from now; returns a ticket for `cancelHedge`. */
  scheduleHedge(request: RetryingRequest, delayMs: number): number;
  cancelHedge(ticket: number): void;
  /** Takes a hedge from the retry budget (counted), or counts the refusal and says no. */
  withdrawHedge(): boolean;
  /** A hedge answered first (counted). */
  hedgeWon(): void;
  /** The error for a request no endpoint can take (counted). */
  noEndpoint(): TandemError;
  /** The request has its one outcome (called exactly once). */
  settled(): void;
}

const NO_RETRY: RetryConfig = Object.freeze({ attempts: 1, perTryTimeout: undefined, bodyLimit: 0, budget: Object.freeze({ percent: 0, minPerSecond: 0 }) });

/**
 * One client request through the upstream: an attempt loop that sends it to an endpoint and,
 * when an attempt fails in a way the retry policy allows, to another. The client's handler sees
 * exactly one outcome: a response, or one error. A 502/503/504 that will be retried is held back
 * and its exchange abandoned; once headers went to the client nothing is retried.
 *
 * Hedging: when the first attempt has waited longer than the service's hedge delay (a recent
 * latency percentile), a second attempt (the hedge) goes to another endpoint while the first
 * keeps running. Two legs are then live: the primary, whose callbacks come to this object, and
 * the hedge, whose callbacks come through a HedgeLeg. The first leg to deliver usable headers
 * wins and the other is abandoned; a leg that fails while the other is live is simply dropped.
 *
 * The common case (first attempt answers) costs this one object: the endpoints tried are kept
 * in an array only once there is a second attempt, and hedge timing shares one timer per service.
 */
export class RetryingRequest implements ResponseHandler {
  private readonly policy: RetryConfig;
  /** The primary leg: its exchange reports to this object. */
  private attempt: Attempt | undefined;
  private endpoint: Endpoint | undefined;
  /** The primary leg is waiting for its response (false between a failure and the retry). */
  private live = false;
  /** The hedge leg, once one was sent (at most one per request). */
  private hedge: HedgeLeg | undefined;
  /** The pending hedge timer's ticket; -1 when none. */
  private hedgeTicket = -1;
  /** Endpoints of the attempts before the current one, once there are any. */
  private tried: Endpoint[] | undefined;
  private attempts = 0;
  /** Resends after a stale connection (not counted in `attempts`, see resendStale). */
  private staleResends = 0;
  /** When the wait for response headers ends for all attempts together (performance.now()). */
  private deadline = 0;
  /** Index of the timeout header's value in request.headers; -1 before the first attempt. */
  private headerAt = -1;
  /** Headers went to the client: from here on, callbacks pass straight through. */
  private forwarded = false;
  /** The one outcome was delivered. */
  private done = false;
  /** The retry policy said yes but the deadline had passed. */
  private expired = false;
  private nextEndpoint: Endpoint | undefined;
  /** Times the primary's wait when shorter than `timeout` (undici's own timers are too coarse for it). */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly host: RetryHost,
    private readonly request: UpstreamRequest,
    private readonly handler: ResponseHandler,
    retry: RetryConfig | false,
    private readonly timeoutMs: number,
  ) {
    this.policy = retry === false ? NO_RETRY : retry;
  }

  start(): void {
    const body = this.request.body;
    const length = this.request.bodyLength ?? -1;
    if (body !== null && !Buffer.isBuffer(body) && length >= 0 && length <= this.policy.bodyLimit && this.policy.attempts > 1) {
      readWhole(body, length, (buffer, err) => {
        if (buffer === undefined) {
          // The gateway's own verdict on the body (too slow: 408) stands; anything else is the client leaving.
          this.fail(err instanceof TandemError ? err : new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the body', { cause: err, status: 499 }));
          return;
        }
        this.request.body = buffer;
        this.first();
      });
      return;
    }
    this.first();
  }

  private first(): void {
    const endpoint = this.host.pickFirst(this.request.hashKey);
    if (endpoint === undefined) {
      this.fail(this.host.noEndpoint());
      return;
    }
    // Counted from the first attempt: reading a replayable body is the client's time, bounded
    // by limits.requestTimeout.
    this.deadline = performance.now() + this.timeoutMs;
    this.send(endpoint);
    // A hedge is a second copy of the request: only with a body that can be sent twice.
    const body = this.request.body;
    if (this.policy.attempts > 1 && (body === null || Buffer.isBuffer(body))) {
      const delay = this.host.hedgeDelay(this.request.method);
      if (delay !== undefined) this.hedgeTicket = this.host.scheduleHedge(this, delay);
    }
  }

  /** Sends the primary leg to `endpoint`. */
  private send(endpoint: Endpoint): void {
    this.attempts++;
    this.handler.onAttempt?.(endpoint);
    this.endpoint = endpoint;
    this.live = true;
    const wait = this.waitForNext();
    const attempt = this.host.createAttempt(endpoint, this);
    this.attempt = attempt;
    if (wait < this.timeoutMs) this.timer = setTimeout(perTryTimedOut, wait, this, attempt, wait);
    // undici's own wait stays `timeout`, equal to the body timeout: one timer per request.
    attempt.dispatch(this.request, this.timeoutMs, this.timeoutMs);
  }

  /**
   * The wait for a new attempt's headers, also sent in its timeout header: what is left of the
   * deadline, capped per try. The first attempt's is exactly `timeout`.
   */
  private waitForNext(): number {
    const left = this.attempts === 1 ? this.timeoutMs : Math.max(1, Math.ceil(this.deadline - performance.now()));
    const wait = this.policy.perTryTimeout === undefined ? left : Math.min(this.policy.perTryTimeout, left);
    this.setTimeoutHeader(wait);
    return wait;
  }

  /** The hedge timer fired (called by the Upstream's queue). */
  hedgeDue(): void {
    this.hedgeTicket = -1;
    if (this.forwarded || this.done || !this.live || this.hedge !== undefined) return;
    if (this.attempts >= this.policy.attempts || performance.now() >= this.deadline) return;
    const last = this.endpoint!;
    const tried = this.tried ?? (this.tried = []);
    tried.push(last);
    const next = this.host.pickAgain(this.request.hashKey, tried, last);
    if (next === undefined || next === last || !this.host.withdrawHedge()) return;
    this.attempts++;
    this.handler.onAttempt?.(next);
    const wait = this.waitForNext();
    const leg = new HedgeLeg(this, next);
    leg.attempt = this.host.createAttempt(next, leg);
    this.hedge = leg;
    leg.timer = setTimeout(perTryTimedOut, wait, this, leg.attempt, wait);
    leg.attempt.dispatch(this.request, this.timeoutMs, this.timeoutMs);
  }

  /** A per-try timer fired: fails the attempt it was armed for, if that is still waiting. */
  timedOut(attempt: Attempt, wait: number): void {
    const hedge = this.hedge;
    if (hedge !== undefined && attempt === hedge.attempt) hedge.timer = undefined;
    else if (attempt === this.attempt) this.timer = undefined;
    if (this.forwarded || !this.isLive(attempt)) return;
    const body = this.request.body;
    if (attempt === this.attempt && body !== null && !Buffer.isBuffer(body) && !body.readableEnded) {
      // The client is still sending the body the endpoint needs before it can answer: the
      // client's pace is not the endpoint's failure (the body guard and limits.requestTimeout
      // bound it). Timed again from here.
      this.timer = setTimeout(perTryTimedOut, wait, this, attempt, wait);
      return;
    }
    const endpoint = attempt === this.attempt ? this.endpoint! : hedge!.endpoint;
    attempt.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${endpoint.id} sent no response headers within ${wait} ms`, { status: 504 }));
  }

  private isLive(attempt: Attempt): boolean {
    return attempt === this.attempt ? this.live : this.hedge !== undefined && attempt === this.hedge.attempt && this.hedge.live;
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private setTimeoutHeader(ms: number): void {
    const headers = this.request.headers;
    if (this.headerAt < 0) {
      headers.push(TIMEOUT_HEADER, String(ms));
      this.headerAt = headers.length - 1;
    } else {
      headers[this.headerAt] = String(ms);
    }
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.handler.onStart(endpoint, abort);
  }

  /** The hedge leg got its connection: the client's handler learns of it once it is the leg that counts. */
  hedgeStarted(leg: HedgeLeg): void {
    if (!this.live && !this.forwarded && !this.done) this.handler.onStart(leg.endpoint, leg.abort!);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.clearTimer();
    if (this.forwarded) return this.handler.onHeaders(statusCode, rawHeaders, resume);
    if (isHeld(statusCode, rawHeaders)) {
      const failure = failureOfStatus(statusCode);
      if (this.hedge?.live === true) {
        // The hedge is still out: drop this answer and wait for it.
        this.live = false;
        this.attempt!.abandon();
        this.survivor(this.hedge);
        return true;
      }
      if (this.mayGoAgain(failure, this.endpoint!)) {
        // Held back: the client never sees this answer.
        this.live = false;
        this.attempt!.abandon();
        this.retry(failure);
        return true;
      }
    }
    this.win();
    if (this.hedge?.live === true) {
      // The hedge lost the race: cancelled, not held against its endpoint.
      this.hedge.live = false;
      this.hedge.clearTimer();
      this.hedge.attempt.abandon(true);
    }
    return this.handler.onHeaders(statusCode, rawHeaders, resume);
  }

  /** Response headers from the hedge leg. */
  hedgeHeaders(leg: HedgeLeg, statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    leg.clearTimer();
    if (this.forwarded) return this.handler.onHeaders(statusCode, rawHeaders, resume);
    if (isHeld(statusCode, rawHeaders)) {
      const failure = failureOfStatus(statusCode);
      if (this.live) {
        leg.live = false;
        leg.attempt.abandon();
        return true;
      }
      if (this.mayGoAgain(failure, leg.endpoint)) {
        leg.live = false;
        leg.attempt.abandon();
        this.retry(failure);
        return true;
      }
    }
    this.win();
    this.host.hedgeWon();
    if (this.live) {
      // The first attempt was slower than its hedge: that is held against its endpoint (a
      // failure for outlier detection, its wait a latency sample), or a stuck endpoint would
      // keep getting requests that all need a hedge. Only when the hedge's answer is a success:
      // a 5xx that won (one naming a failed dependency, core/dependency.ts) says nothing about
      // how fast the first endpoint is.
      this.live = false;
      this.clearTimer();
      this.attempt!.abandon(statusCode >= 500);
    }
    this.handler.onStart(leg.endpoint, leg.abort!);
    return this.handler.onHeaders(statusCode, rawHeaders, resume);
  }

  /** Headers are going to the client: no other attempt will be made. */
  private win(): void {
    this.forwarded = true;
    this.cancelHedgeTimer();
  }

  private cancelHedgeTimer(): void {
    if (this.hedgeTicket < 0) return;
    this.host.cancelHedge(this.hedgeTicket);
    this.hedgeTicket = -1;
  }

  /** `leg` is now the only one live: the client's handler must be able to abort it. */
  private survivor(leg: HedgeLeg): void {
    if (leg.abort !== undefined) this.handler.onStart(leg.endpoint, leg.abort);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(): void {
    this.settle();
    this.handler.onComplete();
  }

  onError(error: TandemError): void {
    this.clearTimer();
    this.live = false;
    if (!this.forwarded && !isClientCaused(error)) {
      if (this.hedge?.live === true) {
        this.survivor(this.hedge);
        return;
      }
      if (this.recover(error, this.attempt!, this.endpoint!)) return;
    }
    this.fail(error);
  }

  /** The hedge leg failed. */
  hedgeError(leg: HedgeLeg, error: TandemError): void {
    leg.clearTimer();
    leg.live = false;
    if (!this.forwarded && !isClientCaused(error)) {
      if (this.live) return; // the primary is still out
      if (this.recover(error, leg.attempt, leg.endpoint)) return;
    }
    this.fail(error);
  }

  /** After the last live leg failed: retries when allowed (true), or reports why not later. */
  private recover(error: TandemError, attempt: Attempt, endpoint: Endpoint): boolean {
    const failure = failureOf(error, attempt.sent);
    if (failure === 'stale-connection' && this.resendStale(endpoint)) return true;
    if (failure !== undefined && this.mayGoAgain(failure, endpoint)) {
      this.retry(failure);
      return true;
    }
    if (this.expired) {
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `no answer from ${this.host.name} within ${this.timeoutMs} ms over ${this.attempts} attempts`, { cause: error, status: 504 }));
      return true;
    }
    return false;
  }

  /**
   * The one error outcome; any leg still out is abandoned. When the client caused it (it left
   * while a hedge was out, say), the legs are cancelled: their ends say nothing about their
   * endpoints.
   */
  private fail(error: TandemError): void {
    if (this.done) return;
    const cancelled = isClientCaused(error);
    if (this.live) {
      this.live = false;
      this.clearTimer();
      this.attempt!.abandon(cancelled);
    }
    if (this.hedge?.live === true) {
      this.hedge.live = false;
      this.hedge.clearTimer();
      this.hedge.attempt.abandon(cancelled);
    }
    this.settle();
    this.handler.onError(error);
  }

  private settle(): void {
    this.done = true;
    this.cancelHedgeTimer();
    this.host.settled();
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /**
   * Stale-connection hook: the endpoint closed a reused connection with the request unread.
   * Sent again at once to the same endpoint (undici opens a new connection, or takes an idle
   * one it has just checked), whatever the method and the retry settings: the request never
   * reached it (retry-policy.ts). Bounded by the deadline and MAX_STALE_RESENDS.
   */
  private resendStale(endpoint: Endpoint): boolean {
    if (this.staleResends >= MAX_STALE_RESENDS || !this.replayable('stale-connection')) return false;
    if (performance.now() >= this.deadline || !this.host.withdrawRetry('stale-connection')) return false;
    this.staleResends++;
    this.send(endpoint);
    return true;
  }

  /** Policy, attempts, deadline, another endpoint, budget — in that order (the budget last: it is spent). */
  private mayGoAgain(failure: FailureKind, last: Endpoint): boolean {
    if (this.attempts - this.staleResends >= this.policy.attempts) return false;
    if (!mayRetry({ method: this.request.method, failure, bodyReplayable: this.replayable(failure) })) return false;
    if (performance.now() >= this.deadline) {
      this.expired = true;
      return false;
    }
    const tried = this.tried ?? (this.tried = []);
    tried.push(last);
    const next = this.host.pickAgain(this.request.hashKey, tried, last);
    if (next === undefined || !this.host.withdrawRetry(failure)) return false;
    this.nextEndpoint = next;
    return true;
  }

  /**
   * A buffered body (or none) can always go again. A streamed one only when the failure came
   * before the request was written and not a byte of the body was read.
   */
  private replayable(failure: FailureKind): boolean {
    const body = this.request.body;
    if (body === null || Buffer.isBuffer(body)) return true;
    return neverSent(failure) && !body.readableDidRead && !body.destroyed;
  }

  private retry(failure: FailureKind): void {
    const next = this.nextEndpoint!;
    this.nextEndpoint = undefined;
    // A refused connection did not touch the endpoint: go at once. Otherwise a short random
    // pause, so that retries from many clients do not arrive together.
    if (failure === 'connect') {
      this.send(next);
      return;
    }
    setTimeout(() => {
      if (!this.done) this.send(next);
    }, Math.random() * BACKOFF_MS);
  }
}

/**
 * The hedge's relay: its exchange reports here, and this tells the request which leg spoke.
 * Once the hedge has won, its body and end pass straight to the client's handler.
 */
class HedgeLeg implements ResponseHandler {
  attempt!: Attempt;
  live = true;
  abort: ((reason?: Error) => void) | undefined;
  timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly request: RetryingRequest,
    readonly endpoint: Endpoint,
  ) {}

  clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  onStart(_endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.abort = abort;
    this.request.hedgeStarted(this);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    return this.request.hedgeHeaders(this, statusCode, rawHeaders, resume);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.request.onData(chunk, last);
  }

  onComplete(): void {
    this.request.onComplete();
  }

  onError(error: TandemError): void {
    this.request.hedgeError(this, error);
  }
}

/**
 * A 502/503/504 is held back to be retried elsewhere — unless it reports a dependency's failure
 * (core/dependency.ts): the siblings share the dependency, so it goes to the client at once.
 */
function isHeld(statusCode: number, rawHeaders: readonly Buffer[]): boolean {
  return (statusCode === 502 || statusCode === 503 || statusCode === 504) && !isDependencyFailure(statusCode, rawHeaders);
}

function failureOfStatus(statusCode: number): FailureKind {
  return statusCode === 502 ? 'status-502' : statusCode === 503 ? 'status-503' : 'status-504';
}

function perTryTimedOut(request: RetryingRequest, attempt: Attempt, wait: number): void {
  request.timedOut(attempt, wait);
}

/** Which kind of failure an attempt's error is for the retry policy; undefined = never retried. */
function failureOf(error: TandemError, sent: boolean): FailureKind | undefined {
  switch (error.code) {
    case 'TANDEM_ERR_UPSTREAM_CONNECT': return 'connect';
    case 'TANDEM_ERR_UPSTREAM_RESET': return error.retryable ? 'stale-connection' : sent ? 'reset' : 'reset-before-send';
    case 'TANDEM_ERR_UPSTREAM_TIMEOUT': return 'timeout';
    default: return undefined;
  }
}

/** Reads a body of known length into one Buffer; `done(undefined, err)` when the client goes away. */
function readWhole(body: Readable, length: number, done: (buffer: Buffer | undefined, err?: Error) => void): void {
  const buffer = Buffer.allocUnsafe(length);
  let at = 0;
  let settled = false;
  const finish = (err?: Error) => {
    if (settled) return;
    settled = true;
    body.off('data', onData);
    if (err === undefined && at === length) done(buffer);
    else done(undefined, err ?? new TandemError('TANDEM_ERR_CLIENT_ABORTED', `body ended after ${at} of ${length} bytes`));
  };
  const onData = (chunk: Buffer) => {
    // Node's parser enforces Content-Length: no more than `length` bytes arrive.
    chunk.copy(buffer, at);
    at += chunk.length;
  };
  body.on('data', onData);
  body.once('end', () => finish());
  body.once('error', (err: Error) => finish(err));
  body.once('close', () => finish(at === length ? undefined : new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client closed the body early')));
}
