import { isIPv6 } from 'node:net';

/**
 * The authority a request names: its Host header, or the host of an absolute-form target. The
 * gateway routes on it and forwards it, so it must be one value in one syntax (RFC 9110 §7.2:
 * a request with two Host lines or an invalid one gets 400): RFC 3986's `host [ ":" port ]` —
 * a reg-name, an IPv4 address or a bracketed IPv6 address — and nothing else: no userinfo
 * (`user@host`), no path, no blanks or control characters, and not empty.
 */
export function isValidAuthority(value: string): boolean {
  if (!AUTHORITY.test(value)) return false;
  let portAt: number;
  if (value.charCodeAt(0) === 91 /* [ */) {
    const close = value.indexOf(']');
    if (!isIPv6(value.slice(1, close))) return false;
    portAt = close + 1 < value.length ? close + 1 : -1;
  } else {
    portAt = value.indexOf(':');
  }
  // Five digits may still be more than 16 bits hold.
  return portAt < 0 || value.length - portAt <= 5 || Number(value.slice(portAt + 1)) <= 65535;
}

/**
 * RFC 3986 §3.2.2–3.2.3: a reg-name (unreserved, sub-delims, pct-encoded; IPv4 addresses are
 * reg-names too) or a bracketed IPv6 address, then an optional port of up to five digits.
 * A regular expression: irregexp's native code is faster than a charCodeAt loop here.
 */
const AUTHORITY = /^(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;

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
