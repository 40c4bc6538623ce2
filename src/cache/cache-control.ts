/** Directives of one Cache-Control header (RFC 9111 §5.2), names lower-cased; a valueless directive maps to ''. */
export type Directives = ReadonlyMap<string, string>;

const EMPTY: Directives = new Map();

/** Parses `max-age=60, public, no-cache="set-cookie"`; unknown directives are kept, malformed parts skipped. */
export function parseCacheControl(value: string | undefined): Directives {
  if (value === undefined || value === '') return EMPTY;
  const out = new Map<string, string>();
  for (const part of splitDirectives(value)) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name === '') continue;
    let arg = eq < 0 ? '' : part.slice(eq + 1).trim();
    if (arg.startsWith('"') && arg.endsWith('"') && arg.length >= 2) arg = arg.slice(1, -1);
    // The first occurrence wins: a duplicate is more likely an appended default than the intent.
    if (!out.has(name)) out.set(name, arg);
  }
  return out;
}

/** Splits at commas outside quoted strings (`no-cache="a, b"` is one directive). */
function splitDirectives(value: string): string[] {
  const parts: string[] = [];
  let quoted = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 34 /* " */) quoted = !quoted;
    else if (c === 44 /* , */ && !quoted) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/**
 * A delta-seconds directive in milliseconds; undefined when absent or not a number. RFC 9111
 * §1.2.2: a value too large to represent is taken as the largest one (2^31 s).
 */
export function seconds(directives: Directives, name: string): number | undefined {
  const v = directives.get(name);
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Math.min(Number(v), 2 ** 31) * 1000;
}
