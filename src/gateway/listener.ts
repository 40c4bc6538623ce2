import { createServer, Server as HttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  createSecureServer, createServer as createH2Server, type Http2SecureServer, type Http2Server,
  type Http2ServerRequest, type Http2ServerResponse, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Session, type ServerHttp2Stream,
} from 'node:http2';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { LimitsConfig, ListenerConfig, TlsConfig } from '../config/types.js';
import type { TimerHandle } from '../core/clock.js';
import { coarseTimers, type CoarseWait } from '../core/coarse-timers.js';
import { streamStarted, trackStreamTables } from '../core/stream-tables.js';
import { LinkedSet } from '../core/linked-set.js';
import { peekPreface } from './h2c-preface.js';
import { GrpcStreamRequest, GrpcStreamResponse, isGrpcCall } from './grpc-stream.js';

/**
 * TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD ciphers only, no CBC, no RSA
 * key exchange; the TLS 1.3 suites are OpenSSL's three. Every one is strong, so the client's
 * order is kept (a client without AES hardware prefers ChaCha20).
 */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Protocols offered by ALPN on a TLS listener, preferred first (docs/security.md#tls). */
export const ALPN_PROTOCOLS = ['h2', 'http/1.1'];

/**
 * Streams one HTTP/2 client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
 * Node's default is unbounded; each stream is a request in flight through the gateway, and
 * the services' concurrency limits count them, but one connection should not hold thousands.
 */
export const H2_MAX_CONCURRENT_STREAMS = 1000;

/** A request or response on either protocol: the proxy reads both through the HTTP/1.1 shape. */
export type ClientRequest = IncomingMessage | Http2ServerRequest;

export interface ListenerEvents {
  request(req: IncomingMessage, res: ServerResponse): void;
  checkContinue(req: IncomingMessage, res: ServerResponse): void;
  clientError(err: NodeJS.ErrnoException, socket: Socket): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** A TCP connection was accepted (before any TLS handshake). */
  connection(socket: Socket): void;
  /** A TLS handshake failed (old protocol, no common cipher, not TLS at all). */
  tlsError?(err: NodeJS.ErrnoException): void;
  /**
   * A stream of an HTTP/2 connection closed (its response is over): the gateway sends the
   * connection a GOAWAY when it is draining. Told here, where the connection's streams are
   * counted, rather than by a listener made per request.
   */
  streamEnded?(session: ServerHttp2Session): void;
}

/**
 * One client listener. Plaintext: an `http.Server` that also takes h2c with prior knowledge —
 * each new connection's first bytes are looked at once (h2c-preface.ts): the HTTP/2 preface
 * hands the connection to an HTTP/2 server that never listens itself, anything else to the
 * HTTP/1.1 server as before (no cost per request). TLS: `http2.createSecureServer` with
 * `allowHTTP1`, ALPN choosing `h2` or `http/1.1`, certificates by SNI and swapped on reload.
 *
 * HTTP/2 requests come through Node's compatibility API (`Http2ServerRequest` and
 * `Http2ServerResponse`), which has the shape of HTTP/1.1's: the proxy handles both alike and
 * branches only where the protocols differ (pseudo-headers, connection-specific headers,
 * closing a connection). gRPC calls come as objects of the same shape made straight on the
 * stream (grpc-stream.ts), which cost less per call.
 */
export class ClientListener {
  /** The listening server. */
  readonly server: Server;
  /** Serves the HTTP/2 connections: the TLS server itself, or the h2c server fed by the plaintext one. */
  private readonly h2: Http2Server | Http2SecureServer;
  /**
   * HTTP/2 connections open now: a drain sends each a GOAWAY (closeIdle) or cuts it (closeAll).
   * Linked sets, as these two see a connection come and go for every connection the gateway
   * serves (core/linked-set.ts).
   */
  private readonly sessions = new LinkedSet<Http2Session>();
  /**
   * The sockets of connections served by the HTTP/2 server (and, on TLS, by its HTTP/1.1 side),
   * until they close. A session that closed has ended its side of the socket; a client that
   * never ends its own would hold the socket open, and with it the server's close: closeAll
   * cuts them too.
   */
  private readonly sockets = new LinkedSet<Socket>();
  /** Certificates by name, for SNI; replaced whole on reload (handshakes under way keep theirs). */
  private byName = new Map<string, SecureContext>();
  /** An HTTP/2 connection without a stream for this long is closed (limits.keepAliveTimeout). */
  private idleMs = 0;

  constructor(readonly config: ListenerConfig, limits: LimitsConfig, on: ListenerEvents) {
    const http1 = {
      maxHeaderSize: limits.maxHeaderSize,
      // Checked by the proxy, whose 400 carries a code like every other refusal.
      requireHostHeader: false,
      noDelay: true,
    };
    const h2Options = {
      // Past this many header lines nghttp2 refuses the stream; the proxy counts again (limits.maxHeaders).
      maxHeaderListPairs: limits.maxHeaders + 8,
      // The request header section's size limit, announced to clients (HTTP/2 counts names and
      // values plus 32 bytes per line).
      settings: { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS, maxHeaderListSize: limits.maxHeaderSize },
    };
    const request = on.request as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void;
    const tls = config.tls;
    if (tls === undefined) {
      this.server = createServer(http1, on.request);
      this.h2 = createH2Server(h2Options, request);
      // The HTTP/1.1 server's own connection handler, now called only for HTTP/1.1 connections.
      const [http1Connection] = this.server.listeners('connection') as Array<(socket: Socket) => void>;
      this.server.removeAllListeners('connection');
      this.server.on('connection', (socket: Socket) => peekPreface(socket, limits.headersTimeout, (h2) => {
        if (h2) {
          this.keep(socket);
          this.h2.emit('connection', socket);
        }
        else http1Connection!.call(this.server, socket);
      }));
    } else {
      const secure = createSecureServer({
        ...h2Options,
        allowHTTP1: true,
        ...contextOptions(tls, tls.certificates[0]!),
        ALPNProtocols: ALPN_PROTOCOLS,
        // tls.Server's own default is 120 s: a peer that opens a socket and says nothing would
        // hold it that long. A handshake is part of getting the headers in.
        handshakeTimeout: limits.headersTimeout,
        SNICallback: (name, done) => done(null, this.contextFor(name)),
      }, request);
      // The HTTP/1.1 connections of an allowHTTP1 server are served by Node's http code, which
      // reads these fields from the server object.
      Object.assign(secure, http1);
      this.h2 = secure;
      this.server = secure as unknown as Server;
      this.byName = contextsByName(tls);
      if (on.tlsError) this.server.on('tlsClientError', on.tlsError);
      this.server.on('secureConnection', (socket: Socket) => this.keep(socket));
    }
    // How often Node checks the HTTP/1.1 timeouts; its default (30 s) would let a slow client
    // hold a connection far past its limit. Read when the server starts listening.
    (this.server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = Math.max(100, Math.min(1000, limits.headersTimeout / 4));
    this.setLimits(limits);
    // No cap in Node's parser: past its maxHeadersCount it drops header lines without a word
    // (Content-Length among them). The proxy counts every line against limits.maxHeaders.
    this.server.maxHeadersCount = 0;
    this.server.on('connection', on.connection);
    this.server.on('checkContinue', on.checkContinue);
    this.server.on('clientError', on.clientError);
    this.server.on('upgrade', on.upgrade);
    if (tls === undefined) this.h2.on('checkContinue', on.checkContinue as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void);
    this.h2.on('session', (session: ServerHttp2Session) => this.track(session, on.streamEnded));
    // gRPC calls skip the compatibility API (grpc-stream.ts): its own 'stream' listener, added
    // with the request listener, now serves the other requests only.
    const [compat] = this.h2.listeners('stream') as Array<(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void>;
    this.h2.removeAllListeners('stream');
    this.h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
      (stream.session as TrackedSession)[kIdle]?.began(stream);
      streamStarted(stream.session);
      if (isGrpcCall(headers)) on.request(new GrpcStreamRequest(stream, headers, rawHeaders) as unknown as IncomingMessage, new GrpcStreamResponse(stream) as unknown as ServerResponse);
      else compat!.call(this.h2, stream, headers, flags, rawHeaders);
    });
  }

  get secure(): boolean {
    return this.config.tls !== undefined;
  }

  /** The timeouts a reload may change. */
  setLimits(limits: LimitsConfig): void {
    this.server.headersTimeout = limits.headersTimeout;
    this.server.requestTimeout = limits.requestTimeout;
    this.server.keepAliveTimeout = limits.keepAliveTimeout;
    this.idleMs = limits.keepAliveTimeout;
  }

  /**
   * New certificates (a reload read the files again): new handshakes get them; connections
   * already open keep the session they made, so none is dropped.
   */
  setTls(tls: TlsConfig): void {
    (this.h2 as Http2SecureServer).setSecureContext(contextOptions(tls, tls.certificates[0]!));
    this.byName = contextsByName(tls);
  }

  /**
   * Idle HTTP/1.1 connections are closed; every HTTP/2 connection gets a GOAWAY — its streams
   * under way finish, the client opens new ones elsewhere.
   */
  closeIdle(): void {
    HttpServer.prototype.closeIdleConnections.call(this.server);
    for (const session of this.sessions) if (!session.closed) session.close();
  }

  /** Every connection is cut. */
  closeAll(): void {
    // An allowHTTP1 server tracks its HTTP/1.1 connections as http.Server does, but has only
    // one of the two methods: http.Server's own serve both.
    HttpServer.prototype.closeAllConnections.call(this.server);
    for (const session of this.sessions) session.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  private keep(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private track(session: ServerHttp2Session, streamEnded: ((session: ServerHttp2Session) => void) | undefined): void {
    this.sessions.add(session);
    trackStreamTables(session);
    const idle = new IdleSession(session, () => this.idleMs, streamEnded);
    (session as TrackedSession)[kIdle] = idle;
    session.once('close', () => {
      this.sessions.delete(session);
      coarseTimers.stop(idle);
    });
    idle.streamsEnded();
  }

  /** The certificate for an SNI name: exact, then the wildcard one label up; else the default (undefined). */
  private contextFor(name: string): SecureContext | undefined {
    const lower = name.toLowerCase();
    const exact = this.byName.get(lower);
    if (exact !== undefined) return exact;
    const dot = lower.indexOf('.');
    return dot > 0 ? this.byName.get(`*${lower.slice(dot)}`) : undefined;
  }
}

/**
 * An HTTP/2 client connection's streams, counted: without one for limits.keepAliveTimeout, it
 * is closed (GOAWAY), as an idle HTTP/1.1 keep-alive connection would be. One with streams open
 * is left alone — a gRPC stream may be quiet for long. Timed on the coarse timers from its last
 * stream's end, not by node:http2's session timeout, which every frame re-arms.
 */
class IdleSession implements CoarseWait {
  coarseDue: number | undefined = undefined;
  coarseTimer: TimerHandle | undefined = undefined;
  coarsePrev: CoarseWait | undefined = undefined;
  coarseNext: CoarseWait | undefined = undefined;
  private streams = 0;

  constructor(
    private readonly session: ServerHttp2Session,
    private readonly idleMs: () => number,
    private readonly streamEnded: ((session: ServerHttp2Session) => void) | undefined,
  ) {}

  began(stream: ServerHttp2Stream): void {
    if (this.streams++ === 0) coarseTimers.stop(this);
    (stream as TrackedStream)[kIdle] = this;
    stream.on('close', onTrackedStreamClose);
  }

  streamsEnded(): void {
    const ms = this.idleMs();
    if (ms > 0 && !this.session.closed) coarseTimers.start(this, ms);
  }

  closed(): void {
    this.streamEnded?.(this.session);
    if (--this.streams === 0) this.streamsEnded();
  }

  expire(): void {
    if (this.streams === 0 && !this.session.closed) this.session.close();
  }
}

const kIdle = Symbol('tandem.idle');
type TrackedSession = ServerHttp2Session & { [kIdle]?: IdleSession };
type TrackedStream = ServerHttp2Stream & { [kIdle]: IdleSession };

/** A counted stream closed (one function for all of them: the stream names its connection's count). */
function onTrackedStreamClose(this: TrackedStream): void {
  this[kIdle].closed();
}

function contextOptions(tls: TlsConfig, cert: { cert: string; key: string }): SecureContextOptions {
  return { cert: cert.cert, key: cert.key, minVersion: tls.minVersion, ciphers: TLS_CIPHERS, honorCipherOrder: false };
}

/** Each name once: the first certificate listing it wins (the default first). */
function contextsByName(tls: TlsConfig): Map<string, SecureContext> {
  const out = new Map<string, SecureContext>();
  for (const c of tls.certificates) {
    const ctx = createSecureContext(contextOptions(tls, c));
    for (const name of c.names) if (!out.has(name)) out.set(name, ctx);
  }
  return out;
}
