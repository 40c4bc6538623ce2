import type { Readable } from 'node:stream';
import type { Duplex } from 'node:stream';
import { TandemError } from '../core/errors.js';
import type { RetryConfig } from '../config/types.js';
import type { Attempt } from './attempt.js';
import type { Endpoint } from './endpoint.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';
import { mayRetry, type FailureKind } from './resilience/retry-policy.js';

/** Sent on every attempt: how long the gateway will wait for this attempt's response headers. */
export const TIMEOUT_HEADER = 'x-tandem-timeout-ms';

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
 * The common case (first attempt answers) costs this one object: the endpoints tried are kept
 * in an array only once there is a second attempt.
 */
export class RetryingRequest implements ResponseHandler {
  private readonly policy: RetryConfig;
  private attempt: Attempt | undefined;
  private endpoint: Endpoint | undefined;
  /** Endpoints of the attempts before the current one, once there are any. */
  private tried: Endpoint[] | undefined;
  private attempts = 0;
  /** When the wait for response headers ends for all attempts together (performance.now()). */
  private deadline = 0;
  /** Index of the timeout header's value in request.headers; -1 before the first attempt. */
  private headerAt = -1;
  /** Headers went to the client: from here on, callbacks pass straight through. */
  private forwarded = false;
  /** The retry policy said yes but the deadline had passed. */
  private expired = false;
  private nextEndpoint: Endpoint | undefined;
  /** Times a wait shorter than `timeout` (undici's own timers are too coarse for it). */
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
          this.fail(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the body', { cause: err, status: 499 }));
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
  }

  private send(endpoint: Endpoint): void {
    this.attempts++;
    this.endpoint = endpoint;
    // The first attempt's wait is exactly `timeout` (equal to the body timeout: one undici timer).
    const left = this.attempts === 1 ? this.timeoutMs : Math.max(1, Math.ceil(this.deadline - performance.now()));
    const wait = this.policy.perTryTimeout === undefined ? left : Math.min(this.policy.perTryTimeout, left);
    this.setTimeoutHeader(wait);
    const attempt = this.host.createAttempt(endpoint, this);
    this.attempt = attempt;
    if (wait < this.timeoutMs) this.timer = setTimeout(perTryTimedOut, wait, this, attempt, wait);
    // undici's own wait stays `timeout`, equal to the body timeout: one timer per request.
    attempt.dispatch(this.request, this.timeoutMs, this.timeoutMs);
  }

  /** The per-try timer fired: fails the attempt it was armed for, if that is still waiting. */
  timedOut(attempt: Attempt, wait: number): void {
    this.timer = undefined;
    if (attempt !== this.attempt || this.forwarded) return;
    attempt.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${this.endpoint!.id} sent no response headers within ${wait} ms`, { status: 504 }));
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

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.clearTimer();
    if (!this.forwarded && (statusCode === 502 || statusCode === 503 || statusCode === 504)) {
      const failure: FailureKind = statusCode === 502 ? 'status-502' : statusCode === 503 ? 'status-503' : 'status-504';
      if (this.mayGoAgain(failure)) {
        // Held back: the client never sees this answer.
        this.attempt!.abandon();
        this.retry(failure);
        return true;
      }
    }
    this.forwarded = true;
    return this.handler.onHeaders(statusCode, rawHeaders, resume);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(): void {
    this.host.settled();
    this.handler.onComplete();
  }

  onError(error: TandemError): void {
    this.clearTimer();
    if (!this.forwarded) {
      const failure = failureOf(error, this.attempt!.sent);
      if (failure !== undefined && this.mayGoAgain(failure)) {
        this.retry(failure);
        return;
      }
      if (this.expired) {
        this.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `no answer from ${this.host.name} within ${this.timeoutMs} ms over ${this.attempts} attempts`, { cause: error, status: 504 }));
        return;
      }
    }
    this.fail(error);
  }

  /** The one error outcome. */
  private fail(error: TandemError): void {
    this.host.settled();
    this.handler.onError(error);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /** Policy, attempts, deadline, another endpoint, budget — in that order (the budget last: it is spent). */
  private mayGoAgain(failure: FailureKind): boolean {
    if (this.attempts >= this.policy.attempts) return false;
    if (!mayRetry({ method: this.request.method, failure, bodyReplayable: this.replayable(failure) })) return false;
    if (performance.now() >= this.deadline) {
      this.expired = true;
      return false;
    }
    const last = this.endpoint!;
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
    return (failure === 'connect' || failure === 'reset-before-send') && !body.readableDidRead && !body.destroyed;
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
    setTimeout(() => this.send(next), Math.random() * BACKOFF_MS);
  }
}

function perTryTimedOut(request: RetryingRequest, attempt: Attempt, wait: number): void {
  request.timedOut(attempt, wait);
}

/** Which kind of failure an attempt's error is for the retry policy; undefined = never retried. */
function failureOf(error: TandemError, sent: boolean): FailureKind | undefined {
  switch (error.code) {
    case 'TANDEM_ERR_UPSTREAM_CONNECT': return 'connect';
    case 'TANDEM_ERR_UPSTREAM_RESET': return sent ? 'reset' : 'reset-before-send';
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
    else done(undefined, err ?? new Error(`body ended after ${at} of ${length} bytes`));
  };
  const onData = (chunk: Buffer) => {
    // Node's parser enforces Content-Length: no more than `length` bytes arrive.
    chunk.copy(buffer, at);
    at += chunk.length;
  };
  body.on('data', onData);
  body.once('end', () => finish());
  body.once('error', (err: Error) => finish(err));
  body.once('close', () => finish(at === length ? undefined : new Error('closed')));
}
