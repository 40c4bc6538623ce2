// Every error tandem raises or answers with carries a code from the catalog, and the HTTP
// status the catalog gives that code: a source scan keeps uncoded throws and stray statuses out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ERROR_CATALOG, ERROR_STATUS, TandemError, type ErrorCode } from '../src/core/errors.js';
import { ROOT } from './helpers/gateway.js';

function sources(dir: string): Array<{ file: string; text: string }> {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => {
      const path = join(e.parentPath, e.name);
      return { file: relative(ROOT, path), text: readFileSync(path, 'utf8') };
    });
}

/** `file:line: text` of every match of `re` (global) in src/. */
function findInSrc(re: RegExp): Array<{ where: string; match: RegExpExecArray }> {
  const out: Array<{ where: string; match: RegExpExecArray }> = [];
  for (const { file, text } of sources(join(ROOT, 'src'))) {
    for (const match of text.matchAll(re)) {
      const line = text.slice(0, match.index).split('\n').length;
      out.push({ where: `${file}:${line}: ${match[0]}`, match });
    }
  }
  return out;
}

test('no error without a code: src/ creates no Error, TypeError, RangeError (or other built-in error) and throws no bare value', () => {
  const builtins = findInSrc(/\bnew (Error|TypeError|RangeError|SyntaxError|ReferenceError|EvalError|URIError|AggregateError)\(/g);
  assert.deepEqual(builtins.map((f) => f.where), [], 'use new TandemError(code, …) with a code from src/core/errors.ts');
  const bare = findInSrc(/\bthrow\s+['"`\d]/g);
  assert.deepEqual(bare.map((f) => f.where), [], 'throw a TandemError, not a string or number');
});

test('every status written beside a code in src/ is one the catalog gives that code', () => {
  const pairs = [
    // new TandemError('CODE', …, { …status: N })
    ...findInSrc(/new TandemError\('(TANDEM_ERR_\w+)',[^;\n]*?status: (\d{3})/g).map((f) => ({ ...f, code: f.match[1]!, status: Number(f.match[2]) })),
    // { status: N, code: 'CODE' } refusals
    ...findInSrc(/status: (\d{3}), code: '(TANDEM_ERR_\w+)'/g).map((f) => ({ ...f, code: f.match[2]!, status: Number(f.match[1]) })),
    // sendError(res, N, 'CODE', …), writeError(socket, N, 'CODE', …)
    ...findInSrc(/(?:sendError|writeError)\([\w.]+, (\d{3}), '(TANDEM_ERR_\w+)'/g).map((f) => ({ ...f, code: f.match[2]!, status: Number(f.match[1]) })),
  ];
  assert.ok(pairs.length > 20, `the scan finds the pairs (${pairs.length})`);
  const wrong = pairs.filter((p) => !(p.code in ERROR_CATALOG) || !ERROR_STATUS[p.code as ErrorCode].includes(p.status));
  assert.deepEqual(wrong.map((p) => p.where), [], 'a status the catalog does not give the code: fix the status or document it in ERROR_STATUS');
});

test('every code named in src/ is in the catalog', () => {
  const unknown = findInSrc(/'(TANDEM_ERR_\w+)'/g).filter((f) => !(f.match[1]! in ERROR_CATALOG));
  assert.deepEqual(unknown.map((f) => f.where), []);
});

test('a TandemError takes its status from the catalog; an explicit one only when the catalog lists it for the code', () => {
  assert.equal(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'gone').status, 499);
  assert.equal(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', 'bad').status, 502);
  assert.equal(new TandemError('TANDEM_ERR_REGISTRY_LIMIT', 'full', { status: 429 }).status, 429);
  assert.equal(new TandemError('TANDEM_ERR_REGISTRY_LIMIT', 'full').status, 413);
  // 500 is not one of CLIENT_ABORTED's: the catalog's wins
  assert.equal(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'gone', { status: 500 }).status, 499);
  for (const [code, statuses] of Object.entries(ERROR_STATUS)) {
    assert.ok(code in ERROR_CATALOG, code);
    for (const s of statuses) assert.ok(s >= 400 && s <= 599, `${code}: ${s}`);
  }
  assert.deepEqual(Object.keys(ERROR_STATUS).sort(), Object.keys(ERROR_CATALOG).sort());
});
