import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './helpers/gateway.js';

/** Every entry of package.json's exports map resolves (through the package's own name) and exports something. */
test('the exports map: every subpath loads and has its types file', async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; exports: Record<string, string | { types: string; default: string }> };
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (typeof target === 'string') continue; // ./package.json
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`;
    const mod = (await import(specifier)) as Record<string, unknown>;
    assert.ok(Object.keys(mod).length > 0, `${specifier} exports nothing`);
    assert.doesNotThrow(() => readFileSync(join(ROOT, target.types)), `${specifier}: ${target.types} is missing`);
  }
  const node = (await import(`${pkg.name}/node`)) as Record<string, unknown>;
  assert.equal(typeof node.serve, 'function', 'tandem/node exports serve');
  const client = (await import(`${pkg.name}/client`)) as Record<string, unknown>;
  assert.equal(typeof client.createClient, 'function', 'tandem/client exports createClient');
  const discovery = (await import(`${pkg.name}/discovery`)) as Record<string, unknown>;
  for (const name of ['EmbeddedRegistry', 'HttpRegistry', 'StaticRegistry']) assert.equal(typeof discovery[name], 'function', `tandem/discovery exports ${name}`);
  const observe = (await import(`${pkg.name}/observe`)) as Record<string, unknown>;
  for (const name of ['METRICS', 'metricsRegistry', 'eventCounters', 'traceHeaders', 'continueTrace', 'currentTrace', 'createLogger']) assert.ok(name in observe, `tandem/observe exports ${name}`);
  const leadPart = (await import(`${pkg.name}/lead`)) as Record<string, unknown>;
  for (const name of ['lead', 'postgresLeaseStore', 'MemoryLeaseStore', 'etcdLeaseStore']) assert.equal(typeof leadPart[name], 'function', `tandem/lead exports ${name}`);
  const root = (await import(pkg.name)) as Record<string, unknown>;
  for (const name of ['Gateway', 'Upstream', 'TandemError', 'loadConfigFile', 'validateConfig', 'createBalancer', 'VERSION', 'HttpRegistry', 'EmbeddedRegistry', 'serve']) {
    assert.ok(name in root, `tandem does not export ${name}`);
  }
  const events = (await import(`${pkg.name}/events`)) as Record<string, unknown>;
  for (const name of ['MemoryBus', 'NatsBus', 'RabbitMqBus', 'MemoryInbox', 'RedisInbox', 'PostgresInbox', 'PostgresOutbox', 'EVENTS_DEFAULTS', 'registerEventMetrics']) {
    assert.ok(name in events, `tandem/events does not export ${name}`);
  }
});

/**
 * An application that uses tandem without a broker or store client must still type-check with
 * `skipLibCheck: false`: no published declaration may import an optional peer's types (tandem
 * declares the few shapes it needs, e.g. `PgPoolLike`, `RedisLike`).
 */
test('the published declarations import no optional peer dependency', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { peerDependenciesMeta: Record<string, { optional?: boolean }> };
  const optional = Object.entries(pkg.peerDependenciesMeta).filter(([, m]) => m.optional).map(([name]) => name);
  const imports = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g;
  const offenders: string[] = [];
  for (const file of walk(join(ROOT, 'dist', 'src')).filter((f) => f.endsWith('.d.ts'))) {
    const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    for (const [, specifier] of text.matchAll(imports)) {
      if (optional.some((p) => specifier === p || specifier!.startsWith(`${p}/`))) offenders.push(`${relative(ROOT, file)}: ${specifier}`);
    }
  }
  assert.ok(optional.length >= 5, 'package.json names the optional peers');
  assert.deepEqual(offenders, []);
});

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}
