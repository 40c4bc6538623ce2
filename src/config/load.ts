import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import { validateConfig } from './validate.js';
import { ConfigError, type ConfigProblem } from './problems.js';
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
  return validateConfig(parseConfigText(text, file), file);
}
