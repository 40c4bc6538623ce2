import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { ROOT } from './helpers/gateway.js';

/**
 * The parts of src/ and which parts each may import (DESIGN.md's "Parts" table, as built): arrows
 * point down only, and no two parts may reach each other through any chain. A file directly in
 * src/ is a part of its own, named after it (index, version).
 */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  version: [],
  core: [],
  config: ['core'],
  discovery: ['core'],
  observe: ['core'],
  upstream: ['core', 'discovery'],
  cache: ['core', 'upstream'],
  gateway: ['core', 'config', 'discovery', 'upstream', 'cache', 'observe', 'version'],
  node: ['core', 'discovery', 'observe', 'version'],
  client: ['core', 'config', 'discovery', 'upstream', 'cache', 'observe'],
  lead: ['core', 'discovery'],
  events: ['core', 'observe', 'lead'],
  drill: ['core'],
  cli: ['core', 'config', 'discovery', 'upstream', 'cache', 'gateway', 'node', 'client', 'events', 'observe', 'drill', 'version'],
  index: ['core', 'config', 'discovery', 'upstream', 'cache', 'gateway', 'node', 'client', 'lead', 'events', 'observe', 'version'],
};

/**
 * Single files one part may import from another outside the table, each with its reason. Kept
 * short: each entry is a seam someone chose, not a shortcut.
 */
const FILE_EXCEPTIONS: ReadonlyArray<{ from: string; to: string; why: string }> = [
  // The config file's service → the engine's settings: the gateway and the client read the file
  // the same way through one mapping, which the gateway owns.
  { from: 'client/client.ts', to: 'gateway/upstream-settings.ts', why: 'one ServiceConfig → UpstreamSettings mapping for both faces of the engine' },
];

/**
 * Imports allowed against the table for a while, listed exactly so nothing new can hide among
 * them; an entry that no longer occurs fails the test, so the list only shrinks. (config's
 * imports of upstream and gateway were the last; they moved to core.)
 */
const PENDING: ReadonlyArray<{ from: string; to: string }> = [];

/** One import of one file: paths relative to src/, with .ts. */
export interface Edge { from: string; to: string }

const IMPORT = /(?:^|[;\s])(?:import|export)\s[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)|^import\s*['"](\.{1,2}\/[^'"]+)['"]/gm;

/** Every relative import and re-export of every .ts file under `dir` (type-only ones too: they are dependencies). */
function importsUnder(dir: string): Edge[] {
  const edges: Edge[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) {
        const from = relative(dir, full);
        for (const m of readFileSync(full, 'utf8').matchAll(IMPORT)) {
          const spec = (m[1] ?? m[2] ?? m[3])!;
          const to = normalize(join(dirname(from), spec)).replace(/\.js$/, '.ts');
          edges.push({ from, to });
        }
      }
    }
  };
  walk(dir);
  return edges;
}

/** The part a file belongs to: its top folder under src/, or its own name for a file at the top. */
export function partOf(file: string): string {
  const slash = file.indexOf('/');
  return slash < 0 ? file.replace(/\.ts$/, '') : file.slice(0, slash);
}

/** Imports that cross parts against `allowed` (an unknown part may import nothing). */
export function violations(edges: readonly Edge[], allowed: Readonly<Record<string, readonly string[]>>, exceptions: readonly Edge[] = []): Edge[] {
  return edges.filter((e) => {
    const a = partOf(e.from);
    const b = partOf(e.to);
    if (a === b || (allowed[a] ?? []).includes(b)) return false;
    return !exceptions.some((x) => x.from === e.from && x.to === e.to);
  });
}

/** Cycles between parts (each as the parts in order, the first repeated at the end). */
export function partCycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    const a = partOf(e.from);
    const b = partOf(e.to);
    if (a === b) continue;
    if (!next.has(a)) next.set(a, new Set());
    next.get(a)!.add(b);
  }
  const cycles: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (p: string): void => {
    state.set(p, 'open');
    path.push(p);
    for (const q of next.get(p) ?? []) {
      if (state.get(q) === 'open') cycles.push([...path.slice(path.indexOf(q)), q]);
      else if (!state.has(q)) visit(q);
    }
    path.pop();
    state.set(p, 'done');
  };
  for (const p of [...next.keys()].sort()) if (!state.has(p)) visit(p);
  return cycles;
}

const SRC = join(ROOT, 'src');
const show = (edges: readonly Edge[]) => edges.map((e) => `${e.from} → ${e.to}`).join('\n');

test('every import between parts of src/ points down the table', () => {
  const edges = importsUnder(SRC);
  assert.ok(edges.length > 100, `found ${edges.length} imports: is the pattern still right?`);
  const pending = (e: Edge) => PENDING.some((x) => x.from === e.from && x.to === e.to);
  const bad = violations(edges, ALLOWED, FILE_EXCEPTIONS).filter((e) => !pending(e));
  assert.equal(show(bad), '', 'imports against the layering');
  const gone = PENDING.filter((x) => !edges.some((e) => e.from === x.from && e.to === x.to));
  assert.deepEqual(gone, [], 'no longer imported: take these off PENDING');
  for (const x of FILE_EXCEPTIONS) assert.ok(edges.some((e) => e.from === x.from && e.to === x.to), `exception ${x.from} → ${x.to} is unused: take it off`);
  for (const part of new Set(edges.map((e) => partOf(e.from)))) assert.ok(part in ALLOWED, `part ${part} is missing from the table`);
});

test('no cycle between parts', () => {
  const edges = importsUnder(SRC).filter((e) => !PENDING.some((x) => x.from === e.from && x.to === e.to));
  assert.deepEqual(partCycles(edges), []);
});

test('the checks catch a wrong-way import and a cycle (a synthetic graph)', () => {
  const edges: Edge[] = [
    { from: 'upstream/upstream.ts', to: 'core/clock.ts' },
    { from: 'upstream/upstream.ts', to: 'config/types.ts' },
    { from: 'config/types.ts', to: 'upstream/balancer/balancer.ts' },
    { from: 'observe/metrics.ts', to: 'core/histogram.ts' },
    { from: 'gateway/proxy.ts', to: 'upstream/types.ts' },
    { from: 'upstream/attempt.ts', to: 'gateway/proxy.ts' },
    { from: 'upstream/balancer/hash.ts', to: 'upstream/endpoint.ts' },
  ];
  assert.deepEqual(violations(edges, ALLOWED).map((e) => `${e.from} → ${e.to}`), [
    'upstream/upstream.ts → config/types.ts',
    'config/types.ts → upstream/balancer/balancer.ts',
    'upstream/attempt.ts → gateway/proxy.ts',
  ]);
  assert.deepEqual(violations(edges, ALLOWED, [{ from: 'upstream/attempt.ts', to: 'gateway/proxy.ts' }]).length, 2);
  assert.deepEqual(partCycles(edges), [['config', 'upstream', 'config'], ['upstream', 'gateway', 'upstream']]);
  assert.deepEqual(partCycles(edges.filter((e) => !e.to.startsWith('config') && !e.to.startsWith('gateway'))), []);
  assert.equal(partOf('index.ts'), 'index');
  assert.deepEqual(violations([{ from: 'newpart/x.ts', to: 'core/clock.ts' }], ALLOWED).length, 1, 'a part not in the table may import nothing');
});

test('the import pattern sees every form used in src/', () => {
  const sample = [
    "import { a } from '../core/a.js';",
    "import type { B } from '../config/b.js';",
    "export { c } from './c.js';",
    "export * from '../upstream/d.js';",
    "import {\n  e,\n  f,\n} from '../observe/e.js';",
    "const g = await import('../gateway/g.js');",
    "import '../node/side-effect.js';",
    "import { h } from 'undici';",
  ].join('\n');
  const found = [...sample.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]);
  assert.deepEqual(found, ['../core/a.js', '../config/b.js', './c.js', '../upstream/d.js', '../observe/e.js', '../gateway/g.js', '../node/side-effect.js']);
});
