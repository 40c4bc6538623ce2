import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Redis } from 'ioredis';
import { freePort, shopConfig, startBackend, type Backend } from './helpers/backend.js';
import { metricSum, startGateway, type RunningGateway } from './helpers/gateway.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';
import { DEFAULTS, validateConfig } from '../src/config/index.js';

/**
 * The cache's Redis level, with real gateway processes sharing a real Redis: the machine's
 * (127.0.0.1:6379, a key prefix of their own, removed after) or, to take Redis away, a private
 * redis-server on a free port that the test kills.
 */

const { defer, track } = cleanupAfterAll();
const SHARED_REDIS = 'redis://127.0.0.1:6379';
/** A Redis command timeout no loaded test machine reaches (the default 100 ms would open the circuit there). */
const LOADED = '5s';

/** A key prefix of this test's own, its keys deleted after all tests. */
function prefix(): string {
  const p = `tandem:test:cache:${randomUUID()}:`;
  defer(async () => {
    const redis = new Redis(SHARED_REDIS, { lazyConnect: true });
    await redis.connect();
    const keys = await redis.keys(`${p}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  return p;
}

/** An origin that says `cacheControl` with an ETag (a 304 when it matches); `hold` keeps answers back until released. */
async function origin(cacheControl: string): Promise<Backend & { ctl: { failing: boolean; holding: boolean }; release(): void; count(path: string): number }> {
  const held: Array<() => void> = [];
  const state = { failing: false, holding: false };
  const b = await startBackend('origin', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const answer = (): void => {
      if (state.failing) {
        res.writeHead(503);
        res.end('down');
      } else if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { 'cache-control': cacheControl, etag: '"v1"' });
        res.end();
      } else {
        res.writeHead(200, { 'cache-control': cacheControl, etag: '"v1"', 'content-type': 'text/plain' });
        res.end(`body of ${req.url}`);
      }
    };
    if (state.holding) held.push(answer);
    else answer();
  });
  defer(() => b.close());
  return Object.assign(b, {
    /** failing: every answer 503; holding: answers wait for release(). */
    ctl: state,
    release() {
      state.holding = false;
      for (const answer of held.splice(0)) answer();
    },
    count: (path: string) => b.seen.filter((s) => s.url === path).length,
  });
}

async function gateway(o: Backend, redis: unknown, cache: Record<string, unknown> = {}): Promise<RunningGateway> {
  const gw = track(await startGateway({
    ...shopConfig([o.address], { healthCheck: false, retry: false }),
    log: { level: 'info', access: 'off' },
    // The key without Host: each test gateway has an address of its own (behind one address, Host is the same).
    routes: [{ prefix: '/', service: 'shop', cache: { redis, key: [], ...cache } }],
  }));
  await gw.waitForLog((l) => l.event === 'cache-redis' && l.up === true);
  return gw;
}

async function get(gw: RunningGateway, path: string): Promise<{ status: number; cache: string | null; body: string }> {
  const r = await fetch(`${gw.url}${path}`);
  return { status: r.status, cache: r.headers.get('x-tandem-cache'), body: await r.text() };
}

const redisMetric = (gw: RunningGateway, name: string) => metricSum(gw, new RegExp(`^tandem_cache_redis_${name}_total\\{route="/"\\}`));

/** A redis-server of the test's own, killed after (or by the test). */
async function privateRedis(port?: number): Promise<{ url: string; port: number; proc: ReturnType<typeof spawn>; exited: Promise<unknown> }> {
  const p = port ?? (await freePort());
  const proc = spawn('redis-server', ['--port', String(p), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const server = track({ proc, exited, url: `redis://127.0.0.1:${p}`, port: p });
  const probe = new Redis(server.url, { maxRetriesPerRequest: 0, retryStrategy: () => 20 });
  probe.on('error', () => {});
  await waitFor('the private redis-server to answer', () => probe.status === 'ready');
  probe.disconnect();
  return server;
}

test('config: cache.redis takes a URL or { url, keyPrefix, timeout }, with defaults; other shapes are refused', () => {
  const route = (redis: unknown) => ({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop', cache: { redis } }] });
  const cacheOf = (redis: unknown) => validateConfig(route(redis)).routes[0]!.cache;
  assert.deepEqual((cacheOf('redis://r:6379') || undefined)?.redis, { url: 'redis://r:6379', keyPrefix: DEFAULTS.cacheRedis.keyPrefix, timeout: 100 });
  assert.deepEqual((cacheOf({ url: 'rediss://r:6380', keyPrefix: 'shop:', timeout: '250ms' }) || undefined)?.redis, { url: 'rediss://r:6380', keyPrefix: 'shop:', timeout: 250 });
  assert.throws(() => validateConfig(route('http://r:6379')), /redis/);
  assert.throws(() => validateConfig(route({ url: 'redis://r', ttl: 5 })), /ttl/);
  assert.equal((validateConfig({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop', cache: true }] }).routes[0]!.cache || undefined)?.redis, undefined);
});

test('two gateways sharing Redis: one answers from the other\'s fill; a burst over both sends one origin request per key per expiry', { timeout: 60_000 }, async () => {
  const o = await origin('max-age=1, stale-if-error=60');
  const redis = { url: SHARED_REDIS, keyPrefix: prefix(), timeout: LOADED };
  const [a, b] = [await gateway(o, redis), await gateway(o, redis)];

  assert.deepEqual(await get(a, '/one'), { status: 200, cache: 'miss', body: 'body of /one' });
  assert.deepEqual(await get(b, '/one'), { status: 200, cache: 'hit', body: 'body of /one' });
  assert.equal(o.count('/one'), 1, 'the second gateway took the first one\'s fill from Redis');
  assert.equal(await redisMetric(b, 'hits'), 1);

  const burst = async (): Promise<void> => {
    const waitsBefore = (await redisMetric(a, 'waits')) + (await redisMetric(b, 'waits'));
    o.ctl.holding = true;
    const answers = Promise.all([a, b, a, b, a, b, a, b, a, b, a, b].map((gw) => get(gw, '/burst')));
    // The origin holds the one request it got; one gateway waits for the other's (its Redis lock).
    await waitFor('a gateway to wait on the other\'s fill', async () => (await redisMetric(a, 'waits')) + (await redisMetric(b, 'waits')) > waitsBefore);
    o.release();
    for (const r of await answers) assert.deepEqual([r.status, r.body], [200, 'body of /burst']);
  };
  await burst();
  assert.equal(o.count('/burst'), 1, 'a miss on both gateways: one origin request');
  const filled = Date.now();
  // The entry's max-age is a second of real time: wait for it to pass (a precondition, not a timing assertion).
  await waitFor('the entry to expire', () => Date.now() > filled + 1_100, { intervalMs: 100 });
  await burst();
  assert.equal(o.count('/burst'), 2, 'past its expiry on both gateways: one more origin request');
  assert.equal(o.seen.filter((s) => s.url === '/burst')[1]!.headers['if-none-match'], '"v1"', 'a revalidation');
});

test('two gateways sharing Redis: a gateway that never fetched a key serves it stale from Redis when the origin fails', { timeout: 60_000 }, async () => {
  const o = await origin('max-age=0, stale-if-error=60');
  const redis = { url: SHARED_REDIS, keyPrefix: prefix(), timeout: LOADED };
  const [a, b] = [await gateway(o, redis), await gateway(o, redis)];
  assert.equal((await get(a, '/s')).cache, 'miss');
  o.ctl.failing = true;
  assert.deepEqual(await get(b, '/s'), { status: 200, cache: 'stale', body: 'body of /s' });
  assert.deepEqual(await get(a, '/s'), { status: 200, cache: 'stale', body: 'body of /s' });
});

test('a fill lock whose holder died expires: the waiting gateway then asks the origin itself', { timeout: 60_000 }, async () => {
  const o = await origin('max-age=60');
  const keyPrefix = prefix();
  const gw = await gateway(o, { url: SHARED_REDIS, keyPrefix, timeout: LOADED }, { lockTimeout: '300ms' });
  const redis = new Redis(SHARED_REDIS);
  defer(() => redis.quit());
  // What a gateway that took the lock and died leaves behind (the cache key is the path here).
  assert.equal(await redis.set(`${keyPrefix}/:l:/dead`, 'a dead holder', 'PX', 300, 'NX'), 'OK');
  assert.deepEqual(await get(gw, '/dead'), { status: 200, cache: 'miss', body: 'body of /dead' });
  assert.equal(o.count('/dead'), 1);
  assert.equal(await redisMetric(gw, 'waits'), 1, 'it waited for the lock before going itself');
});

test('Redis going away (killed, then frozen) falls back to the local level: no request fails, errors and fallbacks are counted', { timeout: 60_000 }, async () => {
  const o = await origin('max-age=60');
  let server = await privateRedis();
  const gw = await gateway(o, { url: server.url, timeout: '100ms' });
  assert.equal((await get(gw, '/kept')).cache, 'miss');

  server.proc.kill('SIGKILL');
  await server.exited;
  await gw.waitForLog((l) => l.event === 'cache-redis' && l.up === false);
  assert.equal((await get(gw, '/kept')).cache, 'hit', 'the local level still answers');
  assert.deepEqual(await get(gw, '/new'), { status: 200, cache: 'miss', body: 'body of /new' });
  assert.deepEqual(await get(gw, '/new'), { status: 200, cache: 'hit', body: 'body of /new' });
  assert.ok(await redisMetric(gw, 'fallbacks') >= 1);

  server = await privateRedis(server.port);
  await gw.waitForLog((l) => l.event === 'cache-redis' && l.up === true && gw.logs.filter((x) => x.event === 'cache-redis' && x.up === true).length >= 2);
  assert.equal((await get(gw, '/back')).cache, 'miss');
  server.proc.kill('SIGSTOP');
  defer(async () => { server.proc.kill('SIGCONT'); });
  // Commands now time out: the request goes on without Redis and the circuit opens.
  for (const path of ['/frozen1', '/frozen2', '/frozen1']) assert.equal((await get(gw, path)).status, 200);
  assert.equal((await get(gw, '/frozen1')).cache, 'hit');
  assert.ok(await redisMetric(gw, 'errors') >= 1);
  assert.equal(o.count('/frozen1'), 1);
  server.proc.kill('SIGCONT');
});
