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
