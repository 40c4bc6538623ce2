import { TandemError } from '../core/errors.js';
import { nothingReadSince, type ConnectionLedger } from './connection.js';

/**
 * Maps what undici or the socket reported into one of our error codes. `retryable` is true
 * only where the request certainly did not reach the application: connect failures, and a
 * stale connection (see isStaleConnection). `unread`: the exchange went out on a
 * connection that had served an earlier one, and not a byte of response came back.
 */
export function classifyUpstreamError(err: unknown, endpointId: string, unread = false, goawayRefused = false): TandemError {
  if (err instanceof TandemError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const code = e.code ?? '';
  const cause = err;
  if (isRefusedStream(err)) return refused(`${endpointId} refused the stream before processing it (HTTP/2 REFUSED_STREAM)`, cause);
  if (goawayRefused) return refused(`${endpointId} sent GOAWAY before processing the request (its stream was above the last one it took)`, cause);
  if (unread) {
    return new TandemError('TANDEM_ERR_UPSTREAM_RESET', `${endpointId} closed a reused connection without reading the request (${e.message ?? code})`, { cause, retryable: true, status: 502 });
  }
  if (isTlsHandshakeFailure(code)) {
    return new TandemError('TANDEM_ERR_UPSTREAM_CONNECT', `TLS with ${endpointId} failed: ${e.message ?? code} (${code})`, { cause, retryable: true, status: 502 });
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
 * True when a failed exchange provably never reached the endpoint's application although it
 * went out: its connection had served an earlier exchange (it was reused), not a byte of
 * response came back, and the endpoint reset the connection — before or instead of a FIN.
 *
 * What undici reports when the endpoint closes a kept-alive connection (measured with undici
 * 7.30 on Linux 127.0.0.1, raw `net` servers and nginx 1.22; docs/availability.md):
 *
 * | the endpoint…                                              | undici reports                          |
 * |------------------------------------------------------------|-----------------------------------------|
 * | closed the idle connection well before we reused it        | nothing: undici read the FIN and dropped the socket, or caught it in its check before reuse; the request goes out on another |
 * | closed it (idle timer) with our request already unread in its buffer | `ECONNRESET` (a reset, no FIN)  |
 * | was killed (SIGKILL) with our request unread               | `ECONNRESET`                            |
 * | closed it (FIN) just as our request went out (nginx's keepalive_timeout race) | `UND_ERR_SOCKET` "other side closed"; the kernel took the endpoint's reset for our data too (`resetAtEnd`) |
 * | read the request, then closed without answering, or exited | `UND_ERR_SOCKET` "other side closed"; FIN only, no reset |
 *
 * A reset is what a TCP peer sends when data arrives at a socket it has closed, or when it closes
 * one with data still unread: either way its application did not read our request. A FIN alone
 * comes from an endpoint that may have read it: a POST ended that way is not sent again. undici
 * reports both FIN cases alike, so the connection ledger looks, when the FIN is read, whether a
 * reset came too (connection.ts). Go's transport resends a non-idempotent request only when none
 * of it was written; this goes further on the evidence of the reset. Only on a reused connection
 * (as Go): a reset of a first request on a new connection is also what an endpoint that rejects
 * every request does, and resending there would send each POST twice to it.
 *
 * Residual risk: an endpoint that reads part of a request (headers, part of a large body), acts
 * on it and then closes with the rest unread or still arriving also resets; and one that closes
 * abortively on purpose (SO_LINGER 0) after reading a request looks like one that never read it.
 * The first is rare for handlers that read the whole body before acting; the second is a server
 * fault. Over a network, the reset for our data may come an RTT after the FIN that undici acts on
 * at once: then nothing is proven, and a POST fails as before (safe, not repaired).
 */
export function unreadOnReuse(err: unknown, connection: ConnectionLedger | undefined, readAtStart: number): boolean {
  if (!nothingReadSince(connection, readAtStart)) return false;
  const code = (err as { code?: string }).code ?? '';
  return resetByPeer(code) || (code === 'UND_ERR_SOCKET' && connection!.resetAtEnd);
}

function resetByPeer(code: string): boolean {
  return code === 'ECONNRESET' || code === 'EPIPE';
}

/**
 * The endpoint closed a reused connection without reading the request (classifyUpstreamError
 * with `unreadOnReuse`). Not the endpoint's failure: it closed an idle connection as it may.
 */
export function isStaleConnection(error: TandemError): boolean {
  return error.code === 'TANDEM_ERR_UPSTREAM_RESET' && error.retryable && !REFUSED.has(error);
}

/** The errors of refused streams (refused), told from stale connections, which share their code. */
const REFUSED = new WeakSet<TandemError>();

function refused(message: string, cause: unknown): TandemError {
  const error = new TandemError('TANDEM_ERR_UPSTREAM_RESET', message, { cause, retryable: true, status: 502 });
  REFUSED.add(error);
  return error;
}

/**
 * An HTTP/2 endpoint did not process the request: it refused its stream (REFUSED_STREAM), or its
 * GOAWAY's last stream id was below the stream's (connection.ts, refusedByGoaway).
 */
export function isRefused(error: TandemError): boolean {
  return REFUSED.has(error);
}

/**
 * An HTTP/2 endpoint reset the request's stream with REFUSED_STREAM: by RFC 9113 §8.7 it did
 * no processing of it, so any method may go again — elsewhere: an endpoint refuses streams
 * when it is overloaded, or once it sent GOAWAY (nghttp2 closes the streams above the GOAWAY's
 * last stream id this way). What undici 7.30 reports, measured (test/upstream-tls.test.ts):
 *
 * | the endpoint…                                          | undici reports                                   |
 * |--------------------------------------------------------|--------------------------------------------------|
 * | resets the stream with REFUSED_STREAM                   | Node's `ERR_HTTP2_STREAM_ERROR` "Stream closed with error code NGHTTP2_REFUSED_STREAM" |
 * | sends GOAWAY (any last stream id), streams in flight    | `UND_ERR_SOCKET` 'HTTP/2: "GOAWAY" frame received with code N' for every one of them, those the endpoint had accepted too: undici destroys the connection on GOAWAY |
 * | resets it with another code (INTERNAL_ERROR, CANCEL …)  | `ERR_HTTP2_STREAM_ERROR` with that code, or a stream closed before the response |
 *
 * So undici's report of a GOAWAY does not say which streams went unprocessed: the connection's
 * ledger notes the GOAWAY's last stream id and each exchange's stream id (connection.ts), and a
 * stream above it is refused too (classifyUpstreamError's `goawayRefused`); one at or below it
 * may have been processed, and is a reset after sending (only idempotent methods go again).
 */
export function isRefusedStream(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  return e?.code === 'ERR_HTTP2_STREAM_ERROR' && (e.message ?? '').includes('NGHTTP2_REFUSED_STREAM');
}

/** The certificate checks of Node's TLS client (tls.connect), by the codes its errors carry. */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED',
  'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The TLS handshake failed: the endpoint's certificate did not pass our checks, or the endpoint
 * refused ours (an alert: with TLS 1.3 it arrives after the client has finished its side of the
 * handshake, so undici may already have written the request — into a connection whose server
 * never completed it), or it does not speak TLS at all. In every case its application never
 * read the request: a connect failure, retryable as one, and counted against the endpoint.
 */
function isTlsHandshakeFailure(code: string): boolean {
  return CERTIFICATE_CODES.has(code) || /^ERR_SSL_(SSLV3|TLSV1|TLSV13)_ALERT_/.test(code) || code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG';
}
