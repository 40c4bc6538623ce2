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
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new ConfigError([{ path: '', message: `not valid JSON: ${(err as Error).message}` }], file);
    }
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems: ConfigProblem[] = doc.errors.map((e) => {
      const at = e.linePos?.[0];
      return { path: at ? `line ${at.line}, column ${at.col}` : '', message: `not valid YAML: ${e.message.split('\n')[0]}` };
    });
    throw new ConfigError(problems, file);
  }
  return doc.toJS() as unknown;
}

/** Reads, parses and validates a config file. Throws ConfigError with every problem. */
export async function loadConfigFile(file: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }], file);
  }
  return validateConfig(parseConfigText(text, file), file);
}
