import { isIPv6 } from 'node:net';

/**
 * The authority a request names: its Host header, or the host of an absolute-form target. The
 * gateway routes on it and forwards it, so it must be one value in one syntax (RFC 9110 §7.2:
 * a request with two Host lines or an invalid one gets 400): RFC 3986's `host [ ":" port ]` —
 * a reg-name, an IPv4 address or a bracketed IPv6 address — and nothing else: no userinfo
 * (`user@host`), no path, no blanks or control characters, and not empty.
 */
export function isValidAuthority(value: string): boolean {
  const length = value.length;
  if (length === 0) return false;
  let hostEnd: number;
  if (value.charCodeAt(0) === 91 /* [ */) {
    const close = value.indexOf(']');
    if (close < 0 || !isIPv6(value.slice(1, close))) return false;
    hostEnd = close + 1;
  } else {
    hostEnd = 0;
    while (hostEnd < length) {
      const c = value.charCodeAt(hostEnd);
      if (c === 58 /* : */) break;
      if (c === 37 /* % */) {
        if (!isHex(value.charCodeAt(hostEnd + 1)) || !isHex(value.charCodeAt(hostEnd + 2))) return false;
        hostEnd += 3;
        continue;
      }
      if (c > 127 || REG_NAME[c] !== 1) return false;
      hostEnd++;
    }
    if (hostEnd === 0) return false;
  }
  if (hostEnd === length) return true;
  if (value.charCodeAt(hostEnd) !== 58 /* : */) return false;
  // port = *DIGIT (RFC 3986 §3.2.3), at most what fits in 16 bits
  const digits = length - hostEnd - 1;
  if (digits > 5) return false;
  let port = 0;
  for (let i = hostEnd + 1; i < length; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
    port = port * 10 + (c - 48);
  }
  return port <= 65535;
}

/** An absolute-form request target (RFC 9112 §3.2.2) split into its authority and the rest. */
export interface AbsoluteTarget {
  authority: string;
  /** Path and query, "/" when the URL has no path. */
  path: string;
}

/**
 * `http://host[:port]/path?query` (or https) → its parts; undefined when `target` is not an
 * absolute http(s) URL with a valid authority. Userinfo is refused (RFC 9110 §4.2.4 deprecates
 * it, and `http://trusted@evil/` reads differently to different parsers).
 */
export function splitAbsoluteTarget(target: string): AbsoluteTarget | undefined {
  const scheme = schemeLength(target);
  if (scheme === 0) return undefined;
  let end = scheme;
  while (end < target.length) {
    const c = target.charCodeAt(end);
    if (c === 47 /* / */ || c === 63 /* ? */ || c === 35 /* # */) break;
    end++;
  }
  const authority = target.slice(scheme, end);
  if (!isValidAuthority(authority)) return undefined;
  const rest = target.slice(end);
  return { authority, path: rest.charCodeAt(0) === 47 ? rest : `/${rest}` };
}

/** Length of a leading `http://` or `https://` (any case), or 0. */
function schemeLength(target: string): number {
  const lower = target.slice(0, 8).toLowerCase();
  if (lower.startsWith('http://')) return 7;
  if (lower.startsWith('https://')) return 8;
  return 0;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || ((c | 0x20) >= 97 && (c | 0x20) <= 102);
}

/** RFC 3986 reg-name characters: unreserved and sub-delims (pct-encoded handled apart), by byte. */
const REG_NAME = (() => {
  const table = new Uint8Array(128);
  for (let c = 0; c < 128; c++) {
    if (/[A-Za-z0-9\-._~!$&'()*+,;=]/.test(String.fromCharCode(c))) table[c] = 1;
  }
  return table;
})();
