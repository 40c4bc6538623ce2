import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { validateConfig } from '../src/config/validate.js';
import { Upstream } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { FakeClock } from '../src/core/clock.js';
import { ERROR_HOLDOFF_MS } from '../src/cache/response-cache.js';
import { cacheStep, ResponseCache, STALE_REASONS, type CacheSettingsInput, type StaleEvent } from '../src/cache/index.js';
import type { Step } from '../src/upstream/pipeline.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/**
 * The response cache as a step of a real Upstream, against real backends on 127.0.0.1. Freshness
 * and staleness are measured on a FakeClock shared by the cache and the engine: every second of
 * age is one the test advanced, no assertion depends on how long anything took.
 */

const { defer } = cleanupAfterAll();

/** A backend whose answer the test sets (and changes) through `reply`; it counts requests in `seen`. */
async function origin(reply: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend & { set(r: typeof reply): void }> {
  let current = reply;
  const b = await startBackend('origin', (req, res) => {
    req.resume();
    req.on('end', () => current(req, res));
  });
  defer(() => b.close());
  return Object.assign(b, { set(r: typeof reply) { current = r; } });
}

function answer(status: number, headers: Record<string, string>, body = 'v1'): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain', ...headers });
    res.end(body);
  };
}

interface Setup {
  upstream: Upstream;
  cache: ResponseCache;
  clock: FakeClock;
  stale: StaleEvent[];
  /** Requests the cache sent on to the engine (counted synchronously, before any reaches the origin). */
  forwarded: { count: number };
}

function setup(backends: readonly Backend[], settings: CacheSettingsInput = {}, service: Record<string, unknown> = {}): Setup {
  const clock = new FakeClock(1_000_000);
  const stale: StaleEvent[] = [];
  const cache = new ResponseCache(settings, { clock, onStale: (e) => stale.push(e) });
  const config = validateConfig(shopConfig(backends.map((b) => b.address), { healthCheck: false, balancer: 'round-robin', timeout: '10s', retry: false, ...service }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  const forwarded = { count: 0 };
  const counting: Step = (next) => (request, handler) => {
    forwarded.count++;
    next(request, handler);
  };
  const upstream = new Upstream(upstreamSettingsOf(config), [cacheStep(cache), counting], { clock, random: () => 0 });
  defer(() => upstream.destroy());
  return { upstream, cache, clock, stale, forwarded };
}

interface Outcome { status: number; headers: Record<string, string>; body: string; code: string | undefined }

function send(upstream: Upstream, path: string, options: { method?: string; headers?: string[]; host?: string } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    let status = 0;
    const headers: Record<string, string> = {};
    const chunks: Buffer[] = [];
    upstream.dispatch({ method: options.method ?? 'GET', path, headers: ['host', options.host ?? 'shop.test', ...(options.headers ?? [])], body: null, hashKey: undefined, bodyLimit: Infinity }, {
      onStart() {},
      onHeaders(s, raw) {
        status = s;
        for (let i = 0; i < raw.length; i += 2) headers[raw[i]!.toString().toLowerCase()] = raw[i + 1]!.toString();
        return true;
      },
      onData(c) { chunks.push(c); return true; },
      onComplete: () => resolve({ status, headers, body: Buffer.concat(chunks).toString(), code: undefined }),
      onError: (error) => resolve({ status: error.status, headers, body: '', code: error.code }),
    });
  });
}

/** The entry a plain GET of `path` finds. */
function entryOf(cache: ResponseCache, path: string): ReturnType<ResponseCache['usable']> {
  const request = { method: 'GET', path, headers: ['host', 'shop.test'], body: null, hashKey: undefined, bodyLimit: 0 };
  return cache.usable(cache.keyOf(request), request);
}

const staleCount = (cache: ResponseCache, reason: string): number => cache.stats.stale[STALE_REASONS.indexOf(reason as never)]!;

/** Resolves once `cond` holds, looking after each turn of the event loop; the test's timeout bounds it. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

test('a fresh entry answers without the origin, with Age counted on the clock; past max-age the origin is asked again', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }));
  const { upstream, cache, clock } = setup([o]);
  const first = await send(upstream, '/a');
  assert.equal(first.headers['x-tandem-cache'], 'miss');
  clock.advance(5_000);
  const second = await send(upstream, '/a');
  assert.deepEqual([second.status, second.body, second.headers['x-tandem-cache'], second.headers.age], [200, 'v1', 'hit', '5']);
  assert.equal(second.headers['content-length'], '2');
  assert.equal(o.seen.length, 1);
  clock.advance(55_000);
  o.set(answer(200, { 'cache-control': 'max-age=60' }, 'v2'));
  const third = await send(upstream, '/a');
  assert.deepEqual([third.body, third.headers['x-tandem-cache']], ['v2', 'miss']);
  assert.equal(o.seen.length, 2);
  assert.deepEqual([cache.stats.hits, cache.stats.misses], [1, 2]);
});

test('the key: path with query and the Host header; another query is another entry', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }));
  const { upstream } = setup([o]);
  await send(upstream, '/a?x=1');
  await send(upstream, '/a?x=2');
  await send(upstream, '/a?x=1');
  assert.equal(o.seen.length, 2);
  await send(upstream, '/a?x=1', { host: 'other.test' });
  assert.equal(o.seen.length, 3);
});

test('not stored: no-store, private, Set-Cookie, no stated freshness, Vary: *; a request with no-store is passed on', async () => {
  const cases: Array<Record<string, string>> = [{ 'cache-control': 'no-store, max-age=60' }, { 'cache-control': 'private, max-age=60' }, { 'cache-control': 'max-age=60', 'set-cookie': 'a=b' }, {}, { 'cache-control': 'max-age=60', vary: '*' }];
  for (const headers of cases) {
    const o = await origin(answer(200, headers));
    const { upstream, cache } = setup([o]);
    await send(upstream, '/a');
    await send(upstream, '/a');
    assert.equal(o.seen.length, 2, JSON.stringify(headers));
    assert.equal(cache.entries, 0);
  }
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }));
  const { upstream } = setup([o]);
  await send(upstream, '/a');
  await send(upstream, '/a', { headers: ['cache-control', 'no-store'] });
  assert.equal(o.seen.length, 2);
});

test('Expires − Date is the lifetime when there is no max-age; s-maxage wins over max-age', async () => {
  const date = new Date('2026-01-01T00:00:00Z');
  const o = await origin(answer(200, { date: date.toUTCString(), expires: new Date(date.getTime() + 30_000).toUTCString() }));
  const { upstream, clock } = setup([o]);
  await send(upstream, '/e');
  clock.advance(29_000);
  assert.equal((await send(upstream, '/e')).headers['x-tandem-cache'], 'hit');
  clock.advance(1_000);
  assert.equal((await send(upstream, '/e')).headers['x-tandem-cache'], 'miss');
  const s = await origin(answer(200, { 'cache-control': 'max-age=1, s-maxage=100' }));
  const t = setup([s]);
  await send(t.upstream, '/s');
  t.clock.advance(50_000);
  assert.equal((await send(t.upstream, '/s')).headers['x-tandem-cache'], 'hit');
});

test('requests with Authorization or cookies: answered from the cache only by responses marked public', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }));
  const { upstream } = setup([o]);
  await send(upstream, '/p', { headers: ['authorization', 'Bearer x'] });
  await send(upstream, '/p', { headers: ['authorization', 'Bearer x'] });
  assert.equal(o.seen.length, 2);
  await send(upstream, '/p');
  await send(upstream, '/p', { headers: ['cookie', 'a=b'] });
  assert.equal(o.seen.length, 4, 'the entry without public is not shared with a cookie request');
  const pub = await origin(answer(200, { 'cache-control': 'public, max-age=60' }));
  const p = setup([pub]);
  await send(p.upstream, '/p', { headers: ['authorization', 'Bearer x'] });
  assert.equal((await send(p.upstream, '/p', { headers: ['authorization', 'Bearer y'] })).headers['x-tandem-cache'], 'hit');
});

test('Vary: one entry per value of the named request header', async () => {
  const o = await origin((req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'Accept-Language' });
    res.end(String(req.headers['accept-language']));
  });
  const { upstream } = setup([o]);
  assert.equal((await send(upstream, '/v', { headers: ['accept-language', 'de'] })).body, 'de');
  assert.equal((await send(upstream, '/v', { headers: ['accept-language', 'fr'] })).body, 'fr');
  const de = await send(upstream, '/v', { headers: ['accept-language', 'de'] });
  assert.deepEqual([de.body, de.headers['x-tandem-cache']], ['de', 'hit']);
  assert.equal(o.seen.length, 2);
});

test('HEAD is answered from the GET entry, without a body — also stale when the origin fails; a HEAD fills nothing', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }, 'hello'));
  const { upstream, clock } = setup([o]);
  await send(upstream, '/h');
  const head = await send(upstream, '/h', { method: 'HEAD' });
  assert.deepEqual([head.status, head.body, head.headers['content-length'], head.headers['x-tandem-cache']], [200, '', '5', 'hit']);
  assert.equal(o.seen.length, 1);
  const miss = await send(upstream, '/other', { method: 'HEAD' });
  assert.deepEqual([miss.status, miss.headers['x-tandem-cache']], [200, 'miss']);
  assert.equal((await send(upstream, '/other')).headers['x-tandem-cache'], 'miss', 'a HEAD fills nothing');
  o.set(answer(503, {}));
  clock.advance(61_000);
  const stale = await send(upstream, '/h', { method: 'HEAD' });
  assert.deepEqual([stale.status, stale.body, stale.headers['x-tandem-cache']], [200, '', 'stale']);
});

test('an unsafe method that succeeds drops the entry for its URL; one that fails does not', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }));
  const { upstream } = setup([o]);
  await send(upstream, '/u');
  o.set((req, res) => (req.method === 'POST' ? answer(400, {})(req, res) : answer(200, { 'cache-control': 'max-age=60' }, 'v2')(req, res)));
  await send(upstream, '/u', { method: 'POST' });
  assert.equal((await send(upstream, '/u')).body, 'v1');
  o.set((req, res) => (req.method === 'DELETE' ? answer(204, {})(req, res) : answer(200, { 'cache-control': 'max-age=60' }, 'v2')(req, res)));
  await send(upstream, '/u', { method: 'DELETE' });
  assert.equal((await send(upstream, '/u')).body, 'v2');
});

test('a stale entry is revalidated with its ETag and Last-Modified; a 304 refreshes it and the stored body is served', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=10', etag: '"e1"', 'last-modified': 'Wed, 01 Jan 2026 00:00:00 GMT', 'x-version': '1' }, 'body'));
  const { upstream, cache, clock } = setup([o]);
  await send(upstream, '/r');
  clock.advance(10_000);
  o.set((req, res) => {
    assert.equal(req.headers['if-none-match'], '"e1"');
    assert.equal(req.headers['if-modified-since'], 'Wed, 01 Jan 2026 00:00:00 GMT');
    res.writeHead(304, { 'cache-control': 'max-age=20', etag: '"e1"', 'x-version': '2' });
    res.end();
  });
  const r = await send(upstream, '/r');
  assert.deepEqual([r.status, r.body, r.headers['x-tandem-cache'], r.headers['x-version'], r.headers.age], [200, 'body', 'revalidated', '2', '0']);
  clock.advance(19_000);
  assert.equal((await send(upstream, '/r')).headers['x-tandem-cache'], 'hit', 'the 304 gave the entry a new max-age');
  assert.equal(o.seen.length, 2);
  assert.equal(cache.stats.revalidated, 1);
});

test('no-cache responses are kept to revalidate every time, never served stale', async () => {
  const o = await origin(answer(200, { 'cache-control': 'no-cache', etag: '"n"' }));
  const { upstream } = setup([o]);
  await send(upstream, '/n');
  o.set((_req, res) => { res.writeHead(304, { etag: '"n"' }); res.end(); });
  assert.equal((await send(upstream, '/n')).headers['x-tandem-cache'], 'revalidated');
  o.set(answer(503, {}, 'down'));
  assert.equal((await send(upstream, '/n')).status, 503);
});

test('stale-if-error: a 5xx from the origin is replaced by the stale entry, marked, counted and logged once per reason — until the window ends', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-if-error=30' }, 'good'));
  const { upstream, cache, clock, stale } = setup([o]);
  await send(upstream, '/s');
  o.set(answer(503, {}, 'down'));
  clock.advance(2_000);
  const r = await send(upstream, '/s');
  assert.deepEqual([r.status, r.body, r.headers['x-tandem-cache'], r.headers.warning, r.headers.age], [200, 'good', 'stale', '111 - "Revalidation Failed"', '2']);
  await send(upstream, '/s');
  assert.equal(staleCount(cache, 'status'), 2);
  assert.deepEqual(stale, [{ path: '/s', reason: 'status', staleMs: 1_000 }]);
  clock.advance(29_000);
  assert.equal((await send(upstream, '/s')).status, 503, 'past max-age + stale-if-error the failure is the answer');
});

test('after the origin failed, stale entries are served without asking it for ERROR_HOLDOFF_MS; then one request probes it', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'good'));
  const { upstream, cache, clock } = setup([o]);
  await send(upstream, '/a');
  await send(upstream, '/b');
  o.set(answer(503, {}, 'down'));
  clock.advance(2_000);
  assert.equal((await send(upstream, '/a')).headers['x-tandem-cache'], 'stale');
  assert.equal(o.seen.length, 3);
  clock.advance(ERROR_HOLDOFF_MS - 1);
  for (const key of ['/a', '/b', '/a']) assert.equal((await send(upstream, key)).body, 'good');
  assert.equal(o.seen.length, 3, 'no origin request while it is taken to be failing');
  clock.advance(1);
  let hold: (() => void) | undefined;
  o.set((req, res) => { hold = () => answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'new')(req, res); });
  const probe = send(upstream, '/b');
  await until(() => hold !== undefined);
  assert.equal((await send(upstream, '/a')).body, 'good', 'while the probe is out, the others are answered stale');
  o.set(answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'new'));
  hold!();
  assert.equal((await probe).body, 'new', 'the probe finds the origin back');
  assert.equal((await send(upstream, '/a')).body, 'new');
  assert.equal(staleCount(cache, 'status'), 5);
});

test('a failed refresh is not sent again for ERROR_HOLDOFF_MS: that key is served stale meanwhile (a 500 holds off only its own key)', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'good'));
  const { upstream, cache, clock } = setup([o]);
  await send(upstream, '/a');
  await send(upstream, '/b');
  clock.advance(2_000);
  o.set(answer(200, { 'cache-control': 'max-age=60' }, 'fresh'));
  await send(upstream, '/c');
  o.set(answer(500, {}, 'bug'));
  assert.deepEqual([(await send(upstream, '/a')).body, o.seen.length], ['good', 4]);
  for (let i = 0; i < 3; i++) assert.equal((await send(upstream, '/a')).headers['x-tandem-cache'], 'stale');
  assert.equal(o.seen.length, 4, 'the failed key is not asked again at once');
  assert.equal((await send(upstream, '/b')).body, 'good');
  assert.equal(o.seen.length, 5, 'a 500 is one URL\'s: another key still asks');
  const c = await send(upstream, '/c');
  assert.deepEqual([c.body, c.headers['x-tandem-cache']], ['fresh', 'hit'], 'a fresh entry is a hit whatever failed');
  clock.advance(ERROR_HOLDOFF_MS);
  assert.equal((await send(upstream, '/a')).body, 'good');
  assert.equal(o.seen.length, 6, 'past the holdoff the key is asked again');
  assert.equal(staleCount(cache, 'status'), 6);
});

test('stale-while-revalidate: a failed background refresh is not sent again on the next requests, for ERROR_HOLDOFF_MS', async () => {
  for (const cc of ['max-age=1, stale-while-revalidate=30', 'max-age=1, stale-while-revalidate=30, stale-if-error=0']) {
    const o = await origin(answer(200, { 'cache-control': cc }, 'v1'));
    const { upstream, cache, clock, forwarded } = setup([o]);
    await send(upstream, '/w');
    clock.advance(2_000);
    o.set(answer(500, {}, 'bug'));
    assert.equal((await send(upstream, '/w')).body, 'v1');
    assert.equal(forwarded.count, 2, 'one background refresh');
    await until(() => o.seen.length === 2);
    await until(() => entryOf(cache, '/w')?.refreshing === false);
    for (let i = 0; i < 3; i++) assert.deepEqual([(await send(upstream, '/w')).body, forwarded.count], ['v1', 2], cc);
    clock.advance(ERROR_HOLDOFF_MS);
    assert.equal((await send(upstream, '/w')).body, 'v1');
    assert.equal(forwarded.count, 3, 'past the holdoff, one refresh again');
  }
});

test('stale-if-error defaults to the cache\'s staleIfError when the response says nothing; must-revalidate forbids it', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1' }, 'good'));
  const { upstream, clock } = setup([o], { staleIfErrorMs: 5_000 });
  await send(upstream, '/d');
  o.set(answer(500, {}));
  clock.advance(5_500);
  assert.equal((await send(upstream, '/d')).body, 'good');
  clock.advance(1_000);
  assert.equal((await send(upstream, '/d')).status, 500);
  const m = await origin(answer(200, { 'cache-control': 'max-age=1, must-revalidate' }, 'good'));
  const t = setup([m]);
  await send(t.upstream, '/m');
  m.set(answer(502, {}));
  t.clock.advance(2_000);
  assert.equal((await send(t.upstream, '/m')).status, 502);
});

test('stale-if-error when no instance can take the request, and when the origin cannot be reached', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'good'));
  const { upstream, cache, clock } = setup([o]);
  await send(upstream, '/x');
  clock.advance(2_000);
  upstream.setMembers([]);
  const none = await send(upstream, '/x');
  assert.deepEqual([none.status, none.body, none.headers['x-tandem-cache']], [200, 'good', 'stale']);
  assert.equal(staleCount(cache, 'no-endpoint'), 1);
  await o.close();
  upstream.setMembers([{ host: '127.0.0.1', port: o.port, weight: 1 }]);
  clock.advance(ERROR_HOLDOFF_MS); // past the holdoff the origin is tried again
  const refused = await send(upstream, '/x');
  assert.deepEqual([refused.status, refused.body], [200, 'good']);
  assert.equal(staleCount(cache, 'error'), 1);
});

test('stale-if-error when the deadline runs out', async () => {
  let hold: ServerResponse | undefined;
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-if-error=60' }, 'good'));
  const { upstream, cache, clock } = setup([o], {}, { timeout: '200ms' });
  await send(upstream, '/t');
  o.set((_req, res) => { hold = res; });
  clock.advance(2_000);
  const r = await send(upstream, '/t');
  assert.deepEqual([r.status, r.body, r.headers['x-tandem-cache']], [200, 'good', 'stale']);
  assert.equal(staleCount(cache, 'timeout'), 1);
  hold?.destroy();
});

test('stale-while-revalidate: the stale entry is served at once and one background request refreshes it', async () => {
  const o = await origin(answer(200, { 'cache-control': 'max-age=1, stale-while-revalidate=30' }, 'v1'));
  const { upstream, cache, clock } = setup([o]);
  await send(upstream, '/w');
  clock.advance(2_000);
  let release: (() => void) | undefined;
  o.set((_req, res) => { release = () => answer(200, { 'cache-control': 'max-age=60' }, 'v2')(_req, res); });
  const answers = await Promise.all([send(upstream, '/w'), send(upstream, '/w'), send(upstream, '/w')]);
  for (const a of answers) assert.deepEqual([a.body, a.headers['x-tandem-cache'], a.headers.warning], ['v1', 'stale', '110 - "Response is Stale"']);
  await until(() => release !== undefined);
  assert.equal(o.seen.length, 2, 'one refresh for three stale answers');
  release!();
  await until(() => cache.usable(cache.keyOf({ method: 'GET', path: '/w', headers: ['host', 'shop.test'], body: null, hashKey: undefined, bodyLimit: 0 }), { method: 'GET', path: '/w', headers: ['host', 'shop.test'], body: null, hashKey: undefined, bodyLimit: 0 })?.body.toString() === 'v2');
  const fresh = await send(upstream, '/w');
  assert.deepEqual([fresh.body, fresh.headers['x-tandem-cache']], ['v2', 'hit']);
  assert.equal(staleCount(cache, 'updating'), 3);
});

test('collapsed forwarding: concurrent misses for one key send one request; the others are answered from its entry', async () => {
  const held: Array<() => void> = [];
  const o = await origin((req, res) => held.push(() => answer(200, { 'cache-control': 'max-age=60' }, 'one')(req, res)));
  const { upstream, cache } = setup([o]);
  const all = Promise.all(Array.from({ length: 5 }, () => send(upstream, '/c')));
  await until(() => held.length === 1 && cache.stats.coalesced === 4);
  held[0]!();
  const answers = await all;
  assert.deepEqual(answers.map((a) => a.body), ['one', 'one', 'one', 'one', 'one']);
  assert.equal(o.seen.length, 1);
  assert.deepEqual([cache.stats.misses, cache.stats.hits, cache.stats.coalesced], [1, 4, 4]);
});

test('collapsed forwarding: an uncacheable answer releases the waiting requests at once, before its body ends', async () => {
  let leader: ServerResponse | undefined;
  const o = await origin((_req, res) => {
    if (leader === undefined) {
      leader = res;
      res.writeHead(200, { 'cache-control': 'no-store' });
      res.write('partial');
    } else answer(200, { 'cache-control': 'no-store' }, 'own')(_req, res);
  });
  const { upstream, cache } = setup([o]);
  const first = send(upstream, '/q');
  await until(() => leader !== undefined);
  const others = await Promise.all([send(upstream, '/q'), send(upstream, '/q')]);
  assert.deepEqual(others.map((a) => a.body), ['own', 'own']);
  assert.equal(o.seen.length, 3);
  leader!.end();
  assert.equal((await first).body, 'partial');
  assert.equal(cache.entries, 0);
});

test('collapsed forwarding: a waiter goes to the origin itself after lockTimeout', async () => {
  const held: Array<() => void> = [];
  const o = await origin((req, res) => held.push(() => answer(200, { 'cache-control': 'max-age=60' }, 'late')(req, res)));
  const { upstream, cache, clock } = setup([o], { lockTimeoutMs: 3_000 });
  const first = send(upstream, '/l');
  const second = send(upstream, '/l');
  await until(() => held.length === 1 && cache.stats.coalesced === 1);
  clock.advance(2_999);
  await new Promise((r) => setImmediate(r));
  assert.equal(held.length, 1);
  clock.advance(1);
  await until(() => held.length === 2);
  for (const h of held) h();
  assert.deepEqual([(await first).body, (await second).body], ['late', 'late']);
});

test('a body larger than maxEntrySize is streamed through whole and not kept (declared or not)', async () => {
  const big = 'x'.repeat(200_000);
  const o = await origin(answer(200, { 'cache-control': 'max-age=60' }, big));
  const { upstream, cache } = setup([o], { maxEntrySize: 100_000 });
  assert.equal((await send(upstream, '/big')).body.length, 200_000);
  assert.equal((await send(upstream, '/big')).headers['x-tandem-cache'], 'miss');
  o.set((_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60' });
    for (let i = 0; i < 20; i++) res.write('y'.repeat(10_000));
    res.end();
  });
  const chunked = await send(upstream, '/chunked');
  assert.equal(chunked.body, 'y'.repeat(200_000));
  assert.equal((await send(upstream, '/chunked')).headers['x-tandem-cache'], 'miss');
  assert.equal(cache.entries, 0);
});

test('memory is bounded by bytes: least recently used entries are evicted and counted', async () => {
  const o = await origin((req, res) => answer(200, { 'cache-control': 'max-age=60' }, 'z'.repeat(10_000))(req, res));
  const { upstream, cache } = setup([o], { maxSize: 25_000, maxEntrySize: 20_000 });
  await send(upstream, '/1');
  await send(upstream, '/2');
  await send(upstream, '/1'); // /1 is now the most recently used
  await send(upstream, '/3');
  assert.ok(cache.bytes <= 25_000);
  assert.equal(cache.stats.evictions, 1);
  assert.equal((await send(upstream, '/1')).headers['x-tandem-cache'], 'hit');
  assert.equal((await send(upstream, '/2')).headers['x-tandem-cache'], 'miss');
});
