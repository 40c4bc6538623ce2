import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { BlockList } from 'node:net';
import type { Logger } from 'pino';
import { TandemError } from '../core/errors.js';
import { isClientCaused } from '../upstream/classify.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { Leg, ResponseHandler, Trailers, UpstreamRequest } from '../upstream/types.js';
import type { Upstream } from '../upstream/upstream.js';
import { grpcStatusOfHeaders, grpcStatusOfTrailers, httpStatusOfGrpc, parseGrpcTimeout } from '../upstream/grpc.js';
import { collectGrpcBody, grpcStatusOfError, isGrpcRequest, sendGrpcStatus, sendTrailersOnly } from './grpc.js';
import { GrpcStreamRequest } from './grpc-stream.js';
import type { HashOn } from '../config/types.js';
import type { AccessLog, AccessLogged } from './access-log.js';
import type { ResponseCache } from '../cache/index.js';
import type { CacheRouted } from './route-caches.js';
import { clientIp, cookieValue, rewriteResponseHeaders } from './headers.js';
import { type Route, type Router, stripPrefix } from './router.js';
import { admit, isHttp2, type Admission, type Refusal } from './admission.js';
import type { BodyGuard, StallListener } from './body-guard.js';
import { sendError } from './respond.js';
import { parseTraceparent, formatTraceparent, startHop, type Hop } from '../observe/trace.js';

/** What the proxy step needs from the running gateway; swapped whole on reload. */
export interface ProxyContext {
  router: Router;
  trusted: BlockList;
  trustAny: boolean;
  maxBodySize: number;
  maxHeaders: number;
  /** Watches request bodies for stalls (limits.bodyTimeout, limits.minBodyRate). */
  bodyGuard: BodyGuard;
  /** For requests answered before they reach an upstream (refusals, 413); the others get theirs from the access-log step. */
  accessLog: AccessLog;
  logger: Logger;
  /** Counts client requests in progress and whether the gateway is draining. */
  live: { inflight: number; draining: boolean; unrouted: number[] };
  /** The listener's scheme, X-Forwarded-Proto's value unless a trusted proxy said. */
  proto: 'http' | 'https';
}

const kPeer = Symbol('tandem.peer');
interface PeerInfo {
  ip: string;
  trusted: boolean;
  /** A request on this connection was refused with `connection: close`: no other is forwarded. */
  closing: boolean;
  /** The trusted list `trusted` was decided with. */
  list: BlockList;
}
type PeerSocket = Socket & { [kPeer]?: PeerInfo };

/**
 * The peer address and trust are computed once per connection, not per request — and again
 * after a reload replaced the trusted list, or a keep-alive connection would keep the trust
 * decision of the config it was opened under.
 */
export function peerOf(socket: Socket, ctx: ProxyContext): PeerInfo {
  const s = socket as PeerSocket;
  let peer = s[kPeer];
  if (peer === undefined) {
    const ip = clientIp(socket.remoteAddress);
    peer = { ip, trusted: isTrusted(ip, ctx), closing: false, list: ctx.trusted };
    s[kPeer] = peer;
  } else if (peer.list !== ctx.trusted) {
    peer.trusted = isTrusted(peer.ip, ctx);
    peer.list = ctx.trusted;
  }
  return peer;
}

/**
 * No further request on this connection is forwarded (its answers would be dropped anyway).
 * Never for HTTP/2: a stream that fails leaves the connection's framing intact.
 */
function closeAfterThis(req: IncomingMessage, socket: Socket): void {
  if (isHttp2(req)) return;
  const peer = (socket as PeerSocket)[kPeer];
  if (peer !== undefined) peer.closing = true;
}

function isTrusted(ip: string, ctx: ProxyContext): boolean {
  return ctx.trustAny && ctx.trusted.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4');
}

/**
 * `Expect: 100-continue`: the client waits before sending its body. A request refused anyway,
 * or with a body declared too large, is answered before the client sends a byte of its body;
 * otherwise the client is told to go on.
 */
export function handleCheckContinue(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse): void {
  const started = performance.now();
  const peer = peerOf(req.socket, ctx);
  const admission = admit(ctx, req, peer.ip, peer.trusted);
  if (admission.refusal === undefined && !peer.closing && !tooLarge(ctx, admission.facts.contentLength)) res.writeContinue();
  proceed(ctx, req, res, peer, admission, started);
}

/** Entry point for every client request on the listener. */
export function handleRequest(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse): void {
  const started = performance.now();
  const peer = peerOf(req.socket, ctx);
  proceed(ctx, req, res, peer, admit(ctx, req, peer.ip, peer.trusted), started);
}

function tooLarge(ctx: ProxyContext, contentLength: string | undefined): boolean {
  return contentLength !== undefined && Number(contentLength) > ctx.maxBodySize;
}

function proceed(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, peer: PeerInfo, admission: Admission, started: number): void {
  const facts = admission.facts;
  const route = admission.route;
  if (route === undefined || peer.closing) {
    refuse(ctx, req, res, peer, admission, started);
    return;
  }
  const upstream = route.upstream;
  if (tooLarge(ctx, facts.contentLength)) {
    upstream.stats.local[3]!++;
    // The body was not read: the connection cannot carry another request (an HTTP/2 stream is
    // reset instead, its connection goes on).
    if (!isHttp2(req)) peer.closing = true;
    sendError(res, 413, 'TANDEM_ERR_BODY_TOO_LARGE', `request body of ${facts.contentLength} bytes exceeds ${ctx.maxBodySize}`, facts.requestId, true);
    ctx.accessLog.write({ req, route, endpoint: undefined, status: 413, started, requestId: facts.requestId, code: 'TANDEM_ERR_BODY_TOO_LARGE', attempts: 0, traceId: parseTraceparent(facts.traceparent)?.traceId });
    return;
  }
  // HTTP/2 frames a body without Content-Length or chunking: the request has one unless its
  // HEADERS frame ended the stream.
  const hasBody = facts.contentLength !== undefined ? facts.contentLength !== '0' : facts.chunked || hasHttp2Body(req);
  // The gateway's hop of the trace: the endpoint sees it as its parent span.
  const hop = startHop(`${req.method!} ${route.prefix}`, 'server', parseTraceparent(facts.traceparent), { 'http.request.method': req.method!, 'tandem.service': route.service });
  facts.headers.push('traceparent', formatTraceparent(hop.context));
  const path = admission.path;
  const request: UpstreamRequest = {
    method: req.method!,
    path: route.stripPrefix ? stripPrefix(route.prefix, path) : path,
    headers: facts.headers,
    // A gRPC call on the core API (grpc-stream.ts) is read from its stream itself.
    body: hasBody ? (req instanceof GrpcStreamRequest ? req.body(route.upstream.settings.protocol === 'grpc') : req) : null,
    bodyLength: hasBody && facts.contentLength !== undefined ? Number(facts.contentLength) : -1,
    hashKey: route.hash === undefined ? undefined : hashKeyOf(route.hash, req, peer.ip, facts.cookie),
    bodyLimit: ctx.maxBodySize,
  };
  ctx.live.inflight++;
  const exchange = new ProxyExchange(ctx, req, res, route, facts.requestId, started, hop);
  if (upstream.settings.protocol === 'grpc') {
    // No body guard: a streaming call's client may be quiet for as long as the call lasts.
    dispatchGrpc(upstream, request, req, exchange, started);
    return;
  }
  upstream.dispatch(request, exchange);
  if (hasBody) ctx.bodyGuard.watch(req, exchange);
}

/**
 * A call to a `protocol: grpc` service: its deadline is the client's `grpc-timeout` (taken off
 * the headers; each attempt sends what is left, upstream/resilience/deadline-step.ts) less the
 * time already spent here, enforced over the whole call; its body is read first when the call
 * is unary (gateway/grpc.ts), so it can go again.
 */
function dispatchGrpc(upstream: Upstream, request: UpstreamRequest, req: IncomingMessage, exchange: ProxyExchange, started: number): void {
  request.grpc = upstream.grpcCall(request.path);
  const timeout = parseGrpcTimeout(takeHeader(request.headers, 'grpc-timeout'));
  const go = () => {
    if (timeout !== undefined) {
      const left = Math.max(1, Math.floor(timeout - (performance.now() - started)));
      request.timeoutMs = left;
      exchange.deadlineIn(left);
    }
    upstream.dispatch(request, exchange);
  };
  const body = request.body;
  if (body === null || Buffer.isBuffer(body)) {
    go();
    return;
  }
  const retry = upstream.settings.retry;
  // A client that trickles its first message does not hold the call back for long: past the
  // wait, what came flows on as a stream.
  const wait = Math.min(timeout ?? upstream.settings.timeoutMs, upstream.settings.timeoutMs);
  collectGrpcBody(body, retry === false ? 0 : retry.bodyLimit, wait, (read, err) => {
    if (read === undefined) {
      exchange.onError(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the call', { cause: err, status: 499 }));
      return;
    }
    request.body = read;
    request.bodyLength = Buffer.isBuffer(read) ? read.length : -1;
    // A streaming call's messages add up for as long as it lasts: limits.maxBodySize bounds a
    // request, not a stream (the server bounds its messages: grpc's max receive message size).
    if (!Buffer.isBuffer(read)) request.bodyLimit = Infinity;
    go();
  });
}

/** Removes a header (lower-case name) from a flat list and returns its first value. */
function takeHeader(headers: string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length !== name.length || headers[i]!.toLowerCase() !== name) continue;
    value ??= headers[i + 1];
    headers.splice(i, 2);
    i -= 2;
  }
  return value;
}

/**
 * The refused request is answered and logged; with `close`, the connection takes no further
 * request: one already pipelined behind it is not forwarded (its answer would be dropped when
 * the connection closes, and its start may be the refused request's unread body).
 */
function refuse(ctx: ProxyContext, req: IncomingMessage, res: ServerResponse, peer: PeerInfo, admission: Admission, started: number): void {
  const refusal = admission.refusal ?? CLOSING;
  if (refusal.close && !isHttp2(req)) peer.closing = true;
  ctx.live.unrouted[Math.min(5, ((refusal.status / 100) | 0) - 1)]!++;
  const requestId = admission.facts.requestId;
  // A gRPC client reads a status, not an error page: no route is UNIMPLEMENTED, and so on.
  if (isHttp2(req) && isGrpcRequest(req.headers)) sendGrpcStatus(res, grpcStatusOfError(refusal), `${refusal.code}: ${refusal.message}`, ['x-request-id', requestId]);
  else sendError(res, refusal.status, refusal.code, refusal.message, requestId, refusal.close);
  ctx.accessLog.write({ req, route: undefined, endpoint: undefined, status: refusal.status, started, requestId, code: refusal.code, attempts: 0, traceId: parseTraceparent(admission.facts.traceparent)?.traceId });
}

const CLOSING: Refusal = Object.freeze({ status: 400, code: 'TANDEM_ERR_BAD_REQUEST', message: 'the connection is closing after a refused request', close: true });

const kServing = Symbol('tandem.serving');
type ClientSocket = Socket & { [kServing]?: ProxyExchange | null };

function onClientSocketClose(this: ClientSocket): void {
  this[kServing]?.onClientClose();
}

/** An HTTP/2 request's stream: it names the exchange serving it until that one finishes. */
const kExchangeOf = Symbol('tandem.exchangeOf');
type ServedStream = Http2Stream & { [kExchangeOf]?: ProxyExchange };

/** An HTTP/2 request's stream closed (one function for all of them). */
function onServedStreamClose(this: ServedStream): void {
  this[kExchangeOf]?.onClientClose();
}

/**
 * Streams one upstream response to the client. Backpressure is end to end: when the client
 * socket is full, undici stops reading the upstream until it drains.
 */
class ProxyExchange implements ResponseHandler, StallListener, AccessLogged, CacheRouted {
  private endpoint: Endpoint | undefined;
  private abort: ((reason?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private status = 0;
  private finished = false;
  private awaitingDrain = false;
  private ended = false;
  /** Attempts sent (retries and hedges included) and the last endpoint tried, for the access log. */
  private attempts = 0;
  private tried: Endpoint | undefined;
  /** Set by the access-log step when the service's chain has one. */
  accessLog: AccessLog | undefined = undefined;
  /** A gRPC call: answered with gRPC statuses, never an HTTP error page. */
  private readonly grpc: boolean;
  /** The call's gRPC status, once known (-1 before). */
  private grpcStatus = -1;
  /** A Trailers-Only answer held until its end, to be sent as one HEADERS frame. */
  private trailersOnly: string[] | undefined;
  /** The gRPC deadline's timer (deadlineIn). */
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** The route's cache, for the gateway's cache step. */
  readonly cache: ResponseCache | undefined;
  /**
   * The client connection, kept: `req.socket` turns null once the request is destroyed, which
   * undici does to a streamed body when the upstream connection fails while it is being sent.
   */
  private readonly socket: ClientSocket;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly route: Route,
    private readonly requestId: string,
    private readonly started: number,
    private readonly hop: Hop,
  ) {
    // Client-gone detection, one listener per connection rather than one per request: the
    // connection remembers the exchange it is serving. A pipelined request that arrives while
    // another is still being served falls back to its own listener.
    this.cache = route.cache;
    this.grpc = route.upstream.settings.protocol === 'grpc';
    const socket = req.socket as ClientSocket;
    this.socket = socket;
    // An HTTP/2 request's socket is a proxy of its stream, shared by none: its own close is the client's.
    if (isHttp2(req)) {
      const stream = (req as unknown as { stream: ServedStream }).stream;
      stream[kExchangeOf] = this;
      stream.on('close', onServedStreamClose);
      return;
    }
    if (socket[kServing] === undefined) socket.once('close', onClientSocketClose);
    if (socket[kServing]) res.once('close', () => this.onClientClose());
    else socket[kServing] = this;
  }

  onAttempt(endpoint: Endpoint): void {
    this.attempts++;
    this.tried = endpoint;
  }

  /** Called again for each retry, with that attempt's endpoint and abort. */
  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.endpoint = endpoint;
    this.abort = abort;
    // A retry can start after the client left (during its backoff), or a hedge survive its
    // race after the call was answered (its deadline): nothing else would abort it.
    if (this.finished) abort(LET_GO);
    else if (this.clientGone()) abort(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away', { status: 499 }));
  }

  /** The client left: its HTTP/2 stream, or its connection, is gone. */
  private clientGone(): boolean {
    const stream = (this.req as { stream?: { destroyed: boolean } }).stream;
    return stream !== undefined ? stream.destroyed : this.socket.destroyed;
  }

  /**
   * The body guard gave up on the client's body: 408 and close, unless an answer is already
   * under way (then the connection is cut). The endpoint exchange is aborted only once the 408
   * is out: aborting destroys the request stream, and Node closes the client connection with it.
   */
  bodyStalled(reason: string): void {
    if (this.finished) return;
    const error = new TandemError('TANDEM_ERR_REQUEST_TIMEOUT', `the request body stalled: ${reason}`, { status: 408 });
    closeAfterThis(this.req, this.socket);
    const abort = this.abort;
    if (this.res.headersSent) {
      this.res.destroy(error);
    } else {
      this.status = 408;
      sendError(this.res, 408, error.code, error.message, this.requestId, true);
    }
    this.finish(error);
    if (abort === undefined) return; // no endpoint exchange yet: the connection closing ends the rest
    if (this.res.writableFinished || this.res.destroyed) abort(error);
    else this.res.once('close', () => abort(error));
  }

  /**
   * The call's deadline (grpc-timeout) is enforced over the whole call, not only until the
   * response headers: when it passes the endpoint's exchange is cancelled and the client gets
   * DEADLINE_EXCEEDED (in trailers, when the response had begun).
   */
  deadlineIn(ms: number): void {
    this.deadlineTimer = setTimeout(() => {
      this.deadlineTimer = undefined;
      if (this.finished) return;
      const error = new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `the call's deadline (grpc-timeout) passed after ${ms} ms`, { status: 504 });
      const abort = this.abort;
      this.onError(error);
      abort?.(error);
    }, ms);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    if (this.finished) {
      // Answered already (the call's deadline, a stalled body): a leg still out then is cut,
      // its end reported down the chain as the caller's (not retried, not the endpoint's
      // failure), which gives the request's slot back.
      leg?.abortFn?.(LET_GO);
      return true;
    }
    this.status = statusCode;
    this.resume = resume;
    const headers = rewriteResponseHeaders(rawHeaders, false, statusCode === 204);
    if (this.grpc && statusCode === 200) {
      const code = grpcStatusOfHeaders(rawHeaders);
      if (code >= 0) {
        // Trailers-Only: sent as one frame when the endpoint's stream ends (onComplete).
        this.grpcStatus = code;
        this.trailersOnly = headers;
        return true;
      }
    }
    if (this.ctx.live.draining && !isHttp2(this.res)) headers.push('connection', 'close');
    this.res.writeHead(statusCode, headers);
    return true;
  }

  onData(chunk: Buffer, last: boolean): boolean {
    if (this.finished) return true;
    // A gRPC response's trailers follow its last byte: the end waits for them (onComplete).
    if (last && !this.grpc) {
      // The whole body is known to be here: one end() instead of write() + end().
      this.res.end(chunk);
      this.ended = true;
      return true;
    }
    const ok = this.res.write(chunk);
    // One 'drain' listener at a time: the upstream is not always paused when asked (see
    // Attempt.onData), so writes can keep returning false until the client catches up.
    if (!ok && !this.awaitingDrain) {
      this.awaitingDrain = true;
      this.res.once('drain', () => {
        this.awaitingDrain = false;
        this.resume?.();
      });
    }
    return ok;
  }

  onComplete(trailers?: Trailers): void {
    if (this.finished) return;
    if (this.trailersOnly !== undefined) {
      sendTrailersOnly(this.res, this.trailersOnly);
      this.finish(undefined);
      return;
    }
    if (this.grpc) this.grpcStatus = grpcStatusOfTrailers(trailers);
    if (trailers !== undefined && !this.ended && isHttp2(this.res)) addTrailers(this.res, trailers);
    if (!this.ended) this.res.end();
    this.finish(undefined);
  }

  onError(error: TandemError): void {
    if (this.finished) return; // answered already (the body stalled)
    if (error.code === 'TANDEM_ERR_CLIENT_ABORTED' || this.res.destroyed) {
      this.finish(error);
      return;
    }
    if (this.grpc) {
      // A gRPC client reads statuses, not error pages: Trailers-Only (or trailers, mid-response).
      this.grpcStatus = grpcStatusOfError(error);
      if (!this.res.headersSent) this.status = 200;
      sendGrpcStatus(this.res, this.grpcStatus, `${error.code}: ${error.message}`, ['x-request-id', this.requestId]);
      this.finish(error);
      return;
    }
    if (this.res.headersSent) {
      // Mid-body failure: the only honest signal left is to cut the client connection.
      this.res.destroy(error);
    } else {
      this.status = error.status;
      // A failure of the client's making may leave its body half read: the connection cannot
      // carry another request.
      const close = isClientCaused(error);
      if (close) closeAfterThis(this.req, this.socket);
      sendError(this.res, error.status, error.code, error.message, this.requestId, close);
    }
    this.finish(error);
  }

  onClientClose(): void {
    if (this.finished || this.ended) return;
    // HTTP/1.1: a response that went out whole is no client abort when its socket closes. Not
    // asked of an HTTP/2 stream: one the client reset reads as finished too (node:http2 ends
    // its writable side), and a gRPC call cancelled mid-stream would go on at the endpoint.
    if (!isHttp2(this.req) && this.res.writableFinished) return;
    this.abort?.(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away', { status: 499 }));
  }

  private finish(error: TandemError | undefined): void {
    if (this.finished) return;
    this.finished = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    if (this.grpc) this.route.upstream.countGrpc(this.req.url ?? '', this.grpcStatus);
    const stream = (this.req as { stream?: ServedStream }).stream;
    if (stream !== undefined) {
      // The stream lets go of the call: node:http2 keeps a closed stream until the next full
      // collection, and what it holds would be copied out of the young generation at every
      // scavenge until then (docs/benchmarks.md). Its 'close' has nothing left to do.
      stream[kExchangeOf] = undefined;
    } else if (this.socket[kServing] === this) this.socket[kServing] = null;
    this.ctx.live.inflight--;
    const seconds = (performance.now() - this.started) / 1000;
    this.route.upstream.stats.latency.observe(seconds);
    const status = error?.code === 'TANDEM_ERR_CLIENT_ABORTED' ? 499 : this.status;
    // As the client saw it: a failure after the headers went out is a cut connection ("error").
    const cut = error !== undefined && this.res.headersSent && error.code !== 'TANDEM_ERR_CLIENT_ABORTED';
    this.route.upstream.stats.answered[cut ? 5 : Math.min(5, Math.max(0, ((status / 100) | 0) - 1))]!++;
    this.hop.end(status, error?.code);
    const log = this.accessLog;
    const grpcFailed = this.grpcStatus > 0 && httpStatusOfGrpc(this.grpcStatus) >= 500;
    if (log !== undefined && (log.mode === 'all' || error !== undefined || this.status >= 500 || grpcFailed)) {
      log.write({ req: this.req, route: this.route, endpoint: this.endpoint ?? this.tried, status, started: this.started, requestId: this.requestId, code: error?.code, attempts: this.attempts, traceId: this.hop.context.traceId, grpcStatus: this.grpc ? this.grpcStatus : undefined });
    }
  }
}

/** Ends an exchange that outlived its call (ProxyExchange.onStart, onHeaders): the caller's doing. */
const LET_GO = new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call was already answered', { status: 499 });

/** An HTTP/2 request whose HEADERS frame did not end its stream: a body follows. */
function hasHttp2Body(req: IncomingMessage): boolean {
  const stream = (req as { stream?: { endAfterHeaders: boolean } }).stream;
  return stream !== undefined && !stream.endAfterHeaders;
}

/** Trailers for an HTTP/2 response (Node sends them after the last DATA frame). */
function addTrailers(res: ServerResponse, trailers: Trailers): void {
  const out: Record<string, string | string[]> = {};
  let any = false;
  for (const name in trailers) {
    const v = trailers[name];
    if (v === undefined || name.charCodeAt(0) === 58 /* : */) continue;
    out[name] = v;
    any = true;
  }
  if (any) res.addTrailers(out);
}

function hashKeyOf(on: HashOn, req: IncomingMessage, ip: string, cookie: string | undefined): string | undefined {
  switch (on.kind) {
    case 'client-ip': return ip;
    case 'cookie': return cookieValue(cookie, on.name);
    case 'header': {
      const v = req.headers[on.name];
      return Array.isArray(v) ? v.join(',') : v;
    }
  }
}
