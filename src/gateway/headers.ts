import { randomUUID } from 'node:crypto';

/**
 * Header hygiene for the proxy step. Runs before anything else sees the request: hop-by-hop
 * headers (RFC 9110 §7.6.1, plus those named in Connection) never cross the gateway, and
 * X-Forwarded-* / Forwarded from an untrusted peer are replaced, not believed.
 */

/** Hop-by-hop request headers, and `expect` (the gateway answers 100-continue itself). */
const REQUEST_DROP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer',
  'proxy-authorization', 'proxy-authenticate', 'expect', 'http2-settings',
]);

/** Hop-by-hop response headers. */
const RESPONSE_DROP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate',
]);

/** Forwarding headers that only a trusted proxy may set. */
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-real-ip']);

/** What the proxy learned while rewriting the request headers. */
export interface RequestFacts {
  headers: string[];
  host: string | undefined;
  requestId: string;
  contentLength: string | undefined;
  chunked: boolean;
  /** Cookie header values, for cookie hashing. */
  cookie: string | undefined;
}

/**
 * Builds the upstream header list from the client's raw headers in one pass.
 * `peerIp` is the client's address; `trusted` says whether its forwarding headers are kept.
 */
export function rewriteRequestHeaders(raw: readonly string[], peerIp: string, trusted: boolean, proto: string, keepUpgrade = false): RequestFacts {
  const out: string[] = [];
  let host: string | undefined;
  let requestId: string | undefined;
  let contentLength: string | undefined;
  let chunked = false;
  let cookie: string | undefined;
  let connection: string | undefined;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (REQUEST_DROP.has(lower)) {
      if (lower === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
      else if (lower === 'transfer-encoding') chunked = true;
      else if (lower === 'te' && value.trim().toLowerCase() === 'trailers') out.push(name, value);
      else if (keepUpgrade && lower === 'upgrade') out.push(name, value);
      continue;
    }
    if (FORWARDING.has(lower)) {
      if (!trusted) continue;
      if (lower === 'x-forwarded-for') { xff = xff === undefined ? value : `${xff}, ${value}`; continue; }
      if (lower === 'x-forwarded-proto') { xfProto ??= value; continue; }
      if (lower === 'x-forwarded-host') { xfHost ??= value; continue; }
      out.push(name, value);
      continue;
    }
    switch (lower) {
      case 'host': host = value; break;
      case 'x-request-id': requestId = value; break;
      case 'content-length': contentLength = value; break;
      case 'cookie': cookie = cookie === undefined ? value : `${cookie}; ${value}`; break;
    }
    out.push(name, value);
  }
  const headers = connection === undefined ? out : dropConnectionTokens(out, connection);
  headers.push('x-forwarded-for', xff === undefined ? peerIp : `${xff}, ${peerIp}`);
  headers.push('x-forwarded-proto', xfProto ?? proto);
  if (xfHost !== undefined || host !== undefined) headers.push('x-forwarded-host', xfHost ?? host!);
  if (requestId === undefined) {
    requestId = randomUUID();
    headers.push('x-request-id', requestId);
  }
  return { headers, host, requestId, contentLength, chunked, cookie };
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
 */
export function rewriteResponseHeaders(raw: readonly Buffer[], keepUpgrade = false): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    const value = raw[i + 1]!.toString('latin1');
    const lower = name.toLowerCase();
    if (RESPONSE_DROP.has(lower)) {
      if (lower === 'connection') connection = connection === undefined ? value : `${connection}, ${value}`;
      if (keepUpgrade && (lower === 'upgrade' || lower === 'connection')) out.push(name, value);
      continue;
    }
    out.push(name, value);
  }
  return connection === undefined || keepUpgrade ? out : dropConnectionTokens(out, connection);
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
