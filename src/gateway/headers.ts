import { randomUUID } from 'node:crypto';
import { H, connectionNamesNoHeader, headerKind } from './header-names.js';

/**
 * Header hygiene for the proxy step. Runs before anything else sees the request: hop-by-hop
 * headers (RFC 9110 §7.6.1, plus those named in Connection) never cross the gateway, and
 * X-Forwarded-* / Forwarded from an untrusted peer are replaced, not believed.
 */

/** What the proxy learned while rewriting the request headers. */
export interface RequestFacts {
  headers: string[];
  /** The client's Host header (the first, when it sent more than one). */
  host: string | undefined;
  /** Host header lines the client sent: more than one is refused (RFC 9110 §7.2). */
  hostLines: number;
  requestId: string;
  contentLength: string | undefined;
  chunked: boolean;
  /** Cookie header values, for cookie hashing. */
  cookie: string | undefined;
  /** The client's traceparent (dropped from `headers`: the caller adds the gateway's own). */
  traceparent: string | undefined;
}

/**
 * Builds the upstream header list from the client's raw headers in one pass.
 * `peerIp` is the client's address; `trusted` says whether its forwarding headers are kept.
 * `authority` is the host of an absolute-form target: it is forwarded as Host instead of the
 * client's Host header (RFC 9112 §3.2.2), so the endpoint sees the authority the request was
 * routed by.
 */
export function rewriteRequestHeaders(raw: readonly string[], peerIp: string, trusted: boolean, proto: string, keepUpgrade = false, authority?: string): RequestFacts {
  const out: string[] = [];
  let host: string | undefined;
  let hostLines = 0;
  let requestId: string | undefined;
  let contentLength: string | undefined;
  let chunked = false;
  let cookie: string | undefined;
  let traceparent: string | undefined;
  let connection: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    switch (headerKind(name)) {
      case H.OTHER: out.push(name, value); continue;
      case H.CONNECTION: connection = connection === undefined ? value : `${connection}, ${value}`; continue;
      case H.TRANSFER_ENCODING: chunked = true; continue;
      case H.TE: if (value.trim().toLowerCase() === 'trailers') out.push(name, value); continue;
      case H.UPGRADE: if (keepUpgrade) out.push(name, value); continue;
      case H.KEEP_ALIVE: case H.PROXY_CONNECTION: case H.TRAILER: case H.PROXY_AUTHORIZATION:
      case H.PROXY_AUTHENTICATE: case H.EXPECT: case H.HTTP2_SETTINGS: case H.X_TANDEM_TIMEOUT_MS:
        continue;
      case H.X_FORWARDED_FOR: if (trusted) xff = xff === undefined ? value : `${xff}, ${value}`; continue;
      case H.X_FORWARDED_PROTO: if (trusted) xfProto ??= value; continue;
      case H.X_FORWARDED_HOST: if (trusted) xfHost ??= value; continue;
      case H.FORWARDED: case H.X_REAL_IP: if (trusted) out.push(name, value); continue;
      case H.TRACEPARENT: traceparent ??= value; continue;
      case H.HOST:
        hostLines++;
        host ??= value;
        if (authority !== undefined) {
          if (hostLines === 1) out.push(name, authority);
          continue;
        }
        break;
      case H.X_REQUEST_ID: requestId = value; break;
      case H.CONTENT_LENGTH: contentLength = value; break;
      case H.COOKIE: cookie = cookie === undefined ? value : `${cookie}; ${value}`; break;
    }
    out.push(name, value);
  }
  if (authority !== undefined && hostLines === 0) out.push('host', authority);
  const headers = connection === undefined || connectionNamesNoHeader(connection) ? out : dropConnectionTokens(out, connection);
  headers.push('x-forwarded-for', xff === undefined ? peerIp : `${xff}, ${peerIp}`);
  headers.push('x-forwarded-proto', xfProto ?? proto);
  const forwardedHost = xfHost ?? authority ?? host;
  if (forwardedHost !== undefined) headers.push('x-forwarded-host', forwardedHost);
  if (requestId === undefined) {
    requestId = randomUUID();
    headers.push('x-request-id', requestId);
  }
  return { headers, host, hostLines, requestId, contentLength, chunked, cookie, traceparent };
}

/** Removes the headers a Connection header names (they are hop-by-hop for this hop). */
function dropConnectionTokens(headers: string[], connection: string): string[] {
  const named = new Set<string>();
  for (const token of connection.split(',')) {
    const t = token.trim().toLowerCase();
    if (t && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade') named.add(t);
  }
  if (named.size === 0) return headers;
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase();
    // A Connection header may not strip the gateway's own forwarding facts or the request id.
    if (named.has(lower) && lower !== 'x-request-id' && lower !== 'host') continue;
    out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/**
 * Upstream response headers (undici gives raw Buffers) → a flat string list for writeHead,
 * without hop-by-hop headers and those named in the upstream's Connection header.
 * `noContent` (a 204) drops Content-Length too: RFC 9110 §8.6 forbids it there.
 */
export function rewriteResponseHeaders(raw: readonly Buffer[], keepUpgrade = false, noContent = false): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const value = raw[i + 1]!.toString('latin1');
    switch (headerKind(name)) {
      case H.CONNECTION:
        connection = connection === undefined ? value : `${connection}, ${value}`;
        if (keepUpgrade) out.push(name, value);
        continue;
      case H.UPGRADE:
        if (keepUpgrade) out.push(name, value);
        continue;
      case H.KEEP_ALIVE: case H.PROXY_CONNECTION: case H.TRANSFER_ENCODING: case H.TRAILER: case H.PROXY_AUTHENTICATE:
        continue;
      case H.CONTENT_LENGTH:
        if (!noContent) out.push(name, value);
        continue;
      default:
        out.push(name, value);
    }
  }
  return connection === undefined || keepUpgrade || connectionNamesNoHeader(connection) ? out : dropConnectionTokens(out, connection);
}

/** The client's IP without the IPv4-mapped IPv6 prefix. */
export function clientIp(remoteAddress: string | undefined): string {
  if (!remoteAddress) return 'unknown';
  return remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
}

/** The value of one cookie in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
