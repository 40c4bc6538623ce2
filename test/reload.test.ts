// SIGHUP reloads the config of a running gateway (a real child process) in front of real
// backends: in-flight requests finish, new ones follow the new config, and a bad config is
// refused while the old one keeps serving.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo } from 'node:net';
import { adminFetch, startGateway, tempDir, type RunningGateway } from './helpers/gateway.js';
import { startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { waitFor } from './helpers/wait.js';

type Obj = Record<string, unknown>;

/** Everything a test started; afterEach stops it all, pass or fail. */
let gateways: RunningGateway[] = [];
let backends: Backend[] = [];
let dirs: string[] = [];

afterEach(async () => {
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  await Promise.all(backends.map((b) => b.close()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  gateways = [];
  backends = [];
  dirs = [];
});

/** A backend; with `release`, it answers /slow… only once `release` resolves. */
async function backend(name: string, release?: Promise<void>): Promise<Backend> {
  const b = await startBackend(name, release ? (req, res) => {
    req.resume();
    const answer = () => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(JSON.stringify({ backend: name, url: req.url }));
    };
    if (req.url?.startsWith('/slow')) void release.then(answer);
    else answer();
  } : undefined);
  backends.push(b);
  return b;
}

/** Starts a gateway whose config lives in a file the test rewrites. */
async function gateway(config: Obj): Promise<RunningGateway> {
  const dir = tempDir('tandem-reload-test-');
  dirs.push(dir);
  const file = join(dir, 'gateway.json');
  const gw = await startGateway(config, { file });
  gateways.push(gw);
  return gw;
}

/**
 * Rewrites the config file and sends SIGHUP; resolves with the first log line after the
 * signal that says how the reload went ("reloaded" or "reload rejected …").
 */
async function reload(gw: RunningGateway, config: Obj | string): Promise<Obj> {
  const text = typeof config === 'string' ? config : JSON.stringify({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', ...config }, null, 2);
  writeFileSync(gw.configFile, text);
  const from = gw.logs.length;
  gw.proc.kill('SIGHUP');
  return gw.waitForLog((l) => gw.logs.indexOf(l) >= from && (l.msg === 'reloaded' || /reload rejected/.test(String(l.msg))));
}

async function get(gw: RunningGateway, path: string, headers: Record<string, string> = {}): Promise<{ status: number; backend: string | null }> {
  const res = await fetch(`${gw.url}${path}`, { headers });
  await res.arrayBuffer();
  return { status: res.status, backend: res.headers.get('x-backend') };
}

/** Backends that answered `n` requests to `path`; every request must succeed. */
async function spread(gw: RunningGateway, n: number, path = '/', headers: Record<string, string> = {}): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const r = await get(gw, path, headers);
    assert.equal(r.status, 200, `request ${i} to ${path}`);
    seen.add(r.backend!);
  }
  return seen;
}

async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  await waitFor(what, cond);
}

test('SIGHUP to a new backend set: the in-flight slow request completes, new requests go to the new backends', async () => {
  // The slow request is held at the backend until the test has checked the reload around it.
  let releaseSlow!: () => void;
  const slowReleased = new Promise<void>((resolve) => { releaseSlow = resolve; });
  const old = [await backend('old-1', slowReleased), await backend('old-2', slowReleased)];
  const next = [await backend('new-1'), await backend('new-2')];
  const gw = await gateway(shopConfig(old.map((b) => b.address), { balancer: 'round-robin' }));
  assert.deepEqual([...await spread(gw, 4)].sort(), ['old-1', 'old-2']);

  let slowDone = false;
  const slow = fetch(`${gw.url}/slow`).then(async (res) => {
    const body = await res.text();
    slowDone = true;
    return { status: res.status, backend: res.headers.get('x-backend'), body };
  });
  await waitUntil(() => old.some((b) => b.seen.some((s) => s.url === '/slow')), 'the slow request reached an old backend');

  const outcome = await reload(gw, shopConfig(next.map((b) => b.address), { balancer: 'round-robin' }));
  assert.equal(outcome.msg, 'reloaded', JSON.stringify(outcome));
  assert.equal(slowDone, false, 'the slow request must still be in flight when the reload happens');

  assert.deepEqual([...await spread(gw, 6)].sort(), ['new-1', 'new-2']);
  assert.ok(old.every((b) => b.seen.filter((s) => s.url === '/').length === 2), 'no new request reached an old backend');

  releaseSlow();
  const r = await slow;
  assert.equal(r.status, 200);
  assert.ok(r.backend === 'old-1' || r.backend === 'old-2', String(r.backend));
  assert.deepEqual(JSON.parse(r.body), { backend: r.backend, url: '/slow' });
  assert.equal(gw.proc.exitCode, null, 'the gateway keeps running');
});

test('a bad new config is refused with path and hint (stderr and an error log line); the old config keeps serving', async () => {
  const old = [await backend('old-1'), await backend('old-2')];
  const next = await backend('new-1');
  const gw = await gateway(shopConfig(old.map((b) => b.address), { balancer: 'round-robin' }));

  const outcome = await reload(gw, shopConfig([next.address], { timout: '5s' }));
  assert.match(String(outcome.msg), /reload rejected; the previous config keeps serving/);
  assert.equal(outcome.level, 'error');
  assert.deepEqual(outcome.problems, ['services.shop.timout: unknown key — did you mean timeout?']);
  await waitUntil(() => gw.stderr().includes('services.shop.timout: unknown key — did you mean timeout?'), 'stderr shows the problem');
  assert.match(gw.stderr(), /reload rejected, previous config kept: /);
  assert.match(gw.stderr(), new RegExp(`1 config problem in ${gw.configFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:`));

  assert.deepEqual([...await spread(gw, 4)].sort(), ['old-1', 'old-2']);
  assert.equal(next.seen.length, 0);

  // invalid JSON is refused the same way, with its position
  const broken = await reload(gw, '{\n  "listen": "127.0.0.1:0",\n');
  assert.match(String(broken.msg), /reload rejected/);
  assert.match(String((broken.problems as string[])[0]), /^line \d+, column \d+: not valid JSON/);
  assert.deepEqual([...await spread(gw, 2)].sort(), ['old-1', 'old-2']);

  // and a fixed config then applies
  const fixed = await reload(gw, shopConfig([next.address], { timeout: '5s' }));
  assert.equal(fixed.msg, 'reloaded');
  assert.deepEqual([...await spread(gw, 3)], ['new-1']);
  assert.equal(gw.proc.exitCode, null);
});

test('changing listen on reload is refused with a clear message; the old config keeps serving', async () => {
  const old = await backend('old');
  const next = await backend('new');
  const gw = await gateway(shopConfig([old.address]));
  const other = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });

  const outcome = await reload(gw, { ...shopConfig([next.address]), listen: `127.0.0.1:${other}` });
  assert.match(String(outcome.msg), /reload rejected/);
  assert.deepEqual(outcome.problems, ['listen: cannot change on reload — restart the gateway to move the listener']);
  await waitUntil(() => /listen: cannot change on reload — restart the gateway/.test(gw.stderr()), 'stderr shows the reason');

  // nothing of the new config applied: the old endpoint serves, the new port is not bound
  assert.deepEqual([...await spread(gw, 3)], ['old']);
  assert.equal(next.seen.length, 0);
  const refused = await new Promise<string>((resolve) => {
    const socket = connect(other, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve('connected'); });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  assert.equal(refused, 'ECONNREFUSED');

  // a limit that is fixed for the process's life is refused too
  const header = await reload(gw, { ...shopConfig([next.address]), limits: { maxHeaderSize: '32KiB' } });
  assert.deepEqual(header.problems, ['limits.maxHeaderSize: cannot change on reload — restart the gateway']);
  assert.deepEqual([...await spread(gw, 2)], ['old']);
});

test('a reload that removes a service and its route: the route answers 404, the service leaves the cluster state', async () => {
  const shop = await backend('shop');
  const blog = await backend('blog');
  const gw = await gateway({
    services: { shop: { endpoints: [shop.address] }, blog: { endpoints: [blog.address] } },
    routes: [{ prefix: '/shop', service: 'shop' }, { prefix: '/blog', service: 'blog' }],
  });
  assert.deepEqual(await get(gw, '/blog/post'), { status: 200, backend: 'blog' });
  assert.deepEqual(await get(gw, '/shop/item'), { status: 200, backend: 'shop' });

  const outcome = await reload(gw, { services: { shop: { endpoints: [shop.address] } }, routes: [{ prefix: '/shop', service: 'shop' }] });
  assert.equal(outcome.msg, 'reloaded');
  assert.deepEqual(outcome.services, ['shop']);
  assert.equal(outcome.routes, 1);

  const seenByBlog = blog.seen.length;
  const gone = await fetch(`${gw.url}/blog/post`);
  assert.equal(gone.status, 404);
  assert.equal(((await gone.json()) as { error: { code: string } }).error.code, 'TANDEM_ERR_NO_ROUTE');
  assert.equal(blog.seen.length, seenByBlog);
  assert.deepEqual(await get(gw, '/shop/item'), { status: 200, backend: 'shop' });

  const cluster = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ name: string }>; routes: Array<{ prefix: string }> };
  assert.deepEqual(cluster.services.map((s) => s.name), ['shop']);
  assert.deepEqual(cluster.routes.map((r) => r.prefix), ['/shop']);
});

test('a reload that changes the balancer: round-robin spreads, consistent-hash pins a key to one backend', async () => {
  const bs = [await backend('a'), await backend('b'), await backend('c')];
  const addresses = bs.map((b) => b.address);
  const gw = await gateway(shopConfig(addresses, { balancer: 'round-robin' }));
  const user = { 'x-user-id': 'user-42' };
  assert.equal((await spread(gw, 6, '/', user)).size, 3, 'round-robin ignores the key and uses every backend');

  const outcome = await reload(gw, shopConfig(addresses, { balancer: 'consistent-hash', hash: { header: 'x-user-id' } }));
  assert.equal(outcome.msg, 'reloaded');
  const cluster = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ name: string; balancer: string }> };
  assert.equal(cluster.services.find((s) => s.name === 'shop')!.balancer, 'consistent-hash');

  assert.equal((await spread(gw, 12, '/', user)).size, 1, 'every request with one key goes to one backend');
  const owners = new Set<string>();
  for (let i = 0; i < 30; i++) {
    const [owner] = await spread(gw, 1, '/', { 'x-user-id': `user-${i}` });
    owners.add(owner!);
  }
  assert.ok(owners.size >= 2, 'different keys spread over the backends');
});

test('a SIGHUP sent the moment the "listening" line appears reloads (it does not kill the gateway)', async () => {
  // Supervisors may reload right after start; a signal without a handler would terminate.
  const b = await backend('only');
  for (let i = 0; i < 6; i++) {
    const gw = await gateway(shopConfig([b.address]));
    const from = gw.logs.length;
    gw.proc.kill('SIGHUP');
    const line = await gw.waitForLog((l) => gw.logs.indexOf(l) >= from && l.msg === 'reloaded');
    assert.equal(line.msg, 'reloaded');
    assert.equal(gw.proc.signalCode, null);
    assert.deepEqual(await get(gw, '/'), { status: 200, backend: 'only' });
    await gw.stop();
  }
});

test('a reload that changes health checks and hedging: probers restart on the new path, the new hedge settings apply', async () => {
  // The backend passes /healthz and fails /deep-health.
  const b = await startBackend('a', (req, res) => {
    req.resume();
    res.writeHead(req.url === '/deep-health' ? 503 : 200).end();
  });
  backends.push(b);
  const gw = await gateway(shopConfig([b.address]));
  const stateOf = async () => {
    const cluster = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ name: string; hedgeDelayMs: number | null; endpoints: Array<{ state: string }> }> };
    return cluster.services.find((s) => s.name === 'shop')!;
  };
  await eventually(async () => (await stateOf()).endpoints[0]!.state === 'healthy', 'healthy on /healthz');
  await spread(gw, 60);
  await eventually(async () => typeof (await stateOf()).hedgeDelayMs === 'number', 'a hedge delay from 60 samples');
  const outcome = await reload(gw, shopConfig([b.address], { healthCheck: { path: '/deep-health' }, hedge: false }));
  assert.equal(outcome.msg, 'reloaded');
  await eventually(async () => (await stateOf()).endpoints[0]!.state === 'unhealthy', 'unhealthy on /deep-health');
  assert.equal((await stateOf()).hedgeDelayMs, null, 'hedging is off after the reload');
});

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  await waitFor(what, check, { intervalMs: 50 });
}
