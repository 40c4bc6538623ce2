import type { Dispatcher } from 'undici';
import type { Duplex, Readable } from 'node:stream';
import { COLD_ANSWERS, type Endpoint } from './endpoint.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';
import { classifyUpstreamError, isClientCaused, isStaleConnection, unreadOnReuse } from './classify.js';
import { startExchange, type ConnectionLedger, type LedgerAware } from './connection.js';
import { TandemError } from '../core/errors.js';
import { isDependencyFailure } from '../core/dependency.js';
import type { OutlierDetector } from './health/outlier.js';
import type { LatencyTracker } from './resilience/latency.js';
import type { TimerHandle } from '../core/clock.js';

/**
 * Who runs attempts as legs of one request (retries, hedges): told which leg spoke, so one
 * method serves every leg. Body and end go to the attempt's handler as they are.
 */
export interface LegOwner {
  legStarted(leg: Attempt, abort: (reason?: Error) => void): void;
  legHeaders(leg: Attempt, statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean;
  legError(leg: Attempt, error: TandemError): void;
}

/**
 * One exchange with one endpoint: bridges undici's dispatch callbacks to a ResponseHandler and
 * keeps the endpoint's books (in-flight count, latency estimate, status classes). A class
 * rather than closures: one allocation per request on the hot path.
 */
export class Attempt implements Dispatcher.DispatchHandler, LedgerAware {
  /** When the endpoint's wait began: the dispatch, or the end of a streamed body (onRequestSent). */
  private started = performance.now();

  /**
   * True when no response has come from the endpoint since this exchange went out and it is not
   * cold: it looks stuck, not merely slower than its peers. A process that has just joined or
   * come back answers its first requests slowly (cold code, new connections) and has just
   * passed its health checks; a frozen one is found by those checks.
   */
  get looksStuck(): boolean {
    const e = this.endpoint;
    return e.answeredAt <= this.started && e.answersSinceWarming >= COLD_ANSWERS;
  }
  private done = false;
  private responded = false;
  private bodyBytes = 0;
  private bodyLimit = Infinity;
  /** Response body bytes still to come when the response has a Content-Length; -1 otherwise. */
  private responseLeft = -1;
  /** The response ends with the connection: undici must not be paused (see onData). */
  private unpausable = false;
  private abort: ((err?: Error) => void) | undefined;
  /** Abandoned after losing a race: its end is not held against the endpoint. */
  private cancelled = false;
  /** The request body while it streams from the client: its failures are the client's. */
  private clientBody: Readable | undefined;
  /** A streamed body is still on its way: time until now was the client's, not the endpoint's. */
  private bodyPending = false;
  /** As a leg: still waiting for its response headers (its owner's bookkeeping). */
  live = false;
  /** As a leg: its per-try timer, when its wait is shorter than undici's. */
  timer: TimerHandle | undefined;
  /** Stale-connection hook: the connection it goes out on (set by the pool's client, connection.ts). */
  connection: ConnectionLedger | undefined = undefined;
  /** Its bytes read when this exchange began on it, if it was reused; -1 otherwise. */
  private readAtStart = -1;

  constructor(
    readonly endpoint: Endpoint,
    /** Replaced by a sink when the caller abandons the exchange (see abandon). */
    private handler: ResponseHandler,
    /** Told the outcome: a response < 500 is a success; a 5xx or no response, a failure. */
    private readonly outlier?: OutlierDetector<Endpoint>,
    /** The service's recent latency (for hedging), fed with every answer below 500. */
    private readonly latency?: LatencyTracker,
    /** Set when the attempt is a leg of a request: start, headers and errors go to it. */
    private owner?: LegOwner,
  ) {
    endpoint.inflight++;
  }

  static send(endpoint: Endpoint, request: UpstreamRequest, handler: ResponseHandler, timeoutMs: number, outlier?: OutlierDetector<Endpoint>): Attempt {
    const attempt = new Attempt(endpoint, handler, outlier);
    attempt.dispatch(request, timeoutMs, timeoutMs);
    return attempt;
  }

  /**
   * `headersTimeoutMs` bounds the wait for the response headers, `bodyTimeoutMs` the wait
   * between two body chunks. Keep them equal: undici then re-arms one timer per request, and
   * creates a new timer (twice per request) when they differ. undici's timers are coarse
   * (≈ 0.5–1 s): shorter waits are timed by the caller, who calls `fail`.
   */
  dispatch(request: UpstreamRequest, headersTimeoutMs: number, bodyTimeoutMs: number): void {
    if (request.body !== null && !Buffer.isBuffer(request.body)) {
      this.bodyLimit = request.bodyLimit;
      this.clientBody = request.body;
      this.bodyPending = true;
    }
    this.endpoint.pool.dispatch(
      {
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
        headersTimeout: headersTimeoutMs,
        bodyTimeout: bodyTimeoutMs,
        upgrade: request.upgrade ?? null,
      },
      this,
    );
  }

  /**
   * Ends the exchange now with `error`, as if undici had reported it (a per-try timeout). An
   * exchange still waiting for a connection is reported at once and cut when it gets one.
   */
  fail(error: TandemError): void {
    if (this.abort !== undefined) this.abort(error);
    else this.onError(error);
  }

  /**
   * True once undici may have written the request: it calls onConnect just before the first
   * byte goes out. A failure while this is false certainly never reached the endpoint.
   */
  get sent(): boolean {
    return this.abort !== undefined;
  }

  /** undici's abort for this exchange, once connected. */
  get abortFn(): ((reason?: Error) => void) | undefined {
    return this.abort;
  }

  /**
   * The caller gives up on this exchange (to try another endpoint): later callbacks go nowhere,
   * while the books (in-flight, outlier, status classes) are still kept — unless `cancelled`:
   * the exchange merely lost a race (a hedge the first attempt beat) and says nothing about its
   * endpoint, so its end is not counted as a failure, an error or a latency sample. A response whose
   * remaining body is known and small is read to its end, so its connection stays in the pool;
   * anything else is cut.
   */
  abandon(cancelled = false): void {
    this.handler = DISCARD;
    this.owner = undefined;
    this.cancelled = cancelled;
    if (!this.responded || this.responseLeft < 0 || this.responseLeft > DRAIN_LIMIT) this.abort?.(ABANDONED);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.readAtStart = startExchange(this.connection);
    if (this.done) {
      // Failed (or abandoned) while it waited for a connection: it must not go out now.
      abort(ABANDONED);
      return;
    }
    if (this.owner !== undefined) this.owner.legStarted(this, abort);
    else this.handler.onStart(this.endpoint, abort);
  }

  /** Streamed bodies of unknown length are counted here, as undici writes them. */
  onBodySent(chunk: Buffer | string | number): void {
    // undici 7 passes the chunk; its typings still describe an older (size) signature.
    const size = typeof chunk === 'number' ? chunk : chunk.length;
    this.bodyBytes += size;
    if (this.bodyBytes > this.bodyLimit) {
      const limit = this.bodyLimit;
      this.bodyLimit = Infinity;
      this.abort?.(new TandemError('TANDEM_ERR_BODY_TOO_LARGE', `request body exceeds the ${limit} bytes allowed`, { status: 413 }));
    }
  }

  /**
   * The whole request is written. A streamed body arrives at the client's pace, however slow:
   * the endpoint's latency is counted from here, or one slow uploader would make an endpoint
   * look slow to the balancer and raise the service's hedge delay.
   */
  onRequestSent(): void {
    if (!this.bodyPending) return;
    this.bodyPending = false;
    this.started = performance.now();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx interim responses are not forwarded
    // An answer before the body is all sent (the endpoint did not wait for it) teaches nothing
    // about the endpoint's latency: the time so far was the client's.
    const now = performance.now();
    if (!this.bodyPending) {
      this.endpoint.observeLatency(now - this.started, now);
      if (statusCode < 500) this.latency?.record(now - this.started);
    }
    const cls = (statusCode / 100) | 0;
    this.endpoint.responses[cls <= 5 ? cls - 1 : 5]!++;
    this.endpoint.answeredAt = now;
    if (this.endpoint.answersSinceWarming < COLD_ANSWERS) this.endpoint.answersSinceWarming++;
    this.responded = true;
    if (this.outlier !== undefined) {
      // A 5xx that reports a dependency's failure says the endpoint itself works (core/dependency.ts).
      if (statusCode >= 500 && !isDependencyFailure(statusCode, rawHeaders)) this.outlier.recordFailure(this.endpoint);
      else this.outlier.recordSuccess(this.endpoint);
    }
    this.readFraming(rawHeaders);
    const more = this.owner !== undefined ? this.owner.legHeaders(this, statusCode, rawHeaders, resume) : this.handler.onHeaders(statusCode, rawHeaders, resume);
    if (statusCode === 204 || statusCode === 304) {
      // No content, whatever the framing headers say (RFC 9110 §15.3.5, §15.4.5): the exchange
      // is complete with its headers. A Content-Length sent along (the representation's length
      // on a 304, forbidden on a 204) makes undici fail the exchange afterwards and drop the
      // connection — right, its framing is in doubt — but that must not cost the client an
      // answer that is already whole.
      if (this.finish()) this.handler.onComplete();
    }
    return more;
  }

  /**
   * Where pausing undici is unsafe, it is not paused, whatever the handler says. undici 7
   * mishandles a parser paused exactly at the end of the bytes received when the endpoint's FIN
   * is already in: the socket's 'end' handler either fails the exchange ("other side closed",
   * keep-alive responses — even a complete one) or throws an AssertionError no one can catch,
   * which kills the process (responses that end with the connection) — nodejs/undici#5360,
   * fixed only in undici 8, which needs Node 22. So:
   * - the chunk that completes a Content-Length body never pauses (costs one chunk of buffer);
   * - a response that ends by closing the connection (Connection: close, or no length and not
   *   chunked: the FIN is its end) is never paused: a slow client makes the handler buffer it.
   * A pause the handler asked for and did not get is harmless: its later `resume` is a no-op.
   */
  onData(chunk: Buffer): boolean {
    if (this.responseLeft >= 0) this.responseLeft -= chunk.length;
    const last = this.responseLeft === 0;
    const more = this.handler.onData(chunk, last);
    return more || this.unpausable || last;
  }

  onComplete(): void {
    if (this.finish()) this.handler.onComplete();
  }

  onError(err: Error): void {
    if (this.done) return; // already reported by fail()
    const error = this.clientBodyFailed(err)
      ? new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the body', { cause: err, status: 499 })
      : classifyUpstreamError(err, this.endpoint.id, unreadOnReuse(err, this.connection, this.readAtStart));
    // A stale connection (closed by the endpoint with the request unread) is not its failure.
    if (!this.responded && !this.cancelled && !isClientCaused(error) && !isStaleConnection(error)) {
      // A failure before any response: counted as "no response", and its wait (once the body
      // is sent) feeds the latency estimate so a hanging endpoint looks as slow as it is.
      if (!this.bodyPending) {
        const now = performance.now();
        this.endpoint.observeLatency(now - this.started, now);
      }
      this.endpoint.responses[5]!++;
      this.outlier?.recordFailure(this.endpoint);
    }
    this.finish();
    if (this.owner !== undefined) this.owner.legError(this, error);
    else this.handler.onError(error);
  }

  /**
   * The client's body stream broke before this error reached us (it reset, or its framing
   * failed mid-body): whatever undici made of it — often a reset, which reads like the
   * endpoint's — the failure is the client's. When the endpoint fails first, undici reports
   * that before it destroys the body, so the body is still intact here.
   */
  private clientBodyFailed(err: Error): boolean {
    const body = this.clientBody;
    if (body === undefined || err instanceof TandemError) return false;
    return body.errored === err || (body.destroyed && !body.readableEnded);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    this.finish();
    this.endpoint.responses[0]!++;
    this.outlier?.recordSuccess(this.endpoint);
    this.handler.onUpgrade?.(statusCode, (rawHeaders ?? []) as Buffer[], socket);
  }

  /** Reads how the response body is framed from its raw headers, without allocating. */
  private readFraming(raw: readonly Buffer[]): void {
    let length = -1;
    let chunked = false;
    let close = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const value = raw[i + 1]!;
      if (name.length === CONTENT_LENGTH.length && matchesAt(name, 0, CONTENT_LENGTH)) {
        length = parseLength(value);
      } else if (name.length === TRANSFER_ENCODING.length && matchesAt(name, 0, TRANSFER_ENCODING)) {
        let end = value.length;
        while (end > 0 && (value[end - 1] === 0x20 || value[end - 1] === 0x09)) end--;
        chunked = matchesAt(value, end - CHUNKED.length, CHUNKED);
      } else if (name.length === CONNECTION.length && matchesAt(name, 0, CONNECTION)) {
        for (let k = 0; k + CLOSE.length <= value.length && !close; k++) close = matchesAt(value, k, CLOSE);
      }
    }
    this.responseLeft = chunked ? -1 : length;
    this.unpausable = close || (length < 0 && !chunked);
  }

  /** Returns true the first time: the endpoint's in-flight count drops exactly once. */
  private finish(): boolean {
    if (this.done) return false;
    this.done = true;
    this.endpoint.inflight--;
    return true;
  }
}

/** Most bytes of an abandoned response read to keep its connection, rather than cutting it. */
const DRAIN_LIMIT = 64 * 1024;
const ABANDONED = new TandemError('TANDEM_ERR_UPSTREAM_RESET', 'exchange abandoned for a retry', { status: 502 });

/** Where an abandoned exchange's callbacks go: its body is read and dropped. */
const DISCARD: ResponseHandler = {
  onStart() {},
  onHeaders: () => true,
  onData: () => true,
  onComplete() {},
  onError() {},
};

/** ASCII case-insensitive comparison of `buf[at…]` with a lower-case `word`. */
function matchesAt(buf: Buffer, at: number, word: Buffer): boolean {
  if (at < 0 || at + word.length > buf.length) return false;
  // OR 0x20 lower-cases letters and leaves '-' (0x2d) alone: exact for these words.
  for (let k = 0; k < word.length; k++) if ((buf[at + k]! | 0x20) !== word[k]) return false;
  return true;
}

/** The value as a non-negative integer (surrounding blanks allowed), or -1. */
function parseLength(value: Buffer): number {
  let n = 0;
  let digits = 0;
  for (let k = 0; k < value.length; k++) {
    const c = value[k]!;
    if (c >= 0x30 && c <= 0x39) {
      n = n * 10 + (c - 0x30);
      digits++;
    } else if (c !== 0x20 && c !== 0x09) {
      return -1;
    }
  }
  return digits > 0 ? n : -1;
}

const CONTENT_LENGTH = Buffer.from('content-length', 'latin1');
const TRANSFER_ENCODING = Buffer.from('transfer-encoding', 'latin1');
const CONNECTION = Buffer.from('connection', 'latin1');
const CHUNKED = Buffer.from('chunked', 'latin1');
const CLOSE = Buffer.from('close', 'latin1');
