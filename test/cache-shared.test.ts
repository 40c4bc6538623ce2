import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Redis } from 'ioredis';
import { startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';
import { validateConfig } from '../src/config/validate.js';
import { Upstream } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { FakeClock } from '../src/core/clock.js';
import { ERROR_HOLDOFF_MS } from '../src/cache/response-cache.js';
import { cacheStep, RedisLevel, ResponseCache } from '../src/cache/index.js';

/**
 * Two response caches in one process sharing the machine's Redis (a key prefix of the test's
 * own, deleted after), each in front of its own Upstream, on one FakeClock: the shared level's
 * arithmetic (ages across processes, holdoffs) without waiting for real time.
 */

const { defer } = cleanupAfterAll();
const URL = 'redis://127.0.0.1:6379';

function answer(status: number, body: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    req.resume();
    res.writeHead(status, status === 200 ? { 'cache-control': 'max-age=1, stale-if-error=60' } : {});
    res.end(body);
  };
}

async function pair(o: Backend, clock: FakeClock): Promise<Array<(path: string) => Promise<string>>> {
  const keyPrefix = `tandem:test:cache:${randomUUID()}:`;
  defer(async () => {
    const redis = new Redis(URL);
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  });
  const config = validateConfig(shopConfig([o.address], { healthCheck: false, retry: false, timeout: '10s' }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  return Promise.all([0, 1].map(async () => {
    const shared = new RedisLevel({ url: URL, keyPrefix, timeoutMs: 5_000, wallClock: () => clock.now() });
    defer(() => shared.close());
    await waitFor('Redis to be connected', () => shared.available);
    const upstream = new Upstream(upstreamSettingsOf(config), [cacheStep(new ResponseCache({}, { clock, shared }))], { clock, random: () => 0 });
    defer(() => upstream.destroy());
    return (path: string) => new Promise<string>((resolve) => {
      const chunks: Buffer[] = [];
      upstream.dispatch({ method: 'GET', path, headers: ['host', 'shop.test'], body: null, hashKey: undefined, bodyLimit: Infinity }, {
        onStart() {},
        onHeaders: () => true,
        onData: (c) => { chunks.push(c); return true; },
        onComplete: () => resolve(Buffer.concat(chunks).toString()),
        onError: (e) => resolve(e.code),
      });
    });
  }));
}

test('a cache that saw the origin fail takes another process\'s fresh fill from Redis as the origin answering again', async () => {
  let reply = answer(200, 'good');
  const o = await startBackend('origin', (req, res) => reply(req, res));
  defer(() => o.close());
  const clock = new FakeClock(1_000_000);
  const [a, b] = await pair(o, clock);
  for (const path of ['/a', '/b']) assert.equal(await a!(path), 'good');
  for (const path of ['/a', '/b']) assert.equal(await b!(path), 'good');
  assert.equal(o.seen.length, 2, 'the second cache took both from Redis');
  reply = answer(503, 'down');
  clock.advance(2_000);
  assert.equal(await a!('/a'), 'good');
  assert.equal(await b!('/b'), 'good', 'stale: both caches saw the origin fail');
  reply = answer(200, 'new');
  clock.advance(ERROR_HOLDOFF_MS);
  assert.equal(await a!('/a'), 'new', 'the first cache\'s probe finds the origin back');
  assert.equal(await b!('/a'), 'new', 'the second cache\'s probe is answered from Redis');
  assert.equal(await b!('/b'), 'new', 'and it no longer holds the origin off for other keys');
});
