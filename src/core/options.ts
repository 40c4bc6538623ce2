import { TandemError } from './errors.js';
import { closest } from './suggest.js';

/** One thing wrong with an options object, at a path such as `options.servcie` or `options.backoff.inital`. */
export interface OptionProblem {
  path: string;
  message: string;
}

/** Checks one option's value; pushes what is wrong (nothing when it is fine). */
export type Rule = (value: unknown, path: string, problems: OptionProblem[]) => void;

/** Every key an options object accepts, with its rule. */
export type OptionSpec = Readonly<Record<string, Rule>>;

/**
 * Raised with every problem of an options object at once, like the config file's ConfigError:
 * each with its path and, for a misspelt key, the key meant.
 */
export class OptionsError extends TandemError {
  readonly problems: readonly OptionProblem[];

  constructor(where: string, problems: readonly OptionProblem[]) {
    const noun = problems.length === 1 ? 'problem' : 'problems';
    super('TANDEM_ERR_INVALID_ARGUMENT', `${problems.length} ${noun} in the options of ${where}:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join('\n')}`);
    this.name = 'OptionsError';
    this.problems = problems;
  }
}

/** Freezes a defaults object, its values typed as their kind (`number`, not the literal). */
export function defaults<T extends object>(values: T): Readonly<T> {
  return Object.freeze(values);
}

/**
 * Validates `input` against `spec` once and returns `base` (the defaults) overlaid with it,
 * frozen (one level: a nested object or array is the caller's).
 * An option given as `undefined` takes its default, like one left out. `where` names the
 * call (`serve()`, `createClient("orders")`); every path starts at `options`. `relate` checks
 * what involves several keys (a minimum below its maximum).
 */
export function parseOptions<T extends object>(where: string, input: unknown, spec: OptionSpec, base: Partial<T> = {}, required: readonly string[] = [], relate?: (parsed: T) => OptionProblem[]): Readonly<T> {
  const problems: OptionProblem[] = [];
  const given = checkObject(input, spec, 'options', problems);
  const isObject = typeof input === 'object' && input !== null && !Array.isArray(input);
  for (const key of isObject || input === undefined ? required : []) {
    if (given[key] === undefined && !problems.some((p) => p.path === `options.${key}`)) problems.push({ path: `options.${key}`, message: 'required' });
  }
  if (problems.length > 0) throw new OptionsError(where, problems);
  const parsed = Object.freeze({ ...base, ...given }) as T;
  // Rules between keys run once each key is valid on its own.
  const related = relate?.(parsed) ?? [];
  if (related.length > 0) throw new OptionsError(where, related);
  return parsed;
}

function checkObject(input: unknown, spec: OptionSpec, path: string, problems: OptionProblem[]): Record<string, unknown> {
  if (input === undefined) return {};
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    problems.push({ path, message: `expected an options object, got ${kindOf(input)}` });
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input as Record<string, unknown>)) {
    const at = `${path}.${key}`;
    const rule = Object.hasOwn(spec, key) ? spec[key] : undefined;
    if (rule === undefined) {
      const hint = closest(key, Object.keys(spec));
      problems.push({ path: at, message: `unknown key${hint ? ` — did you mean ${hint}?` : ` (known keys: ${Object.keys(spec).join(', ')})`}` });
      continue;
    }
    if (value === undefined) continue;
    rule(value, at, problems);
    out[key] = value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

export function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  return typeof v === 'object' ? 'an object' : typeof v;
}

const rule = (ok: (v: unknown) => boolean, expected: string): Rule => (value, path, problems) => {
  if (!ok(value)) problems.push({ path, message: `expected ${expected}, got ${kindOf(value)}` });
};

/** A number from `min` to `max` (inclusive); `integer` for counts. `unit` is said in the message. */
export function number(min: number, max = Infinity, unit = '', integer = false): Rule {
  const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
  const what = `${integer ? 'an integer' : 'a number'}${unit ? ` of ${unit}` : ''} ${range}`;
  return rule((v) => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v)), what);
}

export const integer = (min: number, max = Infinity, unit = ''): Rule => number(min, max, unit, true);
export const duration = (min = 1, max = Infinity): Rule => number(min, max, 'milliseconds', true);
export const boolean: Rule = rule((v) => typeof v === 'boolean', 'true or false');
export const func: Rule = rule((v) => typeof v === 'function', 'a function');
export const string: Rule = rule((v) => typeof v === 'string' && v.length > 0, 'a non-empty string');
/** A string matching `re`; `what` says what is allowed. */
export const pattern = (re: RegExp, what: string): Rule => rule((v) => typeof v === 'string' && re.test(v), what);
export const anyString: Rule = rule((v) => typeof v === 'string', 'a string');
/** One of a few strings. */
export const oneOf = (choices: readonly string[]): Rule => rule((v) => typeof v === 'string' && choices.includes(v), `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`);
/** An object with these methods (a logger, a client): checked by shape, any class. */
export function methods(...names: string[]): Rule {
  return rule((v) => typeof v === 'object' && v !== null && names.every((n) => typeof (v as Record<string, unknown>)[n] === 'function'), `an object with ${names.join(' and ')} methods`);
}
/** An object whose methods tandem calls (a client, a logger, a registry adapter). */
export const object: Rule = rule((v) => typeof v === 'object' && v !== null, 'an object');
export const plainObject: Rule = rule(isPlainObject, 'a plain object');
export const strings: Rule = rule((v) => Array.isArray(v) && v.every((s) => typeof s === 'string' && s.length > 0), 'an array of non-empty strings');
export const stringOrStrings: Rule = rule((v) => (typeof v === 'string' && v.length > 0) || (Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0)), 'a non-empty string or an array of them');
/** A plain object of named values, each checked by `each`. */
export function record(each: Rule, what: string): Rule {
  return (value, path, problems) => {
    if (!isPlainObject(value)) {
      problems.push({ path, message: `expected ${what}, got ${kindOf(value)}` });
      return;
    }
    for (const [k, v] of Object.entries(value)) each(v, `${path}.${k}`, problems);
  };
}
/** Either rule may accept the value; the message is the second's. */
export function either(a: Rule, b: Rule): Rule {
  return (value, path, problems) => {
    const mine: OptionProblem[] = [];
    a(value, path, mine);
    if (mine.length === 0) return;
    b(value, path, problems);
  };
}
export function arrayOf(each: Rule, what: string): Rule {
  return (value, path, problems) => {
    if (!Array.isArray(value)) {
      problems.push({ path, message: `expected ${what}, got ${kindOf(value)}` });
      return;
    }
    value.forEach((v, i) => each(v, `${path}[${i}]`, problems));
  };
}
/** A nested options object with its own keys (unknown ones rejected with a hint too). */
export function nested(spec: OptionSpec): Rule {
  return (value, path, problems) => { checkObject(value, spec, path, problems); };
}
