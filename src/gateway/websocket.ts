import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { STATUS_CODES } from 'node:http';
import type { ErrorCode, TandemError } from '../core/errors.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { ResponseHandler, UpstreamRequest } from '../upstream/types.js';
import { rewriteResponseHeaders } from './headers.js';
import { admit } from './admission.js';
import { peerOf, type ProxyContext } from './proxy.js';
import { stripPrefix } from './router.js';
import { childContext, formatTraceparent, parseTraceparent } from '../observe/trace.js';

/**
 * Upgrade requests (WebSocket): routed and balanced like any request; once the endpoint
 * answers 101 the two sockets are spliced and bytes flow both ways untouched.
 */
export function handleUpgrade(ctx: ProxyContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const peer = peerOf(req.socket, ctx);
  const admission = admit(ctx, req, peer.ip, peer.trusted);
  const { facts, route } = admission;
  const upgrade = req.headers.upgrade;
  if (route === undefined || upgrade === undefined || ctx.live.draining || peer.closing) {
    const refusal = admission.refusal;
    if (refusal !== undefined) writeError(socket, refusal.status, refusal.code, refusal.message, facts.requestId);
    else if (route === undefined) writeError(socket, 404, 'TANDEM_ERR_NO_ROUTE', `no route for ${facts.host ?? ''}${admission.path}`, facts.requestId);
    else if (peer.closing) writeError(socket, 400, 'TANDEM_ERR_BAD_REQUEST', 'the connection is closing after a refused request', facts.requestId);
    else writeError(socket, 503, 'TANDEM_ERR_NO_HEALTHY_ENDPOINT', ctx.live.draining ? 'the gateway is draining: connect again' : 'not an upgrade request', facts.requestId);
    socket.destroy();
    return;
  }
  facts.headers.push('traceparent', formatTraceparent(childContext(parseTraceparent(facts.traceparent))));
  const path = admission.path;
  const request: UpstreamRequest = {
    method: req.method ?? 'GET',
    path: route.stripPrefix ? stripPrefix(route.prefix, path) : path,
    headers: facts.headers,
    body: null,
    hashKey: undefined,
    bodyLimit: 0,
    upgrade,
  };
  route.upstream.dispatch(request, new UpgradeExchange(socket, head, facts.requestId));
}

class UpgradeExchange implements ResponseHandler {
  private resume: (() => void) | undefined;
  private awaitingDrain = false;

  constructor(private readonly client: Duplex, private readonly head: Buffer, private readonly requestId: string) {}

  onStart(_endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.client.once('close', () => abort());
  }

  /** The endpoint refused to switch protocols: pass its answer on, then close. */
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.resume = resume;
    writeRaw(this.client, statusCode, rewriteResponseHeaders(rawHeaders));
    return true;
  }

  onData(chunk: Buffer): boolean {
    const ok = this.client.write(chunk);
    // Returning false pauses undici until `resume`: without the drain hook a refusal body
    // larger than the socket buffer stalled until the idle timeout. One listener at a time.
    if (!ok && !this.awaitingDrain) {
      this.awaitingDrain = true;
      this.client.once('drain', () => {
        this.awaitingDrain = false;
        this.resume?.();
      });
    }
    return ok;
  }

  onComplete(): void {
    this.client.end();
  }

  onError(error: TandemError): void {
    if (!this.client.destroyed) {
      writeError(this.client, error.status, error.code, error.message, this.requestId);
      this.client.destroy();
    }
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], upstream: Duplex): void {
    const client = this.client;
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    writeRaw(client, statusCode, rewriteResponseHeaders(rawHeaders, true), false);
    if (this.head.length > 0) upstream.write(this.head);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.pipe(client);
    client.pipe(upstream);
  }
}

/** The gateway's own answer on a socket no ServerResponse owns: the JSON error of respond.ts. */
function writeError(socket: Duplex, status: number, code: ErrorCode, message: string, requestId: string): void {
  const body = JSON.stringify({ error: { code, message, requestId } });
  writeRaw(socket, status, ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'x-request-id', requestId], true, body);
}

function writeRaw(socket: Duplex, status: number, headers: string[], close = true, body = ''): void {
  let text = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  if (close && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'connection')) text += 'connection: close\r\n';
  socket.write(`${text}\r\n${body}`);
}
