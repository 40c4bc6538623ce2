import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { TimerHandle } from '../core/clock.js';
import { coarseTimers, type CoarseWait } from '../core/coarse-timers.js';
import { streamStarted, trackStreamTables } from '../core/stream-tables.js';
import { TandemError } from '../core/errors.js';
import type { EndpointPool } from './endpoint.js';


export interface H2cPoolSettings {
  maxConnections: number;
  connectTimeoutMs: number;
  /** A connection without a stream for this long is closed. */
  keepAliveTimeoutMs: number;
  maxResponseHeaderSize: number;
}

/**
 * Streams one connection carries at once unless the endpoint's SETTINGS say fewer; past it the
 * pool opens another connection (up to `maxConnections`), then queues on the least busy one.
 */
export const H2_STREAMS_PER_CONNECTION = 100;

/**
 * HTTP/2 with prior knowledge (h2c) to one endpoint, over node:http2: the pool of a
 * `protocol: grpc` endpoint. Why not undici's HTTP/2 client (7.x): on a GOAWAY it destroys the
 * connection and with it every stream under way — a graceful drain of a gRPC server would cut
 * calls it is finishing — and it sends a non-idempotent request (every gRPC call is a POST) or a
 * streamed body only when nothing else is running on the connection. Here:
 *
 * - a GOAWAY takes the connection out of rotation; its streams under way finish (RFC 9113
 *   §6.8), streams above the peer's last stream id are reported as refused (never processed:
 *   the engine sends them elsewhere, whatever the method), new calls open a new connection;
 * - a call waiting for a connection that fails (refused, timed out) is reported with the
 *   connect error, and `onConnect` is called only when its stream is made: the engine knows it
 *   never left (`Leg.sent`);
 * - calls are multiplexed, up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS per connection.
 *
 * It speaks undici's dispatch-handler protocol (onConnect, onHeaders, onData, onComplete with
 * the trailers, onError), so an `Attempt` drives it exactly as it drives an undici Pool.
 */
export class H2cPool implements EndpointPool {
  private readonly sessions: Session[] = [];
  private closing = false;

  constructor(private readonly origin: string, private readonly settings: H2cPoolSettings) {}

  get stats(): { connected: number } {
    let connected = 0;
    for (const s of this.sessions) if (s.connected) connected++;
    return { connected };
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const exchange = new Exchange(options, handler as unknown as ExchangeHandler);
    if (this.closing) {
      exchange.fail(new TandemError('TANDEM_ERR_UPSTREAM_REFUSED', `${this.origin}: the endpoint's pool is closed`, { status: 502 }));
      return false;
    }
    this.pick().start(exchange);
    return true;
  }

  /** Sends GOAWAY on every connection; resolves when their streams finished and they closed. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.sessions.map((s) => s.close()));
  }

  async destroy(): Promise<void> {
    this.closing = true;
    await Promise.all(this.sessions.map((s) => s.destroy()));
  }

  /** The first connection with room, else a new one, else the least busy. */
  private pick(): Session {
    let least: Session | undefined;
    for (const s of this.sessions) {
      if (s.open < s.capacity) return s;
      if (least === undefined || s.open < least.open) least = s;
    }
    if (least !== undefined && this.sessions.length >= this.settings.maxConnections) return least;
    const session = new Session(this.origin, this.settings, (gone) => {
      const i = this.sessions.indexOf(gone);
      if (i >= 0) this.sessions.splice(i, 1);
    });
    this.sessions.push(session);
    return session;
  }
}

/** One HTTP/2 connection and the exchanges waiting for it to connect. */
class Session implements CoarseWait {
  readonly session: ClientHttp2Session;
  connected = false;
  /** Streams open (or waiting for the connection). */
  open = 0;
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS, capped. */
  capacity = H2_STREAMS_PER_CONNECTION;
  private waiting: Exchange[] = [];
  private readonly closed: Promise<void>;

  private readonly keepAliveMs: number;
  coarseDue: number | undefined = undefined;
  coarseTimer: TimerHandle | undefined = undefined;
  coarsePrev: CoarseWait | undefined = undefined;
  coarseNext: CoarseWait | undefined = undefined;

  constructor(origin: string, settings: H2cPoolSettings, private readonly leave: (s: Session) => void) {
    this.keepAliveMs = settings.keepAliveTimeoutMs;
    this.session = connect(origin, {
      settings: { enablePush: false, maxHeaderListSize: settings.maxResponseHeaderSize },
      maxHeaderListPairs: 256,
    });
    const session = this.session;
    trackStreamTables(session);
    let failure: Error | undefined;
    this.closed = new Promise((resolve) => session.once('close', resolve));
    const timer = setTimeout(() => {
      failure = new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `connect to ${origin} timed out after ${settings.connectTimeoutMs} ms`, { retryable: true, status: 502 });
      session.destroy();
    }, settings.connectTimeoutMs);
    session.once('connect', () => {
      clearTimeout(timer);
      this.connected = true;
      const waiting = this.waiting;
      this.waiting = [];
      for (const e of waiting) this.open_(e);
    });
    session.on('remoteSettings', (s) => {
      if (s.maxConcurrentStreams !== undefined) this.capacity = Math.max(1, Math.min(H2_STREAMS_PER_CONNECTION, s.maxConcurrentStreams));
    });
    // Out of rotation: its streams under way finish, new calls go to another connection; then
    // it closes (close() waits for the streams open).
    session.once('goaway', () => {
      this.leave(this);
      if (!session.closed) session.close();
    });
    session.on('error', (err: Error) => { failure ??= err; });
    session.once('close', () => {
      clearTimeout(timer);
      coarseTimers.stop(this);
      this.leave(this);
      const waiting = this.waiting;
      this.waiting = [];
      const error = failure ?? new TandemError('TANDEM_ERR_UPSTREAM_REFUSED', `${origin}: the connection closed before the call went out`, { status: 502 });
      for (const e of waiting) e.fail(error);
    });
    session.unref();
  }

  start(exchange: Exchange): void {
    if (this.open++ === 0) {
      coarseTimers.stop(this);
      this.session.ref();
    }
    if (this.connected) this.open_(exchange);
    else this.waiting.push(exchange);
  }

  /**
   * Without a stream for the keep-alive time: closed. Timed from the last stream's end on the
   * coarse timers, not by node:http2's session timeout, which is re-armed on every frame.
   */
  expire(): void {
    if (this.open !== 0 || this.session.closed) return;
    this.leave(this); // no new call picks a connection that is closing
    this.session.close();
  }

  private open_(exchange: Exchange): void {
    exchange.begin(this.session, this.released);
  }

  /** A stream of this connection closed (one function for all of them). */
  private readonly released = (): void => {
    if (--this.open !== 0) return;
    this.session.unref();
    if (this.keepAliveMs > 0 && !this.session.closed) coarseTimers.start(this, this.keepAliveMs);
  };

  close(): Promise<void> {
    if (!this.session.closed) this.session.close();
    return this.closed;
  }

  destroy(): Promise<void> {
    this.session.destroy();
    return this.closed;
  }
}

/** undici's (legacy) dispatch handler callbacks, as `Attempt` implements them. */
interface ExchangeHandler {
  onConnect?(abort: (err?: Error) => void): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  /** HTTP/2 trailers as node:http2 gives them (an object; empty when none came). */
  onComplete?(trailers: IncomingHttpHeaders): void;
  onError?(err: Error): void;
  onBodySent?(chunk: Buffer): void;
  onRequestSent?(): void;
}

/** One request/response on a stream, reported to an undici-style dispatch handler. */
class Exchange implements CoarseWait {
  coarseDue: number | undefined = undefined;
  coarseTimer: TimerHandle | undefined = undefined;
  coarsePrev: CoarseWait | undefined = undefined;
  coarseNext: CoarseWait | undefined = undefined;
  private stream: ClientHttp2Stream | undefined;
  private done = false;
  private responded = false;
  /** The response headers carried grpc-status (a Trailers-Only answer). */
  private statusInHeaders = false;
  private trailers: IncomingHttpHeaders | undefined;
  private release: (() => void) | undefined;
  /** Stops reading a streamed request body (set while one is being sent). */
  private detach: (() => void) | undefined;
  /** When the streamed request body last moved a chunk (performance.now()); -1 before. */
  private bodyMovedAt = -1;

  constructor(private readonly options: Dispatcher.DispatchOptions, private readonly handler: ExchangeHandler) {}

  begin(session: ClientHttp2Session, release: () => void): void {
    this.release = release;
    const o = this.options;
    const body = o.body as Buffer | Readable | null | undefined;
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(requestHeaders(o), body == null ? END_STREAM : OPEN_STREAM);
      streamStarted(session);
    } catch (err) {
      // The session went away between the pick and now (GOAWAY, closed): nothing went out.
      release();
      this.release = undefined;
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_REFUSED', `the connection could take no new stream: ${(err as Error).message}`, { cause: err, status: 502 }));
      return;
    }
    this.stream = stream;
    (stream as ExchangeStream)[kExchange] = this;
    this.handler.onConnect?.(this.abortFn);
    if (this.done) return; // aborted in onConnect
    // The wait for the response headers: on the coarse timers (a stream timeout would be
    // re-armed by node:http2 on every frame of the stream).
    const headersTimeout = o.headersTimeout ?? 300_000;
    if (headersTimeout > 0) coarseTimers.start(this, headersTimeout);
    // The stream's events go to functions shared by every exchange (`this` is the stream, which
    // names its exchange): no closures made per call.
    stream.on('response', onStreamResponse);
    stream.on('data', onStreamData);
    stream.on('trailers', onStreamTrailers);
    stream.on('end', onStreamEnd);
    stream.on('close', onStreamClose);
    stream.on('error', onStreamError);
    this.sendBody(stream, body ?? null);
  }

  /**
   * No response headers in time (the coarse wait ran out). While the request body streams,
   * the wait counts from its last byte, as node:http2's stream timeout did: the endpoint may be
   * waiting for the rest of it; a body that stopped moving (a quiet client, or an endpoint that
   * stopped reading it) for the whole wait ends the exchange. From the body's end, the endpoint
   * has the whole wait again (sendBody).
   */
  expire(): void {
    if (this.detach !== undefined && this.bodyMovedAt >= 0) {
      const timeout = this.options.headersTimeout ?? 300_000;
      const quiet = performance.now() - this.bodyMovedAt;
      if (quiet < timeout) {
        coarseTimers.start(this, timeout - quiet);
        return;
      }
    }
    this.abort(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', 'the endpoint sent no response headers in time', { status: 504 }));
  }

  /** The stream timed out between two chunks of the body (bodyTimeout). */
  timedOut(): void {
    this.abort(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', 'the endpoint stalled while sending the response body', { status: 504 }));
  }

  data(chunk: Buffer): void {
    if (!this.done && this.handler.onData?.(chunk) === false) this.stream!.pause();
  }

  gotTrailers(trailers: IncomingHttpHeaders): void {
    this.trailers ??= trailers;
  }

  ended(): void {
    if (this.done) return;
    if (!this.responded) {
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_RESET', 'the endpoint ended the stream without a response', { status: 502 }));
      return;
    }
    // A gRPC call ends with its status: in the trailers, or in the headers (Trailers-Only).
    // Neither came — the endpoint's connection ended under the call (a process killed, its
    // FIN before any RST): the call was cut, not finished.
    if (this.trailers === undefined && !this.statusInHeaders) {
      this.fail(new TandemError('TANDEM_ERR_UPSTREAM_RESET', 'the endpoint ended the call without a gRPC status', { status: 502 }));
      return;
    }
    this.finish();
    // Answered whole while its request still streams (a call the endpoint ended early): the rest
    // of the request is moot (RFC 9113 §8.1), and the stream is let go rather than left half-open.
    if (this.detach !== undefined) {
      this.detach();
      this.stream!.close(constants.NGHTTP2_NO_ERROR);
    }
    this.handler.onComplete?.(this.trailers ?? {});
  }

  closed(): void {
    // The stream lets go of the exchange (and through it of the call): node:http2 keeps a
    // closed stream until the next full collection (docs/benchmarks.md). 'close' is its last event.
    (this.stream as ExchangeStream)[kExchange] = undefined;
    const release = this.release;
    this.release = undefined;
    release?.();
    if (this.done) return;
    this.fail(streamClosedError(this.stream!.rstCode));
  }

  errored(err: NodeJS.ErrnoException): void {
    if (this.done) return;
    const refused = err.message.includes('NGHTTP2_REFUSED_STREAM') || err.code === 'ERR_HTTP2_GOAWAY_SESSION';
    this.fail(refused ? streamClosedError(constants.NGHTTP2_REFUSED_STREAM) : err);
  }

  /** Resumes a stream paused by backpressure (the handler's `resume`). */
  private readonly resumeFn = (): void => {
    this.stream?.resume();
  };

  /** undici's `abort` for this exchange. */
  private readonly abortFn = (err?: Error): void => {
    this.abort(err);
  };

  onResponse(headers: IncomingHttpHeaders): void {
    if (this.done) return;
    const status = Number(headers[':status']);
    if (status < 200) return; // an interim response
    this.responded = true;
    this.statusInHeaders = headers['grpc-status'] !== undefined;
    coarseTimers.stop(this);
    // The wait between two chunks of the body, if any (a gRPC call has none: its deadline
    // bounds it): node:http2's stream timeout, which every frame re-arms.
    const timeout = this.options.bodyTimeout ?? 300_000;
    if (timeout > 0) {
      this.stream!.setTimeout(timeout);
      this.stream!.on('timeout', onStreamTimeout);
    }
    const raw: Buffer[] = [];
    for (const name in headers) {
      if (name.charCodeAt(0) === 58 /* : */) continue;
      const value = headers[name];
      if (Array.isArray(value)) for (const v of value) raw.push(nameBytes(name), Buffer.from(v, 'latin1'));
      else if (value !== undefined) raw.push(nameBytes(name), Buffer.from(String(value), 'latin1'));
    }
    if (this.handler.onHeaders?.(status, raw, this.resumeFn, '') === false) this.stream!.pause();
  }

  private sendBody(stream: ClientHttp2Stream, body: Buffer | Readable | null): void {
    if (body === null) {
      this.handler.onRequestSent?.();
      return;
    }
    if (Buffer.isBuffer(body)) {
      stream.end(body);
      this.handler.onBodySent?.(body);
      this.handler.onRequestSent?.();
      return;
    }
    const onData = (chunk: Buffer) => {
      this.bodyMovedAt = performance.now();
      this.handler.onBodySent?.(chunk);
      if (!stream.write(chunk)) {
        body.pause();
        stream.once('drain', () => body.resume());
      }
    };
    const onEnd = () => {
      this.detach = undefined;
      // The request is all out: the endpoint has the whole wait for its answer from now.
      const timeout = this.options.headersTimeout ?? 300_000;
      if (!this.responded && !this.done && timeout > 0) coarseTimers.start(this, timeout);
      stream.end();
      this.handler.onRequestSent?.();
    };
    const onError = (err: Error) => this.abort(err);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    // A failed exchange lets go of the body: a retry may read (or replay) it. Through a local:
    // V8 puts a function literal assigned straight to a property in the old generation, from
    // where its scope (this exchange, the body) would outlive the scavenges (docs/benchmarks.md).
    const detach = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.pause();
    };
    this.detach = detach;
  }

  /** The caller gives up (undici's `abort`): the stream is cancelled, onError reports why. */
  private abort(err?: Error): void {
    if (this.done) return;
    this.fail(err ?? new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the request was aborted', { status: 499 }));
  }

  fail(err: Error): void {
    if (this.done) return;
    this.finish();
    this.detach?.();
    const stream = this.stream;
    if (stream !== undefined && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
    this.handler.onError?.(err);
  }

  private finish(): void {
    this.done = true;
    coarseTimers.stop(this);
  }
}

/**
 * A response header name as bytes, made once per name: an endpoint sends the same few on every
 * call. Bounded: past NAMES_KEPT distinct names (an endpoint inventing them) it starts over.
 */
const names = new Map<string, Buffer>();
const NAMES_KEPT = 256;
function nameBytes(name: string): Buffer {
  let bytes = names.get(name);
  if (bytes === undefined) {
    if (names.size >= NAMES_KEPT) names.clear();
    bytes = Buffer.from(name, 'latin1');
    names.set(name, bytes);
  }
  return bytes;
}

const kExchange = Symbol('tandem.exchange');
type ExchangeStream = ClientHttp2Stream & { [kExchange]: Exchange | undefined };

function onStreamTimeout(this: ExchangeStream): void { this[kExchange]?.timedOut(); }
function onStreamResponse(this: ExchangeStream, headers: IncomingHttpHeaders): void { this[kExchange]?.onResponse(headers); }
function onStreamData(this: ExchangeStream, chunk: Buffer): void { this[kExchange]?.data(chunk); }
function onStreamTrailers(this: ExchangeStream, trailers: IncomingHttpHeaders): void { this[kExchange]?.gotTrailers(trailers); }
function onStreamEnd(this: ExchangeStream): void { this[kExchange]?.ended(); }
function onStreamClose(this: ExchangeStream): void { this[kExchange]?.closed(); }
function onStreamError(this: ExchangeStream, err: NodeJS.ErrnoException): void { this[kExchange]?.errored(err); }

/** The HTTP/2 request headers: the pseudo-headers from the options, the rest from the flat list. */
function requestHeaders(o: Dispatcher.DispatchOptions): OutgoingHttpHeaders {
  if (RAW_HEADERS) return rawRequestHeaders(o) as unknown as OutgoingHttpHeaders;
  const out: OutgoingHttpHeaders = { ':method': o.method, ':path': o.path, ':scheme': 'http' };
  const list = o.headers as string[] | null | undefined;
  if (list != null) {
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!.toLowerCase();
      const value = list[i + 1]!;
      if (name === 'host') out[':authority'] = value;
      else if (name === 'connection' || name === 'keep-alive' || name === 'transfer-encoding' || name === 'upgrade' || name === 'proxy-connection') continue;
      else {
        const had = out[name];
        out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value];
      }
    }
  }
  return out;
}

/**
 * The same as a flat [name, value, …] list, which Node ≥ 22.17 takes as it is: no headers
 * object built here and copied again by node:http2 on every call.
 */
function rawRequestHeaders(o: Dispatcher.DispatchOptions): string[] {
  const out = [':method', o.method, ':path', o.path, ':scheme', 'http'];
  const list = o.headers as string[] | null | undefined;
  if (list != null) {
    for (let i = 0; i < list.length; i += 2) {
      const name = list[i]!.toLowerCase();
      if (name === 'host') out.push(':authority', list[i + 1]!);
      else if (name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding' && name !== 'upgrade' && name !== 'proxy-connection') out.push(name, list[i + 1]!);
    }
  }
  return out;
}

/** Whether session.request() takes a flat header list (nodejs/node#57917: Node 24.0 and 22.17). */
const RAW_HEADERS = ((): boolean => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major >= 24 || (major === 22 && minor >= 17);
})();

/** session.request()'s options (copied by node:http2, never changed). */
const END_STREAM = Object.freeze({ endStream: true });
const OPEN_STREAM = Object.freeze({ endStream: false });

/**
 * A stream the endpoint reset. REFUSED_STREAM (RFC 9113 §8.7: "the stream was not processed")
 * — sent by the peer, or by our own side for streams above a GOAWAY's last stream id — is
 * marked `refused`: the call certainly did no work there.
 */
function streamClosedError(code: number): TandemError {
  return code === constants.NGHTTP2_REFUSED_STREAM
    ? new TandemError('TANDEM_ERR_UPSTREAM_REFUSED', 'the endpoint refused the stream (REFUSED_STREAM): not processed', { status: 502 })
    : new TandemError('TANDEM_ERR_UPSTREAM_RESET', `the endpoint reset the stream (HTTP/2 error code ${code})`, { status: 502 });
}
