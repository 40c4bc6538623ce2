import { TandemError } from '../core/errors.js';

/**
 * Maps what undici or the socket reported into one of our error codes. `retryable` is true
 * only where the request certainly did not reach the application: connect failures, and a
 * stale connection (see isStaleConnection). `unreadOnReuse`: the exchange went out on a
 * connection that had served an earlier one, and not a byte of response came back.
 */
export function classifyUpstreamError(err: unknown, endpointId: string, unreadOnReuse = false): TandemError {
  if (err instanceof TandemError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const code = e.code ?? '';
  const cause = err;
  if (unreadOnReuse && resetByPeer(code)) {
    return new TandemError('TANDEM_ERR_UPSTREAM_RESET', `${endpointId} reset a reused connection without reading the request (${code})`, { cause, retryable: true, status: 502 });
  }
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `cannot connect to ${endpointId}: ${code}`, { cause, retryable: true, status: 502 });
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `connect to ${endpointId} timed out`, { cause, retryable: true, status: 502 });
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${endpointId} sent no response headers in time`, { cause, status: 504 });
    case 'UND_ERR_BODY_TIMEOUT':
      return new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `${endpointId} stalled while sending the response body`, { cause, status: 504 });
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return new TandemError('TANDEM_ERR_UPSTREAM_RESET', `connection to ${endpointId} closed: ${e.message ?? code}`, { cause, status: 502 });
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
      // undici refused to send the request as given (a header it will not frame, say): nothing
      // left the gateway, and nothing about the endpoint is known.
      return new TandemError('TANDEM_ERR_BAD_REQUEST', `the request cannot be forwarded: ${e.message ?? code}`, { cause, status: 400 });
    case 'UND_ERR_ABORTED':
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away', { cause, status: 499 });
    default:
      // undici 7's HTTPParserError carries no code: it looks the llhttp error number up in a
      // name → number table, so `code` comes out undefined. Its name is what identifies it.
      if (code.startsWith('HPE_') || e.name === 'HTTPParserError' || code.startsWith('UND_ERR_RES') || code === 'UND_ERR_HEADERS_OVERFLOW' || code === 'UND_ERR_INFO') {
        return new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', `${endpointId} answered invalid HTTP: ${e.message ?? code}`, { cause, status: 502 });
      }
      return new TandemError('TANDEM_ERR_UPSTREAM_RESET', `exchange with ${endpointId} failed: ${e.message ?? code}`, { cause, status: 502 });
  }
}

/**
 * Failures of the client's making — it went away, sent too much, too slowly, or something that
 * cannot be forwarded. They say nothing about the endpoint: never counted against it (outlier
 * detection, latency, error counts) and never retried elsewhere.
 */
export function isClientCaused(error: TandemError): boolean {
  switch (error.code) {
    case 'TANDEM_ERR_CLIENT_ABORTED':
    case 'TANDEM_ERR_BODY_TOO_LARGE':
    case 'TANDEM_ERR_REQUEST_TIMEOUT':
    case 'TANDEM_ERR_BAD_REQUEST':
      return true;
    default:
      return false;
  }
}

/**
 * What undici reports when the endpoint closes a kept-alive connection (measured with undici
 * 7.30 on Linux, raw `net` servers and nginx; docs/availability.md):
 *
 * | the endpoint…                                         | undici reports                            |
 * |-------------------------------------------------------|-------------------------------------------|
 * | closed the idle connection before we reused it        | nothing: the socket is dropped, the request goes out on another |
 * | closed it (idle timer) with our request unread         | `ECONNRESET` (`read`), no response byte    |
 * | closed it just before our request arrived              | `ECONNRESET`, or `EPIPE` on the write       |
 * | was killed with our request unread in its buffer       | `ECONNRESET`                               |
 * | read the request, then closed (or exited)              | `UND_ERR_SOCKET` "other side closed" (FIN) |
 *
 * A reset is what a TCP peer sends when data arrives at a socket it has closed, or when it closes
 * one with data still unread: the request never reached the application. A plain close (FIN)
 * comes from an endpoint that may have read the request, so it proves nothing: a POST it ended
 * is not sent again (Go's transport draws the same line: it resends a non-idempotent request
 * only when nothing of it was written). On a connection used for the first time a reset proves
 * the same, but it is also what an endpoint that rejects every request does: Go only retries on
 * reused connections, and so do we, so that never loops.
 *
 * Residual risk: an endpoint that reads part of a large body, acts on it and then dies with the
 * rest unread also resets; and one that closes abortively on purpose (SO_LINGER 0) after reading
 * a request looks like one that never read it. The first is rare for handlers that read the
 * whole body first; the second is a server bug. A close (FIN) that reaches us just before our
 * write, over a slow network, surfaces as "other side closed": not provable, not resent (POST).
 */
function resetByPeer(code: string): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * The endpoint closed a reused connection without reading the request (classifyUpstreamError
 * with `unreadOnReuse`). Not the endpoint's failure: it closed an idle connection as it may.
 */
export function isStaleConnection(error: TandemError): boolean {
  return error.code === 'TANDEM_ERR_UPSTREAM_RESET' && error.retryable;
}
