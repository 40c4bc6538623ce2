/** Header lookups on the engine's two header shapes: the request's flat string list, a response's flat Buffer list. */

/** A request header's value (several lines joined with ", "), case-insensitively; undefined when absent. */
export function requestHeader(headers: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === name.length && headers[i]!.toLowerCase() === name) out = out === undefined ? headers[i + 1]! : `${out}, ${headers[i + 1]!}`;
  }
  return out;
}

/** Removes every line of a request header (lower-case `name`) in place. */
export function dropRequestHeader(headers: string[], name: string): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    if (headers[i]!.toLowerCase() === name) headers.splice(i, 2);
  }
}

/** A response's headers by lower-case name, lines of one name joined with ", " (set-cookie too: only its presence is read). */
export function responseHeaderMap(raw: readonly Buffer[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const had = out.get(name);
    out.set(name, had === undefined ? value : `${had}, ${value}`);
  }
  return out;
}

/**
 * Headers a stored response does not keep: hop-by-hop ones, framing (the stored body is whole:
 * it is served with its own Content-Length), and what the cache itself adds when it serves.
 */
const NOT_STORED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'trailer', 'upgrade', 'proxy-connection', 'age', 'warning', 'x-tandem-cache']);

/** The stored copy of a response's headers, with the Content-Length of its whole body. */
export function storedHeaders(raw: readonly Buffer[], bodyLength: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!NOT_STORED.has(raw[i]!.toString('latin1').toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  out.push(Buffer.from('content-length'), Buffer.from(String(bodyLength)));
  return out;
}

/**
 * A 304's headers update the stored ones (RFC 9111 §3.2): each name the 304 carries replaces
 * that name's stored lines; framing and the cache's own headers are never taken from it.
 */
export function mergeHeaders(stored: readonly Buffer[], update: readonly Buffer[]): Buffer[] {
  const replaced = new Set<string>();
  const added: Buffer[] = [];
  for (let i = 0; i + 1 < update.length; i += 2) {
    const name = update[i]!.toString('latin1').toLowerCase();
    if (NOT_STORED.has(name)) continue;
    replaced.add(name);
    added.push(update[i]!, update[i + 1]!);
  }
  const out: Buffer[] = [];
  for (let i = 0; i + 1 < stored.length; i += 2) {
    if (!replaced.has(stored[i]!.toString('latin1').toLowerCase())) out.push(stored[i]!, stored[i + 1]!);
  }
  return out.concat(added);
}

/** A request that may carry someone's identity: its answer is not shared unless the origin says `public`. */
export function hasCredentials(request: { readonly headers: readonly string[] }): boolean {
  return requestHeader(request.headers, 'authorization') !== undefined || requestHeader(request.headers, 'cookie') !== undefined;
}
