import type { Dispatcher } from 'undici';
import type { Duplex, Readable } from 'node:stream';
import { COLD_ANSWERS, SILENCE_CHARGE_MS, type Endpoint } from './endpoint.js';
import type { Leg, ResponseHandler, Trailers, UpstreamRequest } from './types.js';
import { grpcStatusOfHeaders, grpcStatusOfTrailers, httpStatusOfGrpc, type GrpcCall } from './grpc.js';
import type { AttemptStep } from './attempt-steps.js';
import { classifyUpstreamError, isClientCaused, isStaleConnection, unreadOnReuse } from './classify.js';
import { refusedByGoaway, startExchange, type ConnectionLedger, type ExchangeStream, type LedgerAware, type StreamAware } from './connection.js';
import { TandemError } from '../core/errors.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';

/**
 * One exchange with one endpoint — a leg of a request: bridges undici's dispatch callbacks to
 * a ResponseHandler, passing itself as the leg, and tells the attempt steps (attempt-steps.ts:
 * status counting, latency and outlier tracking) how it ended. It keeps its endpoint's
 * in-flight count and, when asked, its own per-try timeout. A class rather than closures: one
 * allocation per attempt on the hot path.
 */
export class Attempt implements Dispatcher.DispatchHandler, LedgerAware, StreamAware, Leg {
  /** When the endpoint's wait began: the dispatch, or the end of a streamed body (onRequestSent). */
  private started: number;

  /**
   * Whether losing its race to a hedge is held against its endpoint, and if so records that it
   * was: true when no response has come from the endpoint since this exchange went out, it is
   * not cold, and it was not charged for its silence within SILENCE_CHARGE_MS. It then looks
   * stuck, not merely slower than its peers, and this is a new sign of it: the other calls
   * that lose their races in the same pause say nothing more. A process that has just joined
   * or come back answers its first requests slowly (cold code, new connections) and has just
   * passed its health checks; a frozen one is found by those checks.
   */
  chargeSilence(): boolean {
    const e = this.endpoint;
    if (e.answeredAt > this.started || e.answersSinceWarming < COLD_ANSWERS) return false;
    const now = this.clock.now();
    if (now - e.silenceChargedAt < SILENCE_CHARGE_MS) return false;
    e.silenceChargedAt = now;
    return true;
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
  /**
   * Still waiting for its response headers, as its handler sees it: true while they are held
   * with a unary answer's message (see onHeaders), so a hedge may still race it and the
   * winner's race abandons it.
   */
  live = false;
  /** Its per-try timer, when its wait is shorter than undici's (see timeAfter). */
  private timer: TimerHandle | undefined;
  /** Stale-connection hook: the connection it goes out on (set by the pool's client, connection.ts). */
  connection: ConnectionLedger | undefined = undefined;
  /** Its bytes read when this exchange began on it, if it was reused; -1 otherwise. */
  private readAtStart = -1;
  /** On an HTTP/2 connection: its stream (set by the connection's ledger, connection.ts). */
  stream: ExchangeStream | undefined = undefined;
  /** A gRPC call: its outcome is its grpc-status, not its HTTP status. */
  private grpc = false;

  /** A gRPC call (UpstreamRequest.grpc): reads its answer's gRPC status itself, as it comes. */
  get isGrpc(): boolean {
    return this.grpc;
  }
  /**
   * A gRPC call that answered 200 with headers only: the attempt steps hear of it when its
   * trailers give the status (onComplete), with this wait; -1 when nothing is pending.
   */
  private grpcWaited = -1;
  private grpcPending = false;
  /**
   * A gRPC call's response headers, held from its handler until its first message or its end
   * (see onHeaders): `resume` for them, undefined when nothing is held.
   */
  private heldHeaders: Buffer[] | undefined;
  private heldResume: (() => void) | undefined;
  /**
   * An idempotent gRPC call whose method is not known to stream: its answer's first message is
   * held with its headers until the status comes (see holds); undefined once that is moot.
   */
  private unaryGuess: GrpcCall | undefined;
  /** The answer's message bytes held (holds), and their count; the first message's length, once read. */
  private heldData: Buffer[] | undefined;
  private answerBytes = 0;
  private firstLength = 0;
  /** Bounds the hold (HOLD_MS): the status may be slow to follow, or the method may stream after all. */
  private holdTimer: TimerHandle | undefined;

  constructor(
    readonly endpoint: Endpoint,
    /** Replaced by a sink when the caller abandons the exchange (see abandon). */
    private handler: ResponseHandler,
    /** Told how the attempt ended (attempt-steps.ts); an empty list tells no one. */
    private readonly steps: readonly AttemptStep[],
    /** Times waits (latency samples) and the per-try timeout: the Upstream's. */
    private readonly clock: Clock = realClock,
  ) {
    endpoint.inflight++;
    this.started = clock.now();
  }

  static send(endpoint: Endpoint, request: UpstreamRequest, handler: ResponseHandler, timeoutMs: number, steps: readonly AttemptStep[] = [], clock: Clock = realClock): Attempt {
    const attempt = new Attempt(endpoint, handler, steps, clock);
    attempt.dispatch(request, timeoutMs, timeoutMs);
    return attempt;
  }

  /**
   * `headersTimeoutMs` bounds the wait for the response headers, `bodyTimeoutMs` the wait
   * between two body chunks. Keep them equal: undici then re-arms one timer per request, and
   * creates a new timer (twice per request) when they differ. undici's timers are coarse
   * (≈ 0.5–1 s): shorter waits are timed here (timeAfter).
   */
  dispatch(request: UpstreamRequest, headersTimeoutMs: number, bodyTimeoutMs: number): void {
    const call = request.grpc;
    this.grpc = call !== undefined;
    if (call !== undefined && call.idempotent && !call.streams) this.unaryGuess = call;
    if (request.body !== null && !Buffer.isBuffer(request.body)) {
      this.bodyLimit = request.bodyLimit;
      this.clientBody = request.body;
      this.bodyPending = true;
    }
    this.live = true;
    const options: DispatchOptions = {
      method: request.method,
      path: request.path,
      headers: request.headers,
      body: request.body,
      headersTimeout: headersTimeoutMs,
      // A gRPC stream may be quiet for long between messages; its deadline bounds it.
      bodyTimeout: this.grpc ? 0 : bodyTimeoutMs,
      upgrade: request.upgrade ?? null,
      // TLS: the endpoint's name, not the Host header's (see requestServername).
      servername: this.endpoint.servername,
    };
    this.endpoint.pool.dispatch(options, this);
  }

  /**
   * A per-try timeout: fails the attempt with a 504 when it has no response headers `waitMs`
   * from now. While the client is still sending the body the endpoint needs before it can
   * answer, the client's pace is not the endpoint's failure (the body guard and
   * limits.requestTimeout bound it): the wait is timed again from then.
   */
  timeAfter(waitMs: number): void {
    this.timer = this.clock.setTimeout(() => this.timedOut(waitMs), waitMs, true);
  }

  private timedOut(waitMs: number): void {
    this.timer = undefined;
    if (!this.live) return;
    if (this.clientBody !== undefined && !this.clientBody.readableEnded) {
      this.timeAfter(waitMs);
      return;
    }
    this.fail(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${this.endpoint.id} sent no response headers within ${waitMs} ms`, { status: 504 }));
  }

  /** No longer waiting for response headers: the per-try timer goes. */
  private stopWaiting(): void {
    this.live = false;
    this.stopTimer();
  }

  /** The endpoint answered: the per-try timer goes. */
  private stopTimer(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
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
   * The caller gives up on this exchange (to try another endpoint, or it lost a race): later
   * callbacks go nowhere, while the books (in-flight, attempt steps) are still kept — unless
   * `cancelled`: the exchange merely lost a race and says nothing about its endpoint, so its
   * end is not told to the attempt steps. One still waiting for a connection never goes out. A
   * response whose remaining body is known and small is read to its end, so its connection
   * stays in the pool; anything else is cut.
   */
  abandon(cancelled = false): void {
    this.stopWaiting();
    this.stopHolding();
    this.unaryGuess = undefined;
    this.heldHeaders = undefined;
    this.heldData = undefined;
    this.handler = DISCARD;
    this.cancelled = cancelled;
    if (this.abort === undefined) this.finish();
    else if (!this.responded || this.responseLeft < 0 || this.responseLeft > DRAIN_LIMIT) this.abort(ABANDONED);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.readAtStart = startExchange(this.connection, this);
    if (this.done) {
      // Failed (or abandoned) while it waited for a connection: it must not go out now.
      abort(ABANDONED);
      return;
    }
    this.handler.onStart(this.endpoint, abort, this);
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
    this.started = this.clock.now();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx interim responses are not forwarded
    this.stopTimer();
    // An answer before the body is all sent (the endpoint did not wait for it) teaches nothing
    // about the endpoint's latency: the time so far was the client's.
    const now = this.clock.now();
    const waited = this.bodyPending ? -1 : now - this.started;
    if (this.grpc && statusCode === 200) this.grpcAnswered(rawHeaders, waited, now);
    else for (const step of this.steps) step.answered(this.endpoint, statusCode, rawHeaders, waited, now);
    this.responded = true;
    this.readFraming(rawHeaders);
    if (this.grpcPending) {
      // Headers without a status: held until the first message shows the call is answering, or
      // its end brings the status — then headers and trailers go on together, as the one
      // Trailers-Only answer they amount to, and an UNAVAILABLE before any message can still be
      // retried like one sent Trailers-Only.
      this.heldHeaders = rawHeaders;
      this.heldResume = resume;
      // Still racing while its first message may be held for the status (a unary answer not
      // yet whole); a stream's headers are its answer beginning: no hedge goes after it.
      if (this.unaryGuess === undefined) this.live = false;
      return true;
    }
    this.live = false;
    // Trailers-Only, or not a gRPC answer (an HTTP error): no message to hold, nothing to learn.
    this.unaryGuess = undefined;
    const more = this.handler.onHeaders(statusCode, rawHeaders, resume, this);
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
    if (this.unaryGuess !== undefined && this.holds(chunk)) return true;
    if (this.heldHeaders !== undefined) this.release();
    if (this.responseLeft >= 0) this.responseLeft -= chunk.length;
    const last = this.responseLeft === 0;
    const more = this.handler.onData(chunk, last);
    return more || this.unpausable || last;
  }

  /**
   * Whether `chunk` of an idempotent call's answer is held rather than passed on. A unary answer
   * is one message, then the status in trailers; grpc-js writes the two separately, so a
   * process killed between them leaves a message without a status — a call cut, which the
   * caller sees fail once the message has gone up. Held until the status comes, the message is
   * dropped with the cut and the call goes to another instance like one cut before its answer
   * (safe: the method is idempotent). The gateway cannot tell a unary method from a streaming
   * one, so it learns: an answer whose second message begins marks the method as streaming
   * (GrpcCall.streams, shared by its calls) and is passed on at once, as are the method's later
   * answers. The hold is bounded — HOLD_BYTES of messages, HOLD_MS of waiting for the status —
   * so a stream's first message is late by at most HOLD_MS, until the method is known.
   */
  private holds(chunk: Buffer): boolean {
    const call = this.unaryGuess!;
    // The first message's length: 4 bytes big-endian after its flag byte, seldom split.
    const at = this.answerBytes;
    this.answerBytes += chunk.length;
    for (let k = 0; at + k < 5 && k < chunk.length; k++) if (at + k > 0) this.firstLength = this.firstLength * 256 + chunk[k]!;
    if (this.answerBytes >= 5 && this.answerBytes > 5 + this.firstLength) {
      // A second message: the method streams.
      call.streams = true;
      this.unaryGuess = undefined;
      return false;
    }
    if (this.heldHeaders === undefined || this.answerBytes > HOLD_BYTES) return false;
    (this.heldData ??= []).push(chunk);
    this.holdTimer ??= this.clock.setTimeout(() => this.holdExpired(), HOLD_MS, true);
    return true;
  }

  /** The status is slow to come: what is held goes on (the method is still watched for a second message). */
  private holdExpired(): void {
    this.holdTimer = undefined;
    if (this.heldHeaders !== undefined && !this.done) this.release();
  }

  /** The held headers go to the handler, then any held messages. */
  private release(): void {
    const headers = this.heldHeaders!;
    const data = this.heldData;
    this.heldHeaders = undefined;
    this.heldData = undefined;
    this.stopHolding();
    this.live = false;
    this.handler.onHeaders(200, headers, this.heldResume!, this);
    // Little (HOLD_BYTES at most): given whole, whatever the handler says of pausing — unless
    // the handler cut the exchange on seeing the headers.
    if (data === undefined || this.done) return;
    for (const chunk of data) {
      if (this.responseLeft >= 0) this.responseLeft -= chunk.length;
      this.handler.onData(chunk, false);
    }
  }

  private stopHolding(): void {
    if (this.holdTimer === undefined) return;
    this.clock.clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
  }

  /**
   * undici passes HTTP/1.1 trailers as raw Buffers (not forwarded, as before), the HTTP/2 pool
   * an object of them (forwarded: a gRPC call's status is there).
   */
  onComplete(trailers?: unknown): void {
    const t = trailers !== null && typeof trailers === 'object' && !Array.isArray(trailers) ? trailers as Trailers : undefined;
    if (this.grpcPending) {
      this.grpcPending = false;
      if (!this.cancelled) this.tell(httpStatusOfGrpc(grpcStatusOfTrailers(t)), this.grpcWaited);
    }
    const held = this.heldHeaders;
    if (held !== undefined && this.heldData === undefined) {
      // No message came: the headers and trailers go on as one Trailers-Only answer.
      this.heldHeaders = undefined;
      this.live = false;
      this.handler.onHeaders(200, withTrailers(held, t), this.heldResume!, this);
      if (this.finish()) this.handler.onComplete(undefined);
      return;
    }
    if (held !== undefined) this.release();
    if (this.finish()) this.handler.onComplete(t);
  }

  /**
   * A gRPC answer with HTTP 200: Trailers-Only (grpc-status in these headers) is told to the
   * attempt steps now, as the HTTP status its gRPC status maps to (grpc.ts); otherwise the
   * status comes with the trailers, and the steps hear of the call then.
   */
  private grpcAnswered(rawHeaders: readonly Buffer[], waited: number, now: number): void {
    const code = grpcStatusOfHeaders(rawHeaders);
    if (code >= 0) {
      for (const step of this.steps) step.answered(this.endpoint, httpStatusOfGrpc(code), rawHeaders, waited, now);
      return;
    }
    this.grpcPending = true;
    this.grpcWaited = waited;
  }

  /** The attempt steps learn a deferred gRPC outcome as `statusCode`. */
  private tell(statusCode: number, waited: number): void {
    const now = this.clock.now();
    for (const step of this.steps) step.answered(this.endpoint, statusCode, NO_HEADERS, waited, now);
  }

  onError(err: Error): void {
    if (this.done) return; // already reported by fail(), or abandoned before it had a connection
    this.stopWaiting();
    // Messages held for a status that never came are dropped: to the caller, this call was cut
    // before its answer (see holds).
    this.stopHolding();
    this.heldData = undefined;
    const error = this.clientBodyFailed(err)
      ? new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the body', { cause: err, status: 499 })
      : classifyUpstreamError(err, this.endpoint.id, unreadOnReuse(err, this.connection, this.readAtStart), refusedByGoaway(this.stream));
    // A gRPC call cut after its headers ended without a status: the endpoint's failure too.
    if (this.grpcPending) {
      this.grpcPending = false;
      if (!this.cancelled && !isClientCaused(error)) this.tell(500, this.grpcWaited);
    }
    // A stale connection (closed by the endpoint with the request unread) is not its failure.
    if (!this.responded && !this.cancelled && !isClientCaused(error) && !isStaleConnection(error)) {
      // Its wait (once the body is sent) is a latency sample too: a hanging endpoint looks as
      // slow as it is.
      const now = this.clock.now();
      const waited = this.bodyPending ? -1 : now - this.started;
      for (const step of this.steps) step.failed(this.endpoint, waited, now);
    }
    this.finish();
    this.handler.onError(error, this);
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
    this.stopWaiting();
    this.finish();
    for (const step of this.steps) step.upgraded(this.endpoint);
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

/** undici's Request takes a `servername`; its typings leave it out. */
type DispatchOptions = Dispatcher.DispatchOptions & { servername?: string };

/** Most message bytes of an idempotent call's answer held for its status (Attempt.holds). */
const HOLD_BYTES = 64 * 1024;
/**
 * Longest wait for the status after an idempotent call's message (Attempt.holds). A live
 * process sends it at once: grpc-js writes the trailers right after the message's last DATA
 * frame is out, so only a stream (or a process stalled at that instant) keeps the hold this long.
 */
const HOLD_MS = 20;

/** Most bytes of an abandoned response read to keep its connection, rather than cutting it. */
const DRAIN_LIMIT = 64 * 1024;
const ABANDONED = new TandemError('TANDEM_ERR_UPSTREAM_RESET', 'exchange abandoned for a retry', { status: 502 });

const NO_HEADERS: readonly Buffer[] = [];

/** Response headers followed by the trailers, as one raw list (a Trailers-Only answer's shape). */
function withTrailers(headers: readonly Buffer[], trailers: Trailers | undefined): Buffer[] {
  const out = [...headers];
  if (trailers === undefined) return out;
  for (const name in trailers) {
    const v = trailers[name];
    if (v === undefined || name.charCodeAt(0) === 58 /* : */) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push(Buffer.from(name, 'latin1'), Buffer.from(one, 'latin1'));
  }
  return out;
}

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
