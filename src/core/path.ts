/**
 * The request path as routed and forwarded. Routing on the raw path let `/x/../admin`,
 * `/%2e%2e/admin` or `//admin` reach the service of `/` while the endpoint behind it resolved them
 * to `/admin`; with stripPrefix, `/api/../admin` left the api service a path that climbs out of
 * it. So the path is normalized once, before routing, and the normalized path is what goes on:
 *
 * - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded, every other
 *   escape is kept with upper-case hex (RFC 3986 §6.2.2.1–2); `%2F` stays encoded and is no
 *   separator;
 * - `.` and `..` segments are removed (§5.2.4), `%2e` spelt ones included, since they are
 *   decoded first; a `..` with nothing left to remove is refused, as nginx does, rather than
 *   clamped to the root: no browser or HTTP library sends one;
 * - runs of `/` are merged;
 * - the query string is left as it came.
 *
 * Refused: a malformed escape (`%zz`, a lone `%`) and a fragment (`#`), which is never part of a
 * request target (RFC 9112 §3.2) and which endpoints treat in different ways.
 */

/** Why a path was refused; the message is sent to the client. */
export interface PathProblem {
  readonly problem: string;
}

export const MALFORMED_ESCAPE: PathProblem = Object.freeze({ problem: 'the path holds a malformed percent-escape' });
export const ABOVE_ROOT: PathProblem = Object.freeze({ problem: 'the path climbs above the root with ".."' });
export const FRAGMENT: PathProblem = Object.freeze({ problem: 'the request target holds a fragment ("#")' });

const SLASH = 47;
const PERCENT = 37;
const HASH = 35;

/**
 * `target` (origin-form: starts with "/") normalized, or why it is refused. The common path —
 * no `%`, no `#`, no `//`, no dot segment — costs one regular-expression scan (irregexp's
 * native code beats a charCodeAt loop here by about 2×) and returns `target` itself.
 */
export function normalizePath(target: string): string | PathProblem {
  if (!NEEDS_WORK.test(target) && target.indexOf('#') < 0) return target;
  return rebuild(target);
}

/**
 * Matches when the path part (before "?") holds a "%", a "//", or a "." or ".." segment. Lazy
 * and anchored: it gives up at the first "?", so the query is never looked into.
 */
const NEEDS_WORK = /^[^?%]*?(?:%|\/\/|\/\.\.?(?=[/?]|$))/;

/** The slow path: decodes, then resolves segments into a new string. */
function rebuild(target: string): string | PathProblem {
  let end = target.indexOf('?');
  if (end < 0) end = target.length;
  else if (target.indexOf('#', end) >= 0) return FRAGMENT;
  const segments: string[] = [];
  let segment = '';
  let trailingSlash = false;
  for (let i = 1; i <= end; i++) {
    const c = i < end ? target.charCodeAt(i) : SLASH;
    if (c === SLASH) {
      const last = i === end;
      trailingSlash = last && (segment === '' || segment === '.' || segment === '..');
      if (segment === '..') {
        if (segments.length === 0) return ABOVE_ROOT;
        segments.pop();
      } else if (segment !== '' && segment !== '.') {
        segments.push(segment);
      }
      segment = '';
      continue;
    }
    if (c === HASH) return FRAGMENT;
    if (c !== PERCENT) {
      segment += target[i];
      continue;
    }
    const hi = i + 2 < end ? hexValue(target.charCodeAt(i + 1)) : -1;
    const lo = hi < 0 ? -1 : hexValue(target.charCodeAt(i + 2));
    if (lo < 0) return MALFORMED_ESCAPE;
    const byte = hi * 16 + lo;
    segment += UNRESERVED[byte] === 1 ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
    i += 2;
  }
  let path = `/${segments.join('/')}`;
  if (trailingSlash && segments.length > 0) path += '/';
  return end === target.length ? path : path + target.slice(end);
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/** RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~", indexed by byte. */
const UNRESERVED = (() => {
  const table = new Uint8Array(256);
  for (let c = 0; c < 128; c++) {
    const ch = String.fromCharCode(c);
    if (/[A-Za-z0-9\-._~]/.test(ch)) table[c] = 1;
  }
  return table;
})();

export function isPathProblem(value: string | PathProblem): value is PathProblem {
  return typeof value !== 'string';
}
