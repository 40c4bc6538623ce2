// The node SDK in process (serve() with handleSignals: false) against in-process gateways:
// checks, several registries, programmatic drain. The process-level behaviour (signals, kills,
// restarts) is in membership.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { once } from 'node:events';
import pino from 'pino';
import { request } from 'undici';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { serve } from '../src/node/index.js';
import { spawnInstance, until } from './helpers/sdk.js';
import { waitFor } from './helpers/wait.js';
import { ROOT, startGateway } from './helpers/gateway.js';
import { freePort } from './helpers/backend.js';
import { spawn } from 'node:child_process';
import { join } from 'node:path';

const quiet = { info: () => {}, warn: () => {} };
const gateways: Gateway[] = [];
after(async () => { await Promise.all(gateways.map((g) => g.shutdown())); });

async function gateway(): Promise<Gateway> {
  const gw = await Gateway.start(validateConfig({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }],
  }), pino({ level: 'silent' }));
  gateways.push(gw);
  return gw;
}

/** The app: answers after ?delay= ms (a deliberately slow request); `answered` gets each URL as its answer is sent. */
function app(answered: string[] = []): Server {
  return createServer((req, res) => {
    const delay = Number(new URL(req.url!, 'http://x').searchParams.get('delay') ?? 0);
    res.once('finish', () => answered.push(req.url!));
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(`app ${req.url}`), delay);
  }).listen(0, '127.0.0.1');
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url);
  return { status: res.statusCode, body: await res.body.text() };
}

test('readiness checks gate /readyz and the registration; liveness checks gate /healthz; the app sees everything else', async () => {
  const gw = await gateway();
  const server = app();
  let dbUp = false;
  let dbChecks = 0;
  let port = 0;
  server.once('listening', () => { port = (server.address() as { port: number }).port; });
  const serving = serve(server, { service: 'shop', registry: `http://${gw.adminAddress}`, readiness: { db: () => { dbChecks++; return dbUp; } }, handleSignals: false, logger: quiet });
  await until(() => port > 0, 'listening');
  const starting = await get(`http://127.0.0.1:${port}/readyz`);
  assert.equal(starting.status, 503);
  assert.deepEqual(JSON.parse(starting.body), { status: 'fail', state: 'starting', checks: { db: 'fail' } });
  assert.equal((await get(`http://127.0.0.1:${port}/healthz`)).status, 200, 'alive while starting');
  // serve() asks its readiness checks again and again while starting: after a few failed
  // rounds it has had its chances to register, and must not have.
  const checked = dbChecks;
  await waitFor('three more rounds of readiness checks', () => dbChecks >= checked + 3);
  assert.equal(gw.registry.size, 0, 'not registered while not ready');
  dbUp = true;
  const instance = await serving;
  assert.equal(instance.state, 'ready');
  assert.equal(gw.registry.snapshotNow('shop').instances[0]?.address, instance.address);
  assert.equal((await get(`http://127.0.0.1:${port}/readyz`)).status, 200);
  assert.equal((await get(`http://127.0.0.1:${port}/other`)).body, 'app /other');
  instance.addCheck('liveness', 'disk', () => { throw new Error('disk full'); });
  const sick = await get(`http://127.0.0.1:${port}/healthz`);
  assert.equal(sick.status, 503);
  assert.deepEqual(JSON.parse(sick.body).checks, { disk: 'fail: disk full' });
  await instance.close();
});

test('several registries: registers with each; close() drains everywhere, lets the in-flight request finish, deregisters', async () => {
  const [a, b] = [await gateway(), await gateway()];
  const order: string[] = [];
  const server = app(order);
  const instance = await serve(server, { service: 'shop', registry: [`http://${a.adminAddress}`, `http://${b.adminAddress}`], handleSignals: false, logger: quiet });
  const leases = instance.leases();
  assert.equal(Object.values(leases).filter(Boolean).length, 2);
  assert.equal(a.registry.size, 1);
  assert.equal(b.registry.size, 1);
  const slow = get(`http://${a.listenAddress}/slow?delay=400`);
  await until(() => a.cluster() !== undefined && JSON.stringify(a.cluster()).includes('"inflight":1'), 'the slow request in flight');
  const states: string[] = [];
  a.registry.subscribe((c) => states.push(`${c.kind}:${c.instance.state}`));
  await instance.close();
  order.push('closed');
  const r = await slow;
  assert.deepEqual([r.status, r.body], [200, 'app /slow?delay=400'], 'the in-flight request finished');
  assert.deepEqual(order.slice(-2), ['/slow?delay=400', 'closed'], 'close() waited for it');
  assert.deepEqual(states, ['state:draining', 'deregistered:draining']);
  assert.equal(a.registry.size + b.registry.size, 0);
  assert.equal(instance.state, 'closed');
  assert.equal(server.listening, false);
});

test('serve() and tandem/events in one process: SIGTERM waits for the running handler, closes the bus, runs the app\'s drain hooks, then exits 0', async () => {
  const gw = await startGateway({ services: { worker: {} }, routes: [{ prefix: '/', service: 'worker' }] });
  try {
    const child = await spawnInstance({ registry: gw.adminUrl, handlerMs: 'until-closing', hookMs: 100 }, 'serve-events');
    await child.waitForLine((l) => l.msg === 'handler-started');
    child.proc.kill('SIGTERM');
    assert.equal(await child.exited, 0);
    const order = child.lines.filter((l) => !l.log || l.msg === 'closing').map((l) => String(l.msg));
    assert.deepEqual(order.slice(order.indexOf('handler-started')), ['handler-started', 'closing', 'handler-done', 'hook-ran']);
    assert.equal(child.lines.find((l) => l.msg === 'handler-done')!.poolOpen, true, 'the hook ran after the handler finished');
    assert.deepEqual(child.lines.find((l) => l.msg === 'closing')!.what, ['memory bus']);
  } finally {
    await gw.stop();
  }
});

test('serve(): a drain hook still running after drainTimeout is reported and the process exits 1', async () => {
  const gw = await startGateway({ services: { worker: {} }, routes: [{ prefix: '/', service: 'worker' }] });
  try {
    const child = await spawnInstance({ registry: gw.adminUrl, handlerMs: 0, hookMs: 60_000, drainTimeout: 300 }, 'serve-events');
    await child.waitForLine((l) => l.msg === 'handler-done');
    child.proc.kill('SIGTERM');
    assert.equal(await child.exited, 1);
    assert.match(String(child.lines.find((l) => l.msg === 'drain failed')?.error), /still running after 300 ms \(drainTimeout\)/);
  } finally {
    await gw.stop();
  }
});

test('serve()\'s own log lines are the gateway\'s format: pino JSON with ISO times, warnings on stderr', async () => {
  const port = await freePort();
  const script = `import { createServer } from 'node:http';
import { serve } from ${JSON.stringify(join(ROOT, 'dist/src/node/index.js'))};
const server = createServer((q, s) => s.end()).listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'x', registry: 'http://127.0.0.1:${port}', handleSignals: false });
await instance.close();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, stderr);
  const line = JSON.parse(stderr.split('\n').find((l) => l.includes('registration failed'))!) as Record<string, unknown>;
  assert.equal(line.level, 'warn');
  assert.match(String(line.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(line.pid, child.pid);
  assert.match(String(line.error), /ECONNREFUSED/);
});

test('a registration whose answer is lost (the registry slow past the 3 s timeout) is retried with its retryKey and gets the lease it made: no 409, no wait for the lease to expire', async () => {
  const gw = await gateway();
  const [host, port] = [gw.adminAddress.slice(0, gw.adminAddress.lastIndexOf(':')), Number(gw.adminAddress.slice(gw.adminAddress.lastIndexOf(':') + 1))];
  // A proxy in front of the registry: the first registration reaches it and is done, but its
  // answer is never passed on. Everything else (the keep-alive stream too) goes both ways.
  let held = 0;
  const proxy = createServer((req, res) => {
    const upstream = httpRequest({ host, port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      if (req.method === 'POST' && req.url === '/registry/v1/instances' && held++ === 0) return answer.resume();
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }).listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  after(() => { proxy.closeAllConnections(); proxy.close(); });
  const warnings: Array<Record<string, unknown>> = [];
  const instance = await serve(app(), {
    service: 'shop', registry: `http://127.0.0.1:${(proxy.address() as { port: number }).port}`, token: gw.adminToken, handleSignals: false,
    logger: { info: () => {}, warn: (fields: Record<string, unknown>) => warnings.push(fields) },
  });
  try {
    // serve() resolves after the first attempt, answered or not: wait for the lease itself.
    await until(() => Object.values(instance.leases()).every(Boolean), 'registered');
    assert.equal(held, 2, 'the first attempt was held, the second answered');
    assert.deepEqual(warnings.map((w) => [w.msg, /no answer within 3000 ms/.test(String(w.error))]), [['registration failed', true]], `only the timeout: ${JSON.stringify(warnings)}`);
    assert.deepEqual(gw.registry.snapshotNow('shop').instances.map((i) => i.address), [instance.address], 'one instance, once');
  } finally {
    await instance.close();
  }
});
