#!/usr/bin/env node
// The package as an application gets it. `npm pack` (which builds), then a fresh CommonJS
// project (`npm init -y`) with no dev dependencies of ours installs the tarball and checks:
//   - the tarball holds what is needed and nothing large that is not; no install script runs
//     (npm query), npm prints no EBADENGINE / ERESOLVE / peer warning (the install runs on the
//     oldest Node given, so the engines of every dependency are checked against it);
//   - `tsc --strict` (skipLibCheck off; the newest TypeScript and 5.9) on files importing every
//     entry point, from an ES module and from a CommonJS module, with no broker client installed;
//   - on every Node given: every entry point imports in ESM; in CommonJS `await import()` works
//     and `require()` works exactly where Node has require(esm);
//   - an express app using serve() behind a gateway started from node_modules/.bin/tandem with a
//     config that names no endpoints: the app registers by itself (it finds the gateway's
//     generated secret in the runtime directory), a request through the gateway reaches it, and
//     SIGTERM drains it (exit 0);
//   - `tandem demo` from the installed package (the shipped examples, tandem-ha/client);
//   - the oldest version of each optional peer that package.json allows installs cleanly, and a
//     NATS and a RabbitMQ round trip, a PostgreSQL and a Redis inbox check run against the
//     machine's brokers (never stopped or reconfigured); their own types fit tandem's shapes.
// Usage: npm run test:consumer [-- --node /path/to/node ...] [--keep] [--no-build]
//   --node   another Node binary for the import, app and peer checks (repeatable); this Node
//            always runs them too. --keep leaves the temp project for a look.
//   --no-build  packs dist/ as it is (`npm pack --ignore-scripts`) instead of letting prepack
//            clean and rebuild it: for CI, whose `npm test` has just built it in a fresh clone.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const noBuild = args.includes('--no-build');
const extraNodes = args.flatMap((a, i) => (a === '--node' && args[i + 1] ? [args[i + 1]] : []));
const started = Date.now();
const results = [];
const children = new Set();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn`; records ok/failed with its detail line and time. A failed `required` check ends the run. */
async function check(name, fn, { required = false } = {}) {
  const t = Date.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail, s: (Date.now() - t) / 1000 });
  } catch (err) {
    results.push({ name, ok: false, detail: String(err?.message ?? err), s: (Date.now() - t) / 1000 });
    if (required) finish();
  }
}

function run(cmd, argv, { cwd, env, timeout = 300_000, node } = {}) {
  const r = spawnSync(cmd, argv, { cwd, env: env ?? cleanEnv(node), encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

function ok(r, what) {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status ?? r.error?.message}:\n${r.out.slice(-3000)}`);
  return r;
}

/** The environment without the outer `npm run`'s npm_* variables (they would steer the inner npm), with `node` first on PATH. */
function cleanEnv(node, extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  if (node) env.PATH = `${dirname(node.path)}:${env.PATH}`;
  return { ...env, NO_UPDATE_NOTIFIER: '1', ...extra };
}

const npmCli = (() => {
  const which = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  return realpathSync(which);
})();

/** npm run by a given Node (its engine checks then use that Node's version). */
function npm(node, argv, cwd, timeout) {
  return run(node.path, [npmCli, ...argv, '--no-audit', '--no-fund'], { cwd, node, timeout });
}

function describeNode(path) {
  const v = spawnSync(path, ['-p', 'process.version'], { encoding: 'utf8' }).stdout.trim();
  const [major, minor] = v.slice(1).split('.').map(Number);
  return { path, version: v, major, minor };
}

const older = (a, b) => (a.major - b.major || a.minor - b.minor) < 0;
/** require() of ES modules, unflagged: Node 20.19+, 22.12+, 23+. */
const hasRequireEsm = (n) => n.major >= 23 || (n.major === 22 && n.minor >= 12) || (n.major === 20 && n.minor >= 19);

function dirSize(dir) {
  let bytes = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    bytes += e.isDirectory() ? dirSize(p) : lstatSync(p).size;
  }
  return bytes;
}

const kB = (n) => `${(n / 1000).toFixed(1)} kB`;
const MB = (n) => `${(n / 1e6).toFixed(2)} MB`;

/** Subpath specifiers of the exports map. */
const specifiers = Object.keys(pkg.exports).filter((s) => s !== './package.json').map((s) => (s === '.' ? pkg.name : `${pkg.name}/${s.slice(2)}`));

/** The lowest version each optional peer range allows (each range here starts with it: `^8.0.3`, `>=0.8.0 <3`). */
// @platformatic/kafka is left out: its engines start at Node 20.19.4, above tandem's floor (npm
// would warn), and no Kafka broker runs on the machine; the Kafka adapter's own tests start one.
const oldestPeers = Object.entries(pkg.peerDependencies)
  .filter(([name]) => name !== '@opentelemetry/api' && name !== '@platformatic/kafka')
  .map(([name, range]) => `${name}@${/\d+\.\d+\.\d+/.exec(range)[0]}`);

/** What npm says when an engine range, a peer range or an install script (npm 11's install-scripts check) is in the way. */
const WARNINGS = /EBADENGINE|ERESOLVE|Conflicting peer|peer dep|overriding peer|install-scripts|npm (warn|ERR!) .*engine/i;

// ---------------------------------------------------------------------------------------------

const nodes = [describeNode(process.execPath), ...extraNodes.map(describeNode)].filter((n, i, all) => all.findIndex((m) => m.version === n.version) === i);
const oldest = nodes.reduce((a, b) => (older(b, a) ? b : a));
const work = mkdtempSync(join(tmpdir(), 'tandem-consumer-'));
const app = join(work, 'app');
let packed;
let installed;

await check('pack', () => {
  const r = ok(run('npm', ['pack', '--json', '--pack-destination', work, ...(noBuild ? ['--ignore-scripts'] : [])], { cwd: root, env: cleanEnv(), timeout: 300_000 }), 'npm pack');
  packed = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0];
  const files = packed.files.map((f) => f.path);
  const needed = ['package.json', 'README.md', 'LICENSE', 'bin/tandem.js', 'dist/dashboard/app.js', 'examples/demo.yaml', 'examples/catalog.js', 'examples/orders.js', 'dist/src/config/config-shape.js'];
  for (const target of Object.values(pkg.exports)) if (typeof target === 'object') needed.push(target.types.slice(2), target.default.slice(2));
  const missing = needed.filter((f) => !files.includes(f));
  const unwanted = files.filter((f) => /^(src|test|dist\/test|scripts|bench|docs|dashboard|\.ci)\//.test(f) || /\.map$/.test(f) || (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)));
  const scripts = Object.keys(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts ?? {}).filter((s) => /^(preinstall|install|postinstall|prepare)$/.test(s));
  if (missing.length || unwanted.length || scripts.length) throw new Error(`missing ${missing.join(', ') || 'nothing'}; unwanted ${unwanted.join(', ') || 'nothing'}; install scripts ${scripts.join(', ') || 'none'}`);
  return `${packed.filename}: ${packed.entryCount} files, tarball ${kB(packed.size)}, unpacked ${kB(packed.unpackedSize)} — bin, dist/src (.js, .d.ts), dist/dashboard, examples, LICENSE, README; no sources, tests or maps`;
}, { required: true });

await check(`install (node ${oldest.version})`, () => {
  mkdirSync(app);
  ok(npm(oldest, ['init', '-y'], app), 'npm init');
  const r = ok(npm(oldest, ['install', join(work, packed.filename)], app), 'npm install <tarball>');
  if (WARNINGS.test(r.out)) throw new Error(`npm warned:\n${r.out}`);
  const withScripts = ['preinstall', 'install', 'postinstall'].flatMap((s) => JSON.parse(ok(npm(oldest, ['query', `:attr(scripts, [${s}])`], app), 'npm query').stdout).map((p) => `${p.name} (${s})`));
  if (withScripts.length) throw new Error(`install scripts: ${withScripts.join(', ')}`);
  ok(npm(oldest, ['ls', '--all'], app), 'npm ls');
  const type = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).type ?? 'commonjs';
  const count = readdirSync(join(app, 'node_modules')).filter((n) => !n.startsWith('.')).flatMap((n) => (n.startsWith('@') ? readdirSync(join(app, 'node_modules', n)) : [n])).length;
  installed = { all: dirSize(join(app, 'node_modules')), own: dirSize(join(app, 'node_modules', pkg.name)), count };
  return `a ${type} project (npm init -y): ${count} packages, no install scripts (npm query; no npm install-scripts warning), no engine or peer warnings; node_modules ${MB(installed.all)}, of which ${pkg.name} ${MB(installed.own)}`;
}, { required: true });

await check('bin', () => {
  const tandem = join(app, 'node_modules', '.bin', 'tandem');
  const v = ok(run(tandem, ['--version'], { cwd: app }), 'tandem --version').stdout.trim();
  if (!v.includes(pkg.version)) throw new Error(`tandem --version said ${v}`);
  writeFileSync(join(app, 'gateway.yaml'), gatewayYaml());
  ok(run(tandem, ['gateway', '--check', 'gateway.yaml'], { cwd: app }), 'tandem gateway --check');
  return `node_modules/.bin/tandem --version: ${v}; gateway --check of a config without endpoints`;
});

await check('types: tsc --strict, no broker client installed', () => {
  ok(npm(oldest, ['install', 'express'], app), 'npm install express');
  ok(npm(oldest, ['install', '--save-dev', 'typescript', 'ts59@npm:typescript@~5.9.0', '@types/node@20', '@types/express'], app), 'npm install typescript');
  writeTypeChecks();
  const versions = [];
  for (const ts of ['typescript', 'ts59']) {
    const tsc = join(app, 'node_modules', ts, 'bin', 'tsc');
    versions.push(ok(run(process.execPath, [tsc, '--version'], { cwd: app }), 'tsc --version').stdout.trim().replace('Version ', ''));
    ok(run(process.execPath, [tsc, '-p', 'types'], { cwd: app }), `tsc (${ts})`);
  }
  return `TypeScript ${versions.join(' and ')}, strict, skipLibCheck off, module nodenext: every entry point from an ES module (.mts) and a CommonJS module (.cts, static import = require(esm)); typed usage of serve, createClient, defineConfig (a misspelled config key is an error), the buses and inboxes`;
});

writeRuntimeChecks();
for (const node of nodes) {
  await check(`ESM + CommonJS (node ${node.version})`, () => {
    const esm = ok(run(node.path, ['esm-check.mjs'], { cwd: app }), 'esm-check.mjs').stdout.trim();
    const cjs = JSON.parse(ok(run(node.path, ['cjs-check.cjs'], { cwd: app }), 'cjs-check.cjs').stdout);
    const expected = hasRequireEsm(node) ? 'ok' : 'ERR_REQUIRE_ESM';
    if (cjs.require !== expected) throw new Error(`require(): ${cjs.require}, expected ${expected} on ${node.version}`);
    return `${esm}; CommonJS: await import() ok, require() ${cjs.require === 'ok' ? `ok${cjs.warning ? ' (with an ExperimentalWarning)' : ''}` : 'throws ERR_REQUIRE_ESM (expected: no require(esm) before 20.19 / 22.12)'}`;
  });
}

for (const node of nodes) await check(`express + serve() behind tandem gateway (node ${node.version})`, () => appBehindGateway(node));

await check('tandem demo from the installed package', () => demo(nodes[0]));

await check(`optional peers at their oldest (node ${oldest.version})`, () => {
  const r = ok(npm(oldest, ['install', ...oldestPeers], app), 'npm install <oldest peers>');
  // @grpc/grpc-js brings protobufjs (through @grpc/proto-loader), whose postinstall npm 11 asks the
  // application to approve: grpc-js's own dependency, which its users meet without tandem too. Any
  // other warning fails the check.
  const PEER_SCRIPTS = /install-scripts\s+protobufjs@/;
  const out = r.out.split('\n').filter((l) => !PEER_SCRIPTS.test(l)
    && !/^npm warn install-scripts( 1 package has install scripts not yet covered by allowScripts:| Run `npm install-scripts ls`|\s*$)/.test(l)).join('\n');
  if (WARNINGS.test(out)) throw new Error(`npm warned:\n${r.out}`);
  ok(npm(oldest, ['ls', '--all'], app), 'npm ls');
  const seen = [];
  for (const node of nodes) {
    const out = run(node.path, ['peers-check.mjs'], { cwd: app, timeout: 120_000 });
    if (out.status !== 0) throw new Error(`node ${node.version}: ${out.out.slice(-3000)}`);
    seen.push(`${node.version}: ${Object.entries(JSON.parse(out.stdout)).map(([k, v]) => `${k} ${v.ms} ms`).join(', ')}`);
  }
  return `${oldestPeers.join(' ')} installed with no warning (but grpc-js's protobufjs postinstall, npm's to approve); NATS and RabbitMQ publish/consume round trip, PostgreSQL and Redis inbox (done, then duplicate) — ${seen.join('; ')}`;
});

await check('types with the oldest clients\' own types', () => {
  ok(npm(oldest, ['install', '--save-dev', '@types/pg@8.6.0'], app), 'npm install @types/pg');
  ok(run(process.execPath, [join(app, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'types-peers'], { cwd: app }), 'tsc (types-peers)');
  return 'pg Pool (@types/pg 8.6.0) fits PgPoolLike<PoolClient>, an ioredis 5.0.0 client fits RedisLike (tx inferred as its ChainableCommander)';
});

finish();

// ---------------------------------------------------------------------------------------------

function finish() {
  for (const c of children) c.kill('SIGKILL');
  const failed = results.filter((r) => !r.ok);
  const lines = [
    '',
    `consumer test: ${pkg.name}@${pkg.version} installed as an application would (${work}${keep ? ', kept' : ''})`,
    ...results.map((r) => `  ${r.ok ? 'ok  ' : 'FAIL'} ${r.name} (${r.s.toFixed(1)} s): ${r.detail}`),
    packed ? `  tarball ${kB(packed.size)} (unpacked ${kB(packed.unpackedSize)}, ${packed.entryCount} files); installed: node_modules ${installed ? MB(installed.all) : '?'} for ${installed?.count ?? '?'} packages, ${pkg.name} itself ${installed ? MB(installed.own) : '?'}` : '',
    `  Node: ${nodes.map((n) => n.version).join(', ')}; took ${((Date.now() - started) / 1000).toFixed(0)} s`,
    `consumer: ${results.length - failed.length} passed, ${failed.length} failed`,
  ];
  console.log(lines.filter((l) => l !== '').join('\n'));
  if (!keep) rmSync(work, { recursive: true, force: true });
  process.exit(failed.length ? 1 : 0);
}

function gatewayYaml() {
  return ['# No endpoints: instances register themselves through the admin listener.', 'listen: 127.0.0.1:0', 'admin: 127.0.0.1:0', 'services:', '  shop: {}', 'routes:', '  - prefix: /', '    service: shop', ''].join('\n');
}

/** A long-running child whose stdout lines are kept; `waitFor(re)` resolves with the first match. */
function start(cmd, argv, options) {
  const child = spawn(cmd, argv, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  const waiters = [];
  child.stdout.on('data', (d) => {
    out += d;
    for (const w of [...waiters]) w();
  });
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    children.delete(child);
    resolve(code ?? signal);
  }));
  /** Resolves with the first truthy `match(stdout so far)`. */
  const waitFor = (what, match, ms = 20_000) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms; stdout:\n${out.slice(-2000)}\nstderr:\n${err.slice(-2000)}`)), ms);
    const test = () => {
      const m = match(out);
      if (m) {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(test), 1);
        resolve(m);
      }
    };
    waiters.push(test);
    test();
  });
  const waitForText = (re, ms) => waitFor(String(re), (text) => re.exec(text), ms);
  /** The first stdout line that is a JSON object satisfying `pred`. */
  const waitForJson = (what, pred, ms) => waitFor(what, (text) => text.split('\n').map(parseJson).find((o) => o && pred(o)), ms);
  const stop = async (signal = 'SIGTERM', ms = 15_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const code = await Promise.race([exited, sleep(ms).then(() => 'timeout')]);
    if (code === 'timeout') child.kill('SIGKILL');
    return code;
  };
  return { child, waitForText, waitForJson, stop, output: () => `${out}\n${err}` };
}

function parseJson(line) {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/** One request with a 5 s deadline: { status, text }. */
function getText(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

async function until(what, fn, ms = 15_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ''}`);
}

async function appBehindGateway(node) {
  // A runtime directory of this test's own: the gateway writes its generated secret there (0600)
  // and the app, on the same host with the same environment, finds it.
  const runtime = join(work, `run-${node.version}`);
  mkdirSync(runtime);
  chmodSync(runtime, 0o700);
  const env = cleanEnv(node, { XDG_RUNTIME_DIR: runtime });
  const gateway = start(node.path, [join('node_modules', '.bin', 'tandem'), 'gateway', '--config', 'gateway.yaml'], { cwd: app, env });
  try {
    const { listen, admin } = await gateway.waitForJson('"listening" log line', (l) => l.msg === 'listening');
    const service = start(node.path, ['app.mjs'], { cwd: app, env: { ...env, TANDEM_REGISTRY: `http://${admin}` } });
    try {
      const { id } = await service.waitForJson('"serving" line of the app', (l) => l.msg === 'serving');
      const answer = await until('a request through the gateway to reach the app', async () => {
        const r = await getText(`http://${listen}/hello?from=consumer-test`);
        return r.status === 200 && JSON.parse(r.text).hello === 'from express' ? JSON.parse(r.text) : undefined;
      });
      if (answer.query !== 'consumer-test') throw new Error(`the app saw ${JSON.stringify(answer)}`);
      const drained = await service.stop('SIGTERM');
      if (drained !== 0) throw new Error(`the app exited ${drained} on SIGTERM:\n${service.output().slice(-2000)}`);
      const stopped = await gateway.stop('SIGTERM');
      if (stopped !== 0) throw new Error(`the gateway exited ${stopped} on SIGTERM`);
      return `gateway from node_modules/.bin/tandem (config without endpoints); the express app registered as ${id} with the secret the gateway generated (found in the runtime directory); GET /hello through the gateway answered by the app; SIGTERM: the app drained and exited 0, then the gateway`;
    } finally {
      await service.stop('SIGKILL', 2_000);
    }
  } finally {
    await gateway.stop('SIGKILL', 2_000);
  }
}

async function demo(node) {
  const runtime = join(work, 'run-demo');
  mkdirSync(runtime);
  chmodSync(runtime, 0o700);
  const env = cleanEnv(node, { XDG_RUNTIME_DIR: runtime });
  const d = start(node.path, [join('node_modules', '.bin', 'tandem'), 'demo', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { cwd: app, env });
  try {
    const [, base] = await d.waitForText(/tandem demo: gateway (http:\/\/[^/\s]+)\//, 60_000);
    const item = await until('catalog', async () => {
      const r = await getText(`${base}/catalog/items/apple`);
      return r.status === 200 ? JSON.parse(r.text) : undefined;
    });
    const order = await getText(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sku":"apple","qty":2}' });
    if (item.sku !== 'apple' || order.status >= 300) throw new Error(`catalog said ${JSON.stringify(item)}, orders ${order.status} ${order.text}`);
    const code = await d.stop('SIGTERM', 30_000);
    if (code !== 0) throw new Error(`tandem demo exited ${code} on SIGTERM`);
    return `six instances from the shipped examples joined; GET /catalog/items/apple ${item.instance ? `(${item.instance})` : ''} and POST /orders (orders → catalog through ${pkg.name}/client: ${order.status}) through the gateway; SIGTERM: everything drained, exit 0`;
  } finally {
    await d.stop('SIGKILL', 2_000);
  }
}

function writeTypeChecks() {
  const dir = join(app, 'types');
  mkdirSync(dir);
  const config = { compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, skipLibCheck: false, types: ['node'] }, include: ['.'] };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config, null, 2));
  const every = specifiers.map((s, i) => `import * as m${i} from '${s}';`).join('\n');
  writeFileSync(join(dir, 'esm.mts'), `${every}
import { createServer } from 'node:http';
import express from 'express';
import { serve } from '${pkg.name}/node';
import { createClient } from '${pkg.name}/client';
import { defineConfig, validateConfig, type GatewayConfigInput } from '${pkg.name}/config';
import { MemoryBus, MemoryInbox, NatsBus, RabbitMqBus, PostgresInbox, PostgresOutbox, RedisInbox, type Message, type PgTransaction, type RedisMulti } from '${pkg.name}/events';

export const entryPoints: object[] = [${specifiers.map((_, i) => `m${i}`).join(', ')}];

// The config's input type (derived from its schema) in an application: a config checks, a typo does not.
export const gatewayConfig = validateConfig(defineConfig({
  listen: '127.0.0.1:8080',
  services: { shop: { endpoints: ['127.0.0.1:7001', { address: '127.0.0.1:7002', weight: 2 }], retry: { attempts: 2 }, healthCheck: false, hedge: { percentile: 99 } } },
  routes: [{ prefix: '/', service: 'shop' }],
  limits: { bodyTimeout: false, maxBodySize: '10MiB' },
}));
// @ts-expect-error a misspelled key is a compile error
export const misspelled: GatewayConfigInput = { listen: '127.0.0.1:8080', services: { shop: { retires: false } }, routes: [{ prefix: '/', service: 'shop' }] };

export async function usage(): Promise<string> {
  const server = createServer(express()).listen(0);
  const instance = await serve(server, { service: 'orders', registry: 'http://127.0.0.1:9901' });
  const catalog = createClient('catalog', { registry: 'http://127.0.0.1:9901' });
  const item = await catalog.request({ path: '/items/apple' });
  const bus = new MemoryBus();
  await bus.subscribe('a.b', 'g', async (m: Message<{ n: number }>) => void m.payload.n, { inbox: new MemoryInbox() });
  const pg = await PostgresInbox.connect();
  await bus.subscribe<{ id: string }, PgTransaction>('orders.placed', 'billing', async (m, tx) => void (await tx.query('INSERT INTO t VALUES ($1)', [m.payload.id])), { inbox: pg });
  const redis = await RedisInbox.connect();
  await redis.once('g', 'id', (tx: RedisMulti) => void tx.set('k', 'v', 'PX', 1000));
  const outbox = await PostgresOutbox.connect();
  const nats = await NatsBus.connect();
  const rabbit = await RabbitMqBus.connect();
  await nats.connection.close();
  await rabbit.connection?.close();
  await outbox.add(outbox.pool, 'a.b', { n: 1 });
  return instance.id + item.body.toString();
}
`);
  writeFileSync(join(dir, 'cjs.cts'), `// A CommonJS module: the static import compiles to require() (require(esm)); await import() works everywhere.
import { serve } from '${pkg.name}/node';
export async function later(): Promise<unknown> {
  const events = await import('${pkg.name}/events');
  return [serve, events.MemoryBus];
}
`);
  const peers = join(app, 'types-peers');
  mkdirSync(peers);
  writeFileSync(join(peers, 'tsconfig.json'), JSON.stringify({ ...config, compilerOptions: { ...config.compilerOptions, types: ['node'] } }, null, 2));
  writeFileSync(join(peers, 'peers.mts'), `import pg from 'pg';
import type { PoolClient } from 'pg';
import IORedis from 'ioredis';
import { PostgresInbox, RedisInbox } from '${pkg.name}/events';

export async function typed(): Promise<void> {
  const pgInbox = await PostgresInbox.connect<PoolClient>({ pool: new pg.Pool() });
  await pgInbox.once('g', 'id', async (tx: PoolClient) => void (await tx.query('SELECT 1')));
  // ioredis before 5.3 has no named Redis export; its module.exports is the class, with a default of itself.
  const redisInbox = await RedisInbox.connect({ client: new IORedis.default() });
  await redisInbox.once('g', 'id', (tx) => void tx.incr('counter').hset('h', 'f', 'v'));
}
`);
}

function writeRuntimeChecks() {
  writeFileSync(join(app, 'esm-check.mjs'), `const specifiers = ${JSON.stringify(specifiers)};
const mods = await Promise.all(specifiers.map((s) => import(s)));
const need = { '${pkg.name}': ['Gateway', 'Upstream', 'VERSION'], '${pkg.name}/node': ['serve'], '${pkg.name}/client': ['createClient'], '${pkg.name}/events': ['MemoryBus', 'NatsBus', 'RabbitMqBus', 'PostgresInbox', 'RedisInbox', 'PostgresOutbox'], '${pkg.name}/lead': ['lead', 'postgresLeaseStore', 'MemoryLeaseStore'] };
for (const [s, names] of Object.entries(need)) for (const n of names) if (!(n in mods[specifiers.indexOf(s)])) throw new Error(s + ' lacks ' + n);
console.log('ESM: ' + specifiers.length + ' entry points import');
`);
  writeFileSync(join(app, 'cjs-check.cjs'), `const specifiers = ${JSON.stringify(specifiers)};
let warning = false;
process.on('warning', (w) => { if (w.name === 'ExperimentalWarning') warning = true; });
(async () => {
  for (const s of specifiers) await import(s);
  let required;
  try {
    for (const s of specifiers) require(s);
    required = typeof require('${pkg.name}/node').serve === 'function' ? 'ok' : 'no serve';
  } catch (err) {
    required = err.code ?? String(err);
  }
  await new Promise((r) => setImmediate(r));
  console.log(JSON.stringify({ require: required, warning }));
})();
`);
  writeFileSync(join(app, 'app.mjs'), `// An express app behind the gateway: serve() registers it, heartbeats, and drains it on SIGTERM.
import express from 'express';
import { serve } from '${pkg.name}/node';

const app = express();
app.get('/hello', (req, res) => res.json({ hello: 'from express', query: req.query.from }));
const server = app.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'shop', registry: process.env.TANDEM_REGISTRY });
console.log(JSON.stringify({ msg: 'serving', id: instance.id }));
`);
  writeFileSync(join(app, 'peers-check.mjs'), readFileSync(join(root, 'scripts', 'lib', 'consumer-peers.mjs'), 'utf8'));
}
