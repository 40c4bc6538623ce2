import type { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { TandemError } from '../core/errors.js';
// Sent on every attempt: how long the caller will wait for this attempt's response headers.
import { TIMEOUT_HEADER } from '../core/deadline.js';
import type { RetrySettings } from './settings.js';
import type { Attempt, LegOwner } from './attempt.js';
import type { Endpoint } from './endpoint.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';
import { MAX_STALE_RESENDS, mayRetry, neverSent, type FailureKind } from './resilience/retry-policy.js';
import { isClientCaused } from './classify.js';
import { isDependencyFailure } from '../core/dependency.js';


/** Retries after a failure that reached the endpoint wait a random 0–25 ms (Envoy's base interval). */
const BACKOFF_MS = 25;

/** What a RetryingRequest needs from its Upstream. */
export interface RetryHost {
  readonly name: string;
  /** Deadlines, per-try timeouts and backoff are timed by it (tests pass a FakeClock). */
  readonly clock: Clock;
  /** Uniform [0, 1) for the backoff's jitter. */
  readonly random: () => number;
  /** An endpoint for the first attempt; undefined when none can take a request. */
  pickFirst(hashKey: string | undefined): Endpoint | undefined;
  /** One not in `tried`, else any but `last`; undefined when there is none. */
  pickAgain(hashKey: string | undefined, tried: readonly Endpoint[], last: Endpoint): Endpoint | undefined;
  /** A leg of `request` to `endpoint`, not dispatched yet. */
  createAttempt(endpoint: Endpoint, request: RetryingRequest): Attempt;
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

const NO_RETRY: RetrySettings = Object.freeze({ attempts: 1, perTryTimeoutMs: undefined, bodyLimit: 0, budget: Object.freeze({ percent: 0, minPerSecond: 0 }) });

/**
 * One client request through the upstream: an attempt loop that sends it to an endpoint and,
 * when an attempt fails in a way the retry policy allows, to another. The client's handler sees
 * exactly one outcome: a response, or one error. A 502/503/504 that will be retried is held back
 * and its exchange abandoned; once headers went to the client nothing is retried.
 *
 * Hedging: when the first attempt has waited longer than the service's hedge delay (a recent
 * latency percentile), a second attempt (the hedge) goes to another endpoint while the first
 * keeps running. Each attempt is a leg, and both legs are Attempts reporting here with
 * themselves as the first argument (LegOwner), so one method handles either leg's headers and
 * one either leg's error. The first leg to deliver usable headers wins and the other is
 * abandoned — cancelled when it was the hedge (it merely lost a race), held against its endpoint
 * when it was the earlier leg (it was slower than a copy sent after it). A leg that fails while
 * the other is live is dropped, and the survivor carries on.
 *
 * The common case (first attempt answers) costs this one object and the Attempt: the endpoints
 * tried are kept in an array only once there is a second attempt, and hedge timing shares one
 * timer per service.
 */
export class RetryingRequest implements ResponseHandler, LegOwner {
  private readonly policy: RetrySettings;
  /** The latest attempt sent by the loop (first or retry); undefined before the first. */
  private leg: Attempt | undefined;
  /** The hedge of `leg`, once one was sent (at most one per request). */
  private hedge: Attempt | undefined;
  /** The pending hedge timer's ticket; -1 when none. */
  private hedgeTicket = -1;
  /** Endpoints of the attempts before the current one, once there are any. */
  private tried: Endpoint[] | undefined;
  private attempts = 0;
  /** Resends after a stale connection (not counted in `attempts`, see resendStale). */
  private staleResends = 0;
  /** When the wait for response headers ends for all attempts together (clock time). */
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

  constructor(
    private readonly host: RetryHost,
    private readonly request: UpstreamRequest,
    private readonly handler: ResponseHandler,
    retry: RetrySettings | false,
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
    this.deadline = this.host.clock.now() + this.timeoutMs;
    this.leg = this.sendLeg(endpoint);
    // A hedge is a second copy of the request: only with a body that can be sent twice.
    const body = this.request.body;
    if (this.policy.attempts > 1 && (body === null || Buffer.isBuffer(body))) {
      const delay = this.host.hedgeDelay(this.request.method);
      if (delay !== undefined) this.hedgeTicket = this.host.scheduleHedge(this, delay);
    }
  }

  /**
   * Sends one attempt to `endpoint`, timed by its own per-try timer when its wait is shorter
   * than `timeout`; undici's own wait stays `timeout`, equal to the body timeout: one timer per
   * request in the common case.
   */
  private sendLeg(endpoint: Endpoint): Attempt {
    this.attempts++;
    this.handler.onAttempt?.(endpoint);
    const wait = this.waitForNext();
    const leg = this.host.createAttempt(endpoint, this);
    leg.live = true;
    if (wait < this.timeoutMs) leg.timer = this.armPerTry(leg, wait);
    leg.dispatch(this.request, this.timeoutMs, this.timeoutMs);
    return leg;
  }

  /**
   * The wait for a new attempt's headers, also sent in its timeout header: what is left of the
   * deadline, capped per try. The first attempt's is exactly `timeout`.
   */
  private waitForNext(): number {
    const left = this.attempts === 1 ? this.timeoutMs : Math.max(1, Math.ceil(this.deadline - this.host.clock.now()));
    const wait = this.policy.perTryTimeoutMs === undefined ? left : Math.min(this.policy.perTryTimeoutMs, left);
    this.setTimeoutHeader(wait);
    return wait;
  }

  /** The hedge timer fired (called by the service's queue). */
  hedgeDue(): void {
    this.hedgeTicket = -1;
    const leg = this.leg!;
    if (this.forwarded || this.done || !leg.live || this.hedge !== undefined) return;
    if (this.attempts >= this.policy.attempts || this.host.clock.now() >= this.deadline) return;
    const tried = this.tried ?? (this.tried = []);
    tried.push(leg.endpoint);
    const next = this.host.pickAgain(this.request.hashKey, tried, leg.endpoint);
    if (next === undefined || next === leg.endpoint || !this.host.withdrawHedge()) return;
    this.hedge = this.sendLeg(next);
  }

  private armPerTry(leg: Attempt, wait: number): TimerHandle {
    return this.host.clock.setTimeout(() => this.timedOut(leg, wait), wait, true);
  }

  /** A per-try timer fired: fails the leg it was armed for, if that is still waiting. */
  private timedOut(leg: Attempt, wait: number): void {
    leg.timer = undefined;
    if (this.forwarded || !leg.live) return;
    const body = this.request.body;
    if (body !== null && !Buffer.isBuffer(body) && !body.readableEnded) {
      // The client is still sending the body the endpoint needs before it can answer: the
      // client's pace is not the endpoint's failure (the body guard and limits.requestTimeout
      // bound it). Timed again from here. (Only a first leg has a streamed body: no hedge then.)
      leg.timer = this.armPerTry(leg, wait);
      return;
    }
    leg.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${leg.endpoint.id} sent no response headers within ${wait} ms`, { status: 504 }));
  }

  /** The leg beside `leg`, if it is still waiting for its response. */
  private otherLive(leg: Attempt): Attempt | undefined {
    const other = leg === this.leg ? this.hedge : this.leg;
    return other !== undefined && other.live ? other : undefined;
  }

  /** `leg` stops waiting: its per-try timer goes. */
  private settleLeg(leg: Attempt): void {
    leg.live = false;
    if (leg.timer === undefined) return;
    this.host.clock.clearTimeout(leg.timer);
    leg.timer = undefined;
  }

  /** `leg` is given up: no more callbacks from it; `cancelled` = its end says nothing about its endpoint. */
  private drop(leg: Attempt, cancelled: boolean): void {
    this.settleLeg(leg);
    leg.abandon(cancelled);
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

  /**
   * A leg got its connection. The client's handler aborts the leg it last heard of: the loop's
   * latest attempt, or the hedge while it is the only one waiting.
   */
  legStarted(leg: Attempt, abort: (reason?: Error) => void): void {
    if (leg === this.leg || (this.otherLive(leg) === undefined && !this.forwarded && !this.done)) this.handler.onStart(leg.endpoint, abort);
  }

  // As a ResponseHandler: legs report start, headers and errors through legStarted, legHeaders
  // and legError; these three are only the handler shape (a leg's body and end use onData and
  // onComplete below).
  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.handler.onStart(endpoint, abort);
  }

  /** Response headers from either leg. */
  legHeaders(leg: Attempt, statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.settleLeg(leg);
    if (this.forwarded) return this.handler.onHeaders(statusCode, rawHeaders, resume);
    if (isHeld(statusCode, rawHeaders)) {
      const other = this.otherLive(leg);
      if (other !== undefined) {
        // The other leg is still out: drop this answer and wait for it.
        leg.abandon();
        this.survivor(other);
        return true;
      }
      const failure = failureOfStatus(statusCode);
      if (this.mayGoAgain(failure, leg.endpoint)) {
        // Held back: the client never sees this answer.
        leg.abandon();
        this.retry(failure);
        return true;
      }
    }
    this.win();
    const loser = this.otherLive(leg);
    if (loser !== undefined) {
      // A hedge that lost the race is cancelled, not held against its endpoint. A first leg
      // slower than its hedge is held against its endpoint (a failure for outlier detection,
      // its wait a latency sample) when that endpoint looks stuck — it has answered nothing
      // since the leg went out, and is not cold (just joined or back) — or a frozen endpoint
      // would keep getting requests that all need a hedge until its health checks fail. An
      // endpoint that is merely slower (a busy
      // CPU, a cold dependency) still answers its other requests: losing races then is the
      // balancer's business, not an ejection's; counting it ejected healthy instances of a
      // loaded service within seconds. Nor when the winning answer is a 5xx (one naming a
      // failed dependency, core/dependency.ts): it says nothing about the first endpoint.
      this.drop(loser, loser === this.hedge || statusCode >= 500 || !loser.looksStuck);
    }
    if (leg === this.hedge) {
      this.host.hedgeWon();
      this.handler.onStart(leg.endpoint, leg.abortFn!);
    }
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
  private survivor(leg: Attempt): void {
    if (leg.abortFn !== undefined) this.handler.onStart(leg.endpoint, leg.abortFn);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    return this.handler.onHeaders(statusCode, rawHeaders, resume);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(): void {
    this.settle();
    this.handler.onComplete();
  }

  /** Either leg failed. */
  legError(leg: Attempt, error: TandemError): void {
    this.settleLeg(leg);
    if (!this.forwarded && !isClientCaused(error)) {
      const other = this.otherLive(leg);
      if (other !== undefined) {
        this.survivor(other);
        return;
      }
      if (this.recover(error, leg)) return;
    }
    this.fail(error);
  }

  onError(error: TandemError): void {
    this.fail(error);
  }

  /** After the last live leg failed: retries when allowed (true), or reports why not later. */
  private recover(error: TandemError, leg: Attempt): boolean {
    const failure = failureOf(error, leg.sent);
    if (failure === 'stale-connection' && this.resendStale(leg.endpoint)) return true;
    if (failure !== undefined && this.mayGoAgain(failure, leg.endpoint)) {
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
    if (this.leg?.live === true) this.drop(this.leg, cancelled);
    if (this.hedge?.live === true) this.drop(this.hedge, cancelled);
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
    if (this.host.clock.now() >= this.deadline || !this.host.withdrawRetry('stale-connection')) return false;
    this.staleResends++;
    this.leg = this.sendLeg(endpoint);
    return true;
  }

  /** Policy, attempts, deadline, another endpoint, budget — in that order (the budget last: it is spent). */
  private mayGoAgain(failure: FailureKind, last: Endpoint): boolean {
    if (this.attempts - this.staleResends >= this.policy.attempts) return false;
    if (!mayRetry({ method: this.request.method, failure, bodyReplayable: this.replayable(failure) })) return false;
    if (this.host.clock.now() >= this.deadline) {
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
      this.leg = this.sendLeg(next);
      return;
    }
    this.host.clock.setTimeout(() => {
      if (!this.done) this.leg = this.sendLeg(next);
    }, this.host.random() * BACKOFF_MS, true);
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
