import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { isMap, isSeq, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import { validateConfig } from './validate.js';
import { ConfigError, pathSegments, type ConfigProblem } from './problems.js';
import type { GatewayConfig } from './types.js';

/** Parses config text: JSON when the file ends in .json, YAML (a superset of JSON) otherwise. */
export function parseConfigText(text: string, file = 'config'): unknown {
  if (extname(file).toLowerCase() === '.json') {
    try {
      return JSON.parse(text.replace(/^\uFEFF/, '')) as unknown;
    } catch (err) {
      // V8 says "at position N" (Node 24 adds "(line L column C)"); report line and column like YAML does.
      const message = (err as Error).message.replace(/ \(line \d+ column \d+\)$/, '');
      const pos = /at position (\d+)/.exec(message);
      const at = pos ? lineColumn(text, Number(pos[1])) : /end of JSON input/.test(message) ? lineColumn(text, text.length) : undefined;
      throw new ConfigError([{ path: at ? `line ${at.line}, column ${at.col}` : '', message: `not valid JSON: ${message}` }], file);
    }
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems: ConfigProblem[] = doc.errors.map((e) => {
      const at = e.linePos?.[0];
      // The path already says where; drop the parser's own " at line L, column C:" tail.
      const message = (e.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      return { path: at ? `line ${at.line}, column ${at.col}` : '', message: `not valid YAML: ${message}` };
    });
    throw new ConfigError(problems, file);
  }
  return doc.toJS() as unknown;
}

/** 1-based line and column of a character offset. */
function lineColumn(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, offset);
  const lastNewline = before.lastIndexOf('\n');
  return { line: before.split('\n').length, col: offset - lastNewline };
}

/** Reads, parses and validates a config file. Throws ConfigError with every problem. */
export async function loadConfigFile(file: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file (ENOENT)' : code === 'EACCES' ? 'permission denied (EACCES)' : code === 'EISDIR' ? 'it is a directory (EISDIR)' : code ?? (err as Error).message;
    throw new ConfigError([{ path: '', message: `cannot read the file: ${reason}` }], file);
  }
  const raw = parseConfigText(text, file);
  try {
    return validateConfig(raw, file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(locateProblems(text, err.problems), file);
  }
}

/**
 * Adds the line and column of each problem's path, found in yaml's own syntax tree (which
 * reads JSON too): the key a path ends in, the list item, else the deepest part that exists
 * (for a missing key, the key of the map that lacks it).
 */
export function locateProblems(text: string, problems: readonly ConfigProblem[]): ConfigProblem[] {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: false });
  if (doc.errors.length > 0) return [...problems];
  return problems.map((p) => {
    const offset = offsetOf(doc, p.path);
    if (offset === undefined) return p;
    const pos = lines.linePos(offset);
    return { ...p, line: pos.line, column: pos.col };
  });
}

function offsetOf(doc: Document, path: string): number | undefined {
  const segments = pathSegments(path);
  if (segments === undefined) return undefined;
  let node: unknown = doc.contents;
  let offset = (node as { range?: [number] } | null)?.range?.[0];
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = node.items.find((it) => (isScalar(it.key) ? String(it.key.value) : undefined) === String(seg));
      if (!pair) break;
      offset = (pair.key as { range?: [number] }).range?.[0];
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as { range?: [number] } | undefined;
      if (!item) break;
      offset = item.range?.[0];
      node = item;
    } else break;
  }
  return offset;
}
