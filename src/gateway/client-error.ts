import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorCode } from '../core/errors.js';

/**
 * What Node's HTTP parser refuses before the proxy sees a request — invalid framing, a header
 * section over limits.maxHeaderSize, a client too slow with its headers or its request — gets
 * the same JSON error, with a code, as everything the gateway refuses itself; Node's default is a
 * bare status line. As in Node: no answer when the client reset the connection or when a
 * response is already under way on it, and the connection is closed either way.
 * Returns the status sent, 0 when none.
 */
export function answerClientError(err: NodeJS.ErrnoException & { reason?: string }, socket: Socket): number {
  const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || current?.headersSent === true) {
    socket.destroy();
    return 0;
  }
  const [status, code, message] = describe(err);
  const requestId = randomUUID();
  const body = JSON.stringify({ error: { code, message, requestId } });
  socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`);
  socket.destroy();
  return status;
}

function describe(err: NodeJS.ErrnoException & { reason?: string }): [number, ErrorCode, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'TANDEM_ERR_HEADERS_TOO_LARGE', 'the header section is larger than limits.maxHeaderSize'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'TANDEM_ERR_REQUEST_TIMEOUT', 'the request did not arrive within limits.headersTimeout / limits.requestTimeout'];
    default:
      return [400, 'TANDEM_ERR_BAD_REQUEST', `the request is not valid HTTP/1.1: ${err.reason ?? err.code ?? err.message}`];
  }
}
