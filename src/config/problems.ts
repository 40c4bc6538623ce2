import { TandemError } from '../core/errors.js';

/** One thing wrong with a config, at a path such as `services.shop.retires` or `routes[0].service`. */
export interface ConfigProblem {
  path: string;
  message: string;
  /** Where in the file (1-based), when the file was read and the path found in it. */
  line?: number;
  column?: number;
}

export function formatProblem(p: ConfigProblem): string {
  const at = p.line === undefined ? '' : ` (line ${p.line}, column ${p.column ?? 1})`;
  return p.path ? `${p.path}: ${p.message}${at}` : `${p.message}${at}`;
}

/** Raised with every problem found, never just the first. */
export class ConfigError extends TandemError {
  readonly problems: readonly ConfigProblem[];
  readonly file: string | undefined;

  constructor(problems: readonly ConfigProblem[], file?: string) {
    const where = file ? ` in ${file}` : '';
    const noun = problems.length === 1 ? 'problem' : 'problems';
    super('TANDEM_ERR_CONFIG', `${problems.length} config ${noun}${where}:\n${problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
    this.file = file;
  }
}

/** `/services/shop/endpoints/0` → `services.shop.endpoints[0]` */
export function pointerToPath(pointer: string): string {
  if (!pointer) return '';
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/** `services.shop.endpoints[0]` → ['services', 'shop', 'endpoints', 0]; undefined when it is not a path. */
export function pathSegments(path: string): Array<string | number> | undefined {
  const out: Array<string | number> = [];
  const re = /(?:^|\.)([A-Za-z_$][\w$-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/y;
  let at = 0;
  while (at < path.length) {
    re.lastIndex = at;
    const m = re.exec(path);
    if (!m) return undefined;
    out.push(m[1] ?? (m[2] !== undefined ? Number(m[2]) : JSON.parse(m[3]!) as string));
    at = re.lastIndex;
  }
  return out.length > 0 ? out : undefined;
}

export function joinPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base ? `${base}.${key}` : key;
}
