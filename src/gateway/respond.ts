import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../core/errors.js';

/**
 * Answers a request on the gateway's own behalf: a small JSON body naming the error code and
 * the request id, so a client-visible failure can be found in the logs. `close` ends the
 * connection afterwards (the request body was not read, e.g. 413).
 */
export function sendError(res: ServerResponse, status: number, code: ErrorCode, message: string, requestId: string, close: boolean): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message, requestId } });
  const headers = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'x-request-id', requestId];
  if (status === 503) headers.push('retry-after', '1');
  // HTTP/2 has no Connection header (RFC 9113 §8.2.2): the stream ends, the connection stays.
  if (close && (res as { stream?: unknown }).stream === undefined) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
}
