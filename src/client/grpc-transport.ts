import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Dispatcher } from 'undici';
import { TIMEOUT_HEADER } from '../core/deadline.js';
import { TandemError } from '../core/errors.js';
import type { EndpointPool, PoolSettings } from '../upstream/endpoint.js';
import { GRPC_STATUS, grpcStatusOfHttp, httpStatusOfGrpc } from './grpc-status.js';

/**
 * Unary gRPC calls to one instance over one HTTP/2 connection (h2c, as grpc-js opens one per
 * address), shaped as an endpoint pool (upstream/endpoint.ts): the engine's Attempt drives it
 * with undici's dispatch options and callbacks, so balancing, retries, hedging, deadlines and
 * health work on gRPC calls as on HTTP requests. What the engine needs to know is told in its
 * own terms:
 *
 * - **the call's status as an HTTP status** (grpc-status.ts: UNAVAILABLE → 503, …), reported
 *   once the call is complete: a unary answer is one message, so it is held until its trailers
 *   say how the call ended, and the deadline bounds the whole call;
 * - **whether the instance can have processed the call**: a refused connection, a stream the
 *   instance refused (REFUSED_STREAM: nghttp2 says so for the streams above a GOAWAY's last
 *   stream id), or a connection found going away before the stream was opened never reached
 *   the application — reported as TANDEM_ERR_UPSTREAM_CONNECT, which the engine sends to
 *   another instance whatever the method. A stream reset or a connection lost after the call
 *   went out may have been processed: TANDEM_ERR_UPSTREAM_RESET, retried for idempotent calls only;
 * - **the time left**: the engine's per-attempt `x-tandem-timeout-ms` becomes `grpc-timeout`.
 *
 * The response handed up is the response's message frames as they came, with the response
 * headers and trailers (`grpc-status`, `grpc-message`, metadata) as its headers.
 */
export class GrpcConnection implements EndpointPool {
  private session: ClientHttp2Session | undefined;
  /** The current session has completed its handshake. */
  private connected = false;
  /** Calls under way on any of this endpoint's sessions. */
  private active = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Calls waiting for the current session's handshake. */
  private waiting: GrpcExchange[] = [];

  constructor(
    readonly id: string,
    private readonly settings: PoolSettings,
  ) {}

  get stats(): { connected: number } {
    return { connected: this.session !== undefined && this.connected ? 1 : 0 };
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.closed) {
      handler.onError?.(new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `the connection to ${this.id} is closed`, { retryable: true, status: 502 }));
      return true;
    }
    this.callStarted();
    const call = new GrpcExchange(this, options, handler);
    const session = this.current();
    if (this.connected) call.start(session);
    else this.waiting.push(call);
    return true;
  }

  /** The session new calls go on: the current one, or a new one when it is going away. */
  private current(): ClientHttp2Session {
    if (this.session !== undefined && !this.session.closed && !this.session.destroyed) return this.session;
    const session = connect(`http://${this.id}`, { settings: { maxHeaderListSize: this.settings.maxResponseHeaderSize } });
    this.session = session;
    this.connected = false;
    const waiting: GrpcExchange[] = [];
    this.waiting = waiting;
    const timer = setTimeout(() => {
      if (this.session === session && !this.connected) session.destroy(new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `connect to ${this.id} timed out`, { retryable: true, status: 502 }));
    }, this.settings.connectTimeoutMs);
    session.once('connect', () => {
      clearTimeout(timer);
      if (this.session === session) this.connected = true;
      for (const call of waiting.splice(0)) call.start(session);
    });
    // Its calls learn of it through their streams; without a listener, an error would be thrown.
    session.on('error', (err) => { (session as SessionWithError).lastError = err; });
    // Running calls finish on it; new ones go on a new session.
    session.once('goaway', () => this.forget(session));
    session.once('close', () => {
      clearTimeout(timer);
      // Calls still waiting for this session's handshake: it never came (refused, timed out).
      if (waiting.length > 0) {
        const error = this.connectError(session);
        for (const call of waiting.splice(0)) call.fail(error);
      }
      this.forget(session);
    });
    return session;
  }

  private forget(session: ClientHttp2Session): void {
    if (this.session !== session) return;
    this.session = undefined;
    this.connected = false;
  }

  private connectError(session: ClientHttp2Session): TandemError {
    const cause = (session as SessionWithError).lastError;
    if (cause instanceof TandemError) return cause;
    const code = (cause as { code?: string } | undefined)?.code ?? 'closed';
    return new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `cannot connect to ${this.id}: ${code}`, { cause, retryable: true, status: 502 });
  }

  private callStarted(): void {
    this.active++;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.session?.ref();
  }

  /** A call ended: an idle session stops holding the process open, and closes after keepAliveTimeoutMs. */
  callEnded(): void {
    if (--this.active > 0) return;
    const session = this.session;
    if (session === undefined) return;
    session.unref();
    this.idleTimer = setTimeout(() => {
      if (this.active === 0 && this.session === session) session.close();
    }, this.settings.keepAliveTimeoutMs).unref();
  }

  close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    const session = this.session;
    if (session === undefined || session.destroyed) return Promise.resolve();
    return new Promise((resolve) => session.close(() => resolve()));
  }

  destroy(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.session?.destroy();
    return Promise.resolve();
  }
}

/** Largest response a call buffers (as createClient's requests). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

type SessionWithError = ClientHttp2Session & { lastError?: Error };

/** One unary call on a GrpcConnection, reporting to an Attempt (undici's handler callbacks). */
class GrpcExchange {
  private stream: ClientHttp2Stream | undefined;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  private headers: IncomingHttpHeaders | undefined;
  private trailers: IncomingHttpHeaders | undefined;
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly connection: GrpcConnection,
    private readonly options: Dispatcher.DispatchOptions,
    private readonly handler: Dispatcher.DispatchHandler,
  ) {}

  /** The session is up: the call goes out (the engine learns it may have been sent: onConnect). */
  start(session: ClientHttp2Session): void {
    if (this.settled) return;
    this.handler.onConnect?.((reason) => this.abort(reason));
    if (this.settled) return; // aborted at once
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(this.requestHeaders(), { endStream: false });
    } catch (err) {
      // The session began to go away (a GOAWAY) between the check and the request: the call never went out.
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `${this.connection.id} is closing its connection: ${(err as Error).message}`, { cause: err, retryable: true, status: 502 }));
      return;
    }
    this.stream = stream;
    const timeout = this.options.headersTimeout;
    if (typeof timeout === 'number' && timeout > 0 && Number.isFinite(timeout)) {
      this.timer = setTimeout(() => this.abort(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${this.connection.id} did not complete the call within ${timeout} ms`, { status: 504 })), timeout);
    }
    stream.on('response', (headers) => { this.headers = headers; });
    stream.on('trailers', (trailers) => { this.trailers = trailers; });
    stream.on('data', (chunk: Buffer) => {
      this.size += chunk.length;
      if (this.size > MAX_RESPONSE_BYTES) this.abort(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', `${this.connection.id} sent a response larger than ${MAX_RESPONSE_BYTES} bytes`));
      else this.chunks.push(chunk);
    });
    stream.on('error', () => {}); // the outcome is read on 'close'
    stream.once('close', () => this.closed(stream));
    const body = this.options.body;
    stream.end(Buffer.isBuffer(body) ? body : undefined);
  }

  private requestHeaders(): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': this.options.path,
      ':scheme': 'http',
      ':authority': this.connection.id,
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    const list = this.options.headers;
    if (Array.isArray(list)) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        const name = String(list[i]).toLowerCase();
        const value = String(list[i + 1]);
        if (name === TIMEOUT_HEADER) out['grpc-timeout'] = `${Math.max(1, Math.min(99_999_999, Math.ceil(Number(value))))}m`;
        else if (name in out || name.startsWith(':')) continue;
        else {
          const prev = out[name];
          out[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [String(prev)]), value];
        }
      }
    }
    return out;
  }

  private closed(stream: ClientHttp2Stream): void {
    if (this.settled) return;
    const headers = this.headers;
    const statusFrom = this.trailers ?? (headers !== undefined && 'grpc-status' in headers ? headers : undefined);
    if (statusFrom !== undefined) {
      this.complete(headers!, statusFrom === headers ? undefined : statusFrom);
      return;
    }
    if (headers !== undefined && Number(headers[':status']) !== 200 && stream.rstCode === constants.NGHTTP2_NO_ERROR) {
      // Not a gRPC answer (a proxy's error page): its HTTP status says what happened.
      this.complete(headers, { 'grpc-status': String(grpcStatusOfHttp(Number(headers[':status']))), 'grpc-message': `HTTP status ${headers[':status']}` });
      return;
    }
    const id = this.connection.id;
    if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM) {
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `${id} refused the call before processing it (REFUSED_STREAM, e.g. a GOAWAY)`, { retryable: true, status: 502 }));
    } else {
      const why = headers === undefined ? 'before any response' : 'without trailers';
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_RESET', `the call to ${id} ended ${why} (stream closed with code ${stream.rstCode})`, { status: 502 }));
    }
  }

  /** A complete answer: its gRPC status reported to the engine as an HTTP status, then its frames. */
  private complete(headers: IncomingHttpHeaders, trailers: IncomingHttpHeaders | undefined): void {
    const status = Number((trailers ?? headers)['grpc-status']);
    const code = Number.isInteger(status) && status >= 0 ? status : GRPC_STATUS.UNKNOWN;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const raw: Buffer[] = [];
    const add = (name: string, value: string) => raw.push(Buffer.from(name, 'latin1'), Buffer.from(value, 'latin1'));
    for (const source of trailers === undefined ? [headers] : [headers, trailers]) {
      for (const [name, value] of Object.entries(source)) {
        if (name.startsWith(':') || name === 'content-length' || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [String(value)]) add(name, v);
      }
    }
    add('content-length', String(body.length));
    if (!this.settle()) return;
    const resume = () => {};
    this.handler.onHeaders?.(httpStatusOfGrpc(code), raw, resume, '');
    if (body.length > 0) this.handler.onData?.(body);
    this.handler.onComplete?.([]);
  }

  /** Cancels the call (the engine's abort: a deadline, a hedge lost, the caller's cancel). */
  private abort(reason: Error | undefined): void {
    this.stream?.close(constants.NGHTTP2_CANCEL);
    this.fail(reason ?? new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call was cancelled'));
  }

  fail(error: Error): void {
    if (!this.settle()) return;
    this.handler.onError?.(error);
  }

  /** True the first time: exactly one outcome is reported, and the connection counts the call once. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    this.connection.callEnded();
    return true;
  }
}
