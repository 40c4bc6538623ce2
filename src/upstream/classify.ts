import { TandemError } from '../core/errors.js';

/**
 * Maps what undici or the socket reported into one of our error codes. `retryable` is true
 * only where the request certainly did not reach the application (connect failures).
 */
export function classifyUpstreamError(err: unknown, endpointId: string): TandemError {
  if (err instanceof TandemError) return err;
  const e = err as { code?: string; message?: string; name?: string };
  const code = e.code ?? '';
  const cause = err;
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
