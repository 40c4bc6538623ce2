import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createSecureServer } from 'node:https';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { LimitsConfig, ListenerConfig, TlsConfig } from '../config/types.js';

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

/**
 * Protocols offered by ALPN. `h2` joins when the listener moves to
 * `http2.createSecureServer({ allowHTTP1: true })` (docs/security.md#tls).
 */
export const ALPN_PROTOCOLS = ['http/1.1'];

export interface ListenerEvents {
  request(req: IncomingMessage, res: ServerResponse): void;
  checkContinue(req: IncomingMessage, res: ServerResponse): void;
  clientError(err: NodeJS.ErrnoException, socket: Socket): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** A TCP connection was accepted (before any TLS handshake). */
  connection(socket: Socket): void;
  /** A TLS handshake failed (old protocol, no common cipher, not TLS at all). */
  tlsError?(err: NodeJS.ErrnoException): void;
}

/**
 * One client listener: a plain `http.Server`, or an `https.Server` whose certificates can be
 * swapped while it runs. Both carry the same HTTP/1.1 options and events, so the request path
 * is the same code; a plaintext listener is exactly the server it was before TLS existed.
 */
export class ClientListener {
  readonly server: Server;
  /** Certificates by name, for SNI; replaced whole on reload (handshakes under way keep theirs). */
  private byName = new Map<string, SecureContext>();

  constructor(readonly config: ListenerConfig, limits: LimitsConfig, on: ListenerEvents) {
    const options = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      // How often Node checks the two timeouts above; its default (30 s) would let a slow
      // client hold a connection far past its limit.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeout / 4)),
      // Checked by the proxy, whose 400 carries a code like every other refusal.
      requireHostHeader: false,
      noDelay: true,
    };
    const tls = config.tls;
    this.server = tls === undefined ? createServer(options, on.request) : createSecureServer({
      ...options,
      ...contextOptions(tls, tls.certificates[0]!),
      ALPNProtocols: ALPN_PROTOCOLS,
      // tls.Server's own default is 120 s: a peer that opens a socket and says nothing would
      // hold it that long. A handshake is part of getting the headers in.
      handshakeTimeout: limits.headersTimeout,
      SNICallback: (name, done) => done(null, this.contextFor(name)),
    }, on.request) as unknown as Server;
    if (tls !== undefined) {
      this.byName = contextsByName(tls);
      if (on.tlsError) this.server.on('tlsClientError', on.tlsError);
    }
    this.server.keepAliveTimeout = limits.keepAliveTimeout;
    // No cap in Node's parser: past its maxHeadersCount it drops header lines without a word
    // (Content-Length among them). The proxy counts every line against limits.maxHeaders.
    this.server.maxHeadersCount = 0;
    this.server.on('connection', on.connection);
    this.server.on('checkContinue', on.checkContinue);
    this.server.on('clientError', on.clientError);
    this.server.on('upgrade', on.upgrade);
  }

  get secure(): boolean {
    return this.config.tls !== undefined;
  }

  /**
   * New certificates (a reload read the files again): new handshakes get them; connections
   * already open keep the session they made, so none is dropped.
   */
  setTls(tls: TlsConfig): void {
    const server = this.server as unknown as { setSecureContext(o: SecureContextOptions): void };
    server.setSecureContext(contextOptions(tls, tls.certificates[0]!));
    this.byName = contextsByName(tls);
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
