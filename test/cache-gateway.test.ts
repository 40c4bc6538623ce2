import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startBackend, shopConfig } from './helpers/backend.js';
import { adminFetch, metricSum, startGateway } from './helpers/gateway.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { ConfigError, DEFAULTS, validateConfig } from '../src/config/index.js';

/** `cache` on a route: the config, and a real gateway process in front of a real backend. */

const { defer, track } = cleanupAfterAll();

function configWith(route: Record<string, unknown>): unknown {
  return { listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop', ...route }] };
}

test('config: cache: true takes every default; an object sets some; false and unset mean none', () => {
  assert.deepEqual(validateConfig(configWith({ cache: true })).routes[0]!.cache, { ...DEFAULTS.cache, key: ['host'] });
  const c = validateConfig(configWith({ cache: { maxSize: '8MiB', maxEntrySize: '64KiB', staleIfError: '10m', staleWhileRevalidate: '5s', lockTimeout: '2s', key: ['Host', 'Accept-Language'] } })).routes[0]!.cache;
  assert.deepEqual(c, { maxSize: 8 * 1024 * 1024, maxEntrySize: 64 * 1024, staleIfError: 600_000, staleWhileRevalidate: 5_000, lockTimeout: 2_000, key: ['host', 'accept-language'] });
  assert.equal(validateConfig(configWith({ cache: false })).routes[0]!.cache, undefined);
  assert.equal(validateConfig(configWith({})).routes[0]!.cache, undefined);
});

test('config: bad cache settings are refused with their path', () => {
  const problems = (route: Record<string, unknown>): string[] => {
    try {
      validateConfig(configWith(route));
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => `${p.path}: ${p.message}`);
    }
    return [];
  };
  assert.match(problems({ cache: { maxSise: '1MiB' } }).join('\n'), /routes\[0\]\.cache\.maxSise/);
  assert.match(problems({ cache: { maxEntrySize: '2MiB', maxSize: '1MiB' } }).join('\n'), /routes\[0\]\.cache\.maxEntrySize: 2MiB is larger than maxSize/);
  assert.match(problems({ cache: { staleIfError: 'soon' } }).join('\n'), /routes\[0\]\.cache\.staleIfError/);
  assert.match(problems({ cache: 'yes' }).join('\n'), /routes\[0\]\.cache/);
});

test('gateway: a route with cache answers hits itself, serves stale when every instance answers 503, counts and logs it; a route without cache is untouched', { timeout: 30_000 }, async () => {
  let failing = false;
  const backend = await startBackend('shop', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (failing) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('down');
      return;
    }
    // /fresh stays fresh; /stale is stale at once but may be served stale for a minute.
    res.writeHead(200, { 'cache-control': req.url!.includes('/fresh') ? 'max-age=60' : 'max-age=0, stale-if-error=60', 'content-type': 'text/plain' });
    res.end(`body of ${req.url}`);
  });
  defer(() => backend.close());
  const config = shopConfig([backend.address], { healthCheck: false });
  const gw = track(await startGateway({ ...config, log: { level: 'info', access: 'off' }, routes: [{ prefix: '/c', service: 'shop', cache: true }, { prefix: '/', service: 'shop' }] }));

  const get = async (path: string) => {
    const r = await fetch(`${gw.url}${path}`);
    return { status: r.status, cache: r.headers.get('x-tandem-cache'), warning: r.headers.get('warning'), body: await r.text() };
  };
  assert.deepEqual(await get('/c/fresh'), { status: 200, cache: 'miss', warning: null, body: 'body of /c/fresh' });
  assert.deepEqual(await get('/c/fresh'), { status: 200, cache: 'hit', warning: null, body: 'body of /c/fresh' });
  assert.equal(backend.seen.filter((s) => s.url === '/c/fresh').length, 1);
  assert.equal((await get('/c/stale')).cache, 'miss');
  assert.equal((await get('/plain')).cache, null);

  failing = true;
  assert.deepEqual(await get('/c/stale'), { status: 200, cache: 'stale', warning: '111 - "Revalidation Failed"', body: 'body of /c/stale' });
  assert.equal((await get('/plain')).status, 503);
  const origin = await gw.waitForLog((l) => l.event === 'cache-origin');
  assert.deepEqual([origin.route, origin.service, origin.failing, origin.reason], ['/c', 'shop', true, 'status']);
  const line = await gw.waitForLog((l) => l.msg === 'served stale');
  assert.deepEqual([line.route, line.path, line.reason], ['/c', '/c/stale', 'status']);

  assert.equal(await metricSum(gw, /^tandem_cache_hits_total\{route="\/c"\}/), 1);
  assert.equal(await metricSum(gw, /^tandem_cache_stale_total\{route="\/c",reason="status"\}/), 1);
  assert.ok(await metricSum(gw, /^tandem_cache_bytes\{route="\/c"\}/) > 0);
  assert.equal(await metricSum(gw, /^tandem_cache_entries\{route="\/c"\}/), 2);
  const cluster = await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json() as { caches: Array<{ route: string; hits: number; stale: Record<string, number> }> };
  assert.deepEqual(cluster.caches.map((c) => [c.route, c.hits, c.stale.status]), [['/c', 1, 1]]);
});

test('tandem/client: a caller adds the cache to its steps and gets the same semantics', { timeout: 20_000 }, async () => {
  const backend = await startBackend('prices', (req, res) => {
    req.resume();
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' });
    res.end('42');
  });
  defer(() => backend.close());
  const { createClient, cacheStep, ResponseCache } = await import('../src/client/index.js');
  const cache = new ResponseCache({ maxSize: 1024 * 1024 });
  const client = createClient('prices', { endpoints: [backend.address], settings: { healthCheck: false }, steps: [cacheStep(cache)] });
  defer(() => client.close());
  const first = await client.request({ path: '/p/1' });
  const second = await client.request({ path: '/p/1' });
  assert.deepEqual([first.headers['x-tandem-cache'], second.headers['x-tandem-cache'], second.body.toString()], ['miss', 'hit', '42']);
  assert.equal(backend.seen.length, 1);
  assert.equal(cache.stats.hits, 1);
});

test('reload: a route keeps its cache (and entries) while its cache settings stay the same; changed settings start empty, a route gone drops its cache', async () => {
  const { RouteCaches } = await import('../src/gateway/route-caches.js');
  const { createLogger } = await import('../src/observe/log.js');
  const caches = new RouteCaches(createLogger('silent'));
  const routesOf = (raw: unknown) => validateConfig(raw).routes;
  const first = routesOf({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/a', service: 'shop', cache: true }, { prefix: '/b', service: 'shop', cache: true }] });
  const before = caches.configure(first);
  const same = caches.configure(routesOf({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/a', service: 'shop', cache: true }, { prefix: '/b', service: 'shop', cache: { maxSize: '1MiB' } }] }));
  assert.equal([...same.values()][0], [...before.values()][0]);
  assert.notEqual([...same.values()][1], [...before.values()][1]);
  caches.configure(routesOf({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/a', service: 'shop' }] }));
  assert.equal(caches.size, 0);
});

test('a failing origin is probed with one attempt per holdoff: the probe is not retried on the other instances (its stale answer is there)', { timeout: 30_000 }, async () => {
  let failing = false;
  const answer = (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (failing) {
      res.writeHead(503, { 'content-type': 'text/plain' }).end('down');
      return;
    }
    res.writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=60', 'content-type': 'text/plain' }).end(`body of ${req.url}`);
  };
  const backends = [await startBackend('a', answer), await startBackend('b', answer), await startBackend('c', answer)];
  defer(() => Promise.all(backends.map((b) => b.close())));
  const seen = () => backends.reduce((n, b) => n + b.seen.filter((s) => s.url === '/c/k').length, 0);
  const config = shopConfig(backends.map((b) => b.address), { healthCheck: false, outlier: { consecutiveFailures: 1000 }, balancer: 'round-robin', retry: { attempts: 3, budget: { percent: 100, minPerSecond: 100 } } });
  const gw = track(await startGateway({ ...config, log: { level: 'info', access: 'off' }, routes: [{ prefix: '/c', service: 'shop', cache: true }] }));
  const get = async () => {
    const r = await fetch(`${gw.url}/c/k`);
    await r.arrayBuffer();
    return r.headers.get('x-tandem-cache');
  };
  assert.equal(await get(), 'miss');
  failing = true;
  // The first request to find the origin failing is an ordinary one: retried on the others.
  const before = seen();
  assert.equal(await get(), 'stale');
  assert.equal(seen() - before, 3, 'the request that found the origin failing went to all three');
  // Then stale answers without asking, until one request probes: one origin request, no retry.
  const probes: number[] = [];
  while (probes.length < 3) {
    const n = seen();
    assert.equal(await get(), 'stale');
    if (seen() > n) probes.push(seen() - n);
  }
  assert.deepEqual(probes, [1, 1, 1], 'each probe asked the origin once');
});
