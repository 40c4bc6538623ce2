import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ERROR_CATALOG, ERROR_STATUS } from '../src/core/errors.js';
import { formatDuration, formatSize } from '../src/core/units.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { CONFIG_SCHEMA } from '../src/config/schema.js';
import { ROOT } from './helpers/gateway.js';

/** Rows of every markdown table under each heading: heading → (first cell → second cell). */
function tables(markdown: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let heading = '';
  for (const line of markdown.split('\n')) {
    const h = /^#{1,3} (.*)$/.exec(line);
    if (h) {
      heading = h[1]!.trim();
      out.set(heading, new Map());
      continue;
    }
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length >= 2 && !/^-+$/.test(cells[0]!) && heading) out.get(heading)!.set(cells[0]!, cells[1]!);
  }
  return out;
}

test('docs/errors.md lists exactly the error catalog, with the same descriptions and statuses', () => {
  const markdown = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
  const rows = tables(markdown).get('Error codes')!;
  const documented = new Map([...rows].filter(([k]) => k.startsWith('`TANDEM_')).map(([k, v]) => [k.replaceAll('`', ''), v]));
  assert.deepEqual([...documented.keys()].sort(), Object.keys(ERROR_CATALOG).sort());
  for (const [code, text] of Object.entries(ERROR_CATALOG)) assert.equal(documented.get(code), text, code);
  // the third column: the statuses, the code's own first
  const statuses = new Map(markdown.split('\n').map((line) => line.split('|').slice(1, -1).map((c) => c.trim()))
    .filter((cells) => cells.length >= 3 && cells[0]!.startsWith('`TANDEM_')).map((cells) => [cells[0]!.replaceAll('`', ''), cells[2]!]));
  for (const [code, list] of Object.entries(ERROR_STATUS)) assert.equal(statuses.get(code), list.join(', '), `${code} status`);
});

test('docs/configuration.md documents every key with the default the code uses', () => {
  const doc = tables(readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8'));
  const show = (v: unknown, kind: 'duration' | 'size' | 'plain') => {
    if (v === undefined) return 'none';
    if (Array.isArray(v) || v === '') return `\`${JSON.stringify(v)}\``;
    if (typeof v === 'number' && kind === 'duration') return `\`${formatDuration(v)}\``;
    if (typeof v === 'number' && kind === 'size') return `\`${formatSize(v)}\``;
    return `\`${String(v)}\``;
  };
  const kindOf = (schema: unknown): 'duration' | 'size' | 'plain' => {
    // A setting that also takes `false` keeps its own schema under `else`.
    const s = schema as { format?: string; else?: { format?: string } } | undefined;
    const f = s?.format ?? s?.else?.format;
    return f === 'duration' ? 'duration' : f === 'size' ? 'size' : 'plain';
  };
  const props = CONFIG_SCHEMA.properties;
  const sections: Array<[string, Record<string, unknown>, Record<string, unknown>]> = [
    ['Top level', { admin: DEFAULTS.admin, trustedProxies: DEFAULTS.trustedProxies, drainTimeout: DEFAULTS.drainTimeout, peers: DEFAULTS.peers, virtualAddress: DEFAULTS.virtualAddress }, props],
    ['`listen[]`', {}, props.listen.else.items.properties],
    ['`listen[].tls`', DEFAULTS.tls, props.listen.else.items.properties.tls.properties],
    ['`listen[].tls.certificates[]`', {}, props.listen.else.items.properties.tls.properties.certificates.items.properties],
    ['`limits`', DEFAULTS.limits, props.limits.properties],
    ['`log`', DEFAULTS.log, props.log.properties],
    ['`services.<name>`', Object.fromEntries(Object.entries(DEFAULTS.service).filter(([k]) => !['weight', 'healthCheck', 'outlier', 'retry', 'hedge', 'grpc'].includes(k))), props.services.additionalProperties.properties],
    ['`services.<name>.healthCheck`', DEFAULTS.service.healthCheck, props.services.additionalProperties.properties.healthCheck.else.properties],
    ['`services.<name>.outlier`', DEFAULTS.service.outlier, props.services.additionalProperties.properties.outlier.properties],
    ['`services.<name>.retry`', Object.fromEntries(Object.entries(DEFAULTS.service.retry).filter(([k]) => k !== 'budget')), props.services.additionalProperties.properties.retry.else.properties],
    ['`services.<name>.retry.budget`', DEFAULTS.service.retry.budget, props.services.additionalProperties.properties.retry.else.properties.budget.properties],
    ['`services.<name>.hedge`', DEFAULTS.service.hedge, props.services.additionalProperties.properties.hedge.else.properties],
    ['`services.<name>.grpc`', DEFAULTS.service.grpc, props.services.additionalProperties.properties.grpc.properties],
    ['`routes[]`', DEFAULTS.route, props.routes.items.properties],
    ['`routes[].cache`', DEFAULTS.cache, props.routes.items.properties.cache.else.properties],
    ['`registry`', DEFAULTS.registry, props.registry.properties],
  ];
  for (const [heading, defaults, schema] of sections) {
    const rows = doc.get(heading);
    assert.ok(rows, `section ${heading}`);
    for (const [key, value] of Object.entries(defaults)) {
      assert.equal(rows.get(`\`${key}\``), show(value, kindOf(schema[key])), `${heading} ${key}`);
    }
    // and every key the schema accepts is documented
    for (const key of Object.keys(schema)) assert.ok(rows.has(`\`${key}\``), `${heading}: ${key} is not documented`);
  }
});
