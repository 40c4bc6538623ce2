import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clusterService, metricSum, startGateway, type RunningGateway } from './helpers/gateway.js';
import { answerOk, freePort, kill, spawnBackend, startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { validateConfig } from '../src/config/validate.js';
import { Upstream } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/**
 * Hedging through the real gateway: a GET stuck on one instance gets a second copy on another
 * once it is slower than the service's p95, and the client gets the first answer — long before
 * the timeout. Never for a POST; never past the retry budget.
 */

interface ClusterService { hedges: number; hedgeWins: number; hedgeDelayMs: number | null; budgetExhausted: number }

const { defer } = cleanupAfterAll();

async function gateway(config: Record<string, unknown>): Promise<RunningGateway> {
  const gw = await startGateway(config);
  defer(() => gw.stop());
  return gw;
}

async function backend(name: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const b = await startBackend(name, handler);
  defer(() => b.close());
  return b;
}

/** Answers like answerOk until `stuck.on`; from then on reads requests and never answers. */
function stuckable(name: string) {
  const stuck = { on: false };
  const answer = answerOk(name);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (stuck.on) req.resume();
    else answer(req, res);
  };
  return { stuck, handler };
}

/** Three instances, round-robin (so the stuck one is certainly picked), no health checks. */
async function cluster(service: Record<string, unknown> = {}) {
  const a = stuckable('a');
  const backends = [await backend('a', a.handler), await backend('b', answerOk('b')), await backend('c', answerOk('c'))];
  const gw = await gateway(shopConfig(backends.map((b) => b.address), { healthCheck: false, balancer: 'round-robin', ...service }));
  // 60 quick answers: enough samples (50) for a p95, so the hedge delay is known.
  for (let i = 0; i < 60; i++) assert.equal((await fetch(`${gw.url}/warm?i=${i}`)).status, 200);
  if (service.hedge !== false) await hedgeDelayKnown(gw);
  return { gw, backends, stuck: a.stuck };
}

/** Waits until the gateway has a hedge delay: the percentile is recomputed at most every 100 ms. */
async function hedgeDelayKnown(gw: RunningGateway): Promise<void> {
  while ((await clusterService<ClusterService>(gw, 'shop')).hedgeDelayMs === null) await new Promise((r) => setImmediate(r));
}

/** Exactly the requests the stuck instance got timed out (504), at least one did, the others got 200. */
function assertStuckOnes(statuses: number[], stuckBackend: Backend, marker: string): void {
  const held = stuckBackend.seen.filter((s) => s.url.includes(marker)).length;
  assert.ok(held >= 1, 'round-robin sent the stuck instance at least one of three');
  assert.equal(statuses.filter((s) => s === 504).length, held);
  assert.equal(statuses.filter((s) => s === 200).length, statuses.length - held);
}

async function get(url: string, init?: RequestInit): Promise<{ status: number; body: string }> {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.text() };
}

test('a GET stuck on one instance is hedged to another: every client gets 200, far sooner than the timeout', async (t) => {
  const { gw, backends, stuck } = await cluster({ timeout: '10s' });
  const before = await clusterService<ClusterService>(gw, 'shop');
  assert.equal(typeof before.hedgeDelayMs, 'number', 'a hedge delay once 50 requests were seen');
  assert.ok(before.hedgeDelayMs! >= 10, `the delay is never under minDelay: ${before.hedgeDelayMs}`);
  stuck.on = true;
  const results = [];
  for (let i = 0; i < 30; i++) results.push(await get(`${gw.url}/x?id=${i}`));
  assert.deepEqual(results.map((r) => r.status), results.map(() => 200));
  assert.ok(results.every((r) => r.body === 'b' || r.body === 'c'), 'answers come from the instances that answer');
  // Without hedging a request to the stuck instance would have waited for the 10 s timeout
  // and been retried: none was.
  assert.equal(await metricSum(gw, /^tandem_retries_total\{service="shop",reason="timeout"\}/), 0);
  const stuckSaw = backends[0]!.seen.filter((s) => s.url.startsWith('/x')).length;
  assert.ok(stuckSaw >= 3, `the stuck instance got ${stuckSaw} requests`);
  const after = await clusterService<ClusterService>(gw, 'shop');
  // Every request the stuck instance held was saved by a hedge (a slow moment on a busy machine
  // may add a hedge or two that did not need to win).
  assert.ok(after.hedgeWins >= 3 && after.hedges >= after.hedgeWins, `hedges ${after.hedges}, won ${after.hedgeWins}, stuck instance got ${stuckSaw}`);
  assert.equal(await metricSum(gw, /^tandem_hedges_total\{service="shop"\}/), after.hedges);
  assert.equal(await metricSum(gw, /^tandem_hedge_wins_total\{service="shop"\}/), after.hedgeWins);
  t.diagnostic(`hedges ${after.hedges}, delay ${after.hedgeDelayMs} ms`);
});

test('a POST is never hedged: the one stuck on an instance waits for it alone', async () => {
  const { gw, backends, stuck } = await cluster({ timeout: '1s' });
  const before = await clusterService<ClusterService>(gw, 'shop');
  stuck.on = true;
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await get(`${gw.url}/x?id=post${i}`, { method: 'POST', body: 'p' })).status);
  // Those that went to the stuck instance stayed there until the timeout; the rest were answered.
  assertStuckOnes(statuses, backends[0]!, 'post');
  const posts = backends.flatMap((b) => b.seen.filter((s) => s.url.includes('post')).map((s) => s.url));
  assert.equal(posts.length, 3, `each POST reached one instance once: ${posts.join(' ')}`);
  assert.equal((await clusterService<ClusterService>(gw, 'shop')).hedges, before.hedges);
});

test('hedges draw on the retry budget: with none left, no hedge goes and the refusal is counted', async () => {
  const { gw, backends, stuck } = await cluster({ timeout: '1s', retry: { budget: { percent: 0, minPerSecond: 0 } } });
  stuck.on = true;
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await get(`${gw.url}/x?id=${i}`)).status);
  assertStuckOnes(statuses, backends[0]!, '/x');
  const c = await clusterService<ClusterService>(gw, 'shop');
  assert.equal(c.hedges, 0);
  assert.ok(c.budgetExhausted >= 1, `refusals counted: ${c.budgetExhausted}`);
});

test('hedge: false turns hedging off', async () => {
  const { gw, backends, stuck } = await cluster({ timeout: '1s', hedge: false });
  assert.equal((await clusterService<ClusterService>(gw, 'shop')).hedgeDelayMs, null);
  stuck.on = true;
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) statuses.push((await get(`${gw.url}/x?id=${i}`)).status);
  assertStuckOnes(statuses, backends[0]!, '/x');
  assert.equal((await clusterService<ClusterService>(gw, 'shop')).hedges, 0);
});

test('a hedge that loses the race is cancelled quietly: not an error, not an ejection of its endpoint', async () => {
  const delays = new Map<string, number>([['a', 0], ['b', 0]]);
  const slowable = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    globalThis.setTimeout(() => res.writeHead(200, { 'x-backend': name }).end(name), delays.get(name));
  };
  const backends = [await backend('a', slowable('a')), await backend('b', slowable('b'))];
  const gw = await gateway(shopConfig(backends.map((b) => b.address), { healthCheck: false, balancer: 'consistent-hash', hash: { header: 'x-key' } }));
  // 200 quick samples: the six slow answers below stay under 5 % of them, so the p95 stays low.
  for (let i = 0; i < 200; i++) assert.equal((await fetch(`${gw.url}/warm?i=${i}`)).status, 200);
  await hedgeDelayKnown(gw);
  // A key whose requests go to a first.
  let key = '';
  for (let k = 0; key === ''; k++) {
    const res = await fetch(`${gw.url}/which`, { headers: { 'x-key': `k${k}` } });
    if ((await res.text()) === 'a') key = `k${k}`;
  }
  // A loaded machine may have hedged a quick request or two already: count from here.
  type WithEndpoints = ClusterService & { endpoints: Array<{ id: string; state: string; responses: { error: number } }> };
  const before = await clusterService<WithEndpoints>(gw, 'shop');
  const bErrorsBefore = before.endpoints.find((e) => e.id === backends[1]!.address)!.responses.error;
  delays.set('a', 150);
  delays.set('b', 600);
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${gw.url}/x?i=${i}`, { headers: { 'x-key': key } });
    assert.equal(await res.text(), 'a', 'the first attempt wins the race');
  }
  const c = await clusterService<WithEndpoints>(gw, 'shop');
  assert.equal(c.hedges - before.hedges, 6, 'every request was hedged (150 ms is far past the p95)');
  assert.equal(c.hedgeWins - before.hedgeWins, 0);
  const b = c.endpoints.find((e) => e.id === backends[1]!.address)!;
  assert.equal(b.responses.error, bErrorsBefore, 'the cancelled hedges are not errors of b');
  assert.equal(b.state, 'healthy', 'six cancelled hedges did not eject b');
});

test('a hedge that falls due while the answer is already in (event loop blocked) is not sent: I/O settles the request first', async () => {
  const ports = [await freePort(), await freePort()];
  const procs = await Promise.all(ports.map(spawnBackend));
  defer(() => Promise.all(procs.map(kill)));
  const config = validateConfig(shopConfig(ports.map((p) => `127.0.0.1:${p}`), { healthCheck: false, balancer: 'round-robin' }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  const upstream = new Upstream(upstreamSettingsOf(config));
  defer(() => upstream.close());
  const send = (path: string) => new Promise<number>((resolve, reject) => {
    let status = 0;
    upstream.dispatch({ method: 'GET', path, headers: [], body: null, hashKey: undefined, bodyLimit: Infinity }, {
      onStart() {},
      onHeaders(s) { status = s; return true; },
      onData: () => true,
      onComplete: () => resolve(status),
      onError: reject,
    });
  });
  for (let i = 0; i < 60; i++) assert.equal(await send('/warm'), 200);
  // The percentile is recomputed at most every 100 ms: wait for the first one over the samples.
  while (upstream.retrySnapshot().hedgeDelayMs === null) await new Promise((r) => setImmediate(r));
  const delay = upstream.retrySnapshot().hedgeDelayMs;
  assert.ok(delay !== null && delay < 40, `the hedge delay (${delay} ms) falls due within the 60 ms block`);
  const before = upstream.stats.hedges;
  for (let i = 0; i < 5; i++) {
    const pending = send('/blocked');
    // Once the request is out, the event loop is blocked for 60 ms: the answer arrives (the backend
    // is another process) and the 10 ms hedge timer falls due, both before the loop runs again.
    setImmediate(() => {
      const until = performance.now() + 60;
      while (performance.now() < until) { /* a GC pause, a busy CPU */ }
    });
    assert.equal(await pending, 200);
  }
  // A hedge is counted when it is sent, and none can be once the request has settled.
  assert.equal(upstream.stats.hedges, before, 'no hedge for requests whose answers were already in');
});

/**
 * a answers `?slow` requests after 500 ms and the rest at once; b answers `?slow` after 150 ms:
 * lost races one after another are more than SILENCE_CHARGE_MS (100 ms) apart, each a new sign
 * of a silent endpoint.
 */
async function slowOnRequest(service: Record<string, unknown>) {
  const handler = (slowMs: number) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    const slow = (req.url ?? '').includes('slow');
    globalThis.setTimeout(() => res.writeHead(200).end(), slow ? slowMs : 0);
  };
  const a = await backend('a', handler(500));
  const b = await backend('b', handler(150));
  const gw = await gateway(shopConfig([a.address, b.address], { healthCheck: false, balancer: 'consistent-hash', hash: { header: 'x-key' }, outlier: { consecutiveFailures: 2 }, ...service }));
  for (let i = 0; i < 200; i++) assert.equal((await fetch(`${gw.url}/warm?i=${i}`)).status, 200);
  await hedgeDelayKnown(gw);
  let key = '';
  for (let k = 0; key === ''; k++) {
    const res = await fetch(`${gw.url}/which`, { headers: { 'x-key': `k${k}` } });
    await res.arrayBuffer();
    if (a.seen.some((s) => s.url === '/which' && s.headers['x-key'] === `k${k}`)) key = `k${k}`;
  }
  type WithEndpoints = ClusterService & { endpoints: Array<{ id: string; state: string }> };
  const stateOfA = async () => (await clusterService<WithEndpoints>(gw, 'shop')).endpoints.find((e) => e.id === a.address)!.state;
  return { gw, key, stateOfA };
}

test('a first attempt that loses to its hedge on an endpoint that still answers is not held against it (a slow moment is no ejection)', async () => {
  const { gw, key, stateOfA } = await slowOnRequest({});
  const get = (path: string) => fetch(`${gw.url}${path}`, { headers: { 'x-key': key } }).then(async (r) => { await r.arrayBuffer(); return r.status; });
  for (let round = 0; round < 2; round++) {
    // Three slow requests at once; a answers a quick one while they wait; then their hedges
    // (b, 150 ms) win one after the other — three lost races in a row, each after an answer.
    const slow = [0, 1, 2].map((i) => get(`/slow?r=${round}&i=${i}`));
    assert.equal(await get(`/quick?r=${round}`), 200);
    assert.deepEqual(await Promise.all(slow), [200, 200, 200]);
  }
  const c = await clusterService<ClusterService>(gw, 'shop');
  assert.ok(c.hedgeWins >= 6, `the hedges won: ${c.hedgeWins}`);
  assert.equal(await stateOfA(), 'healthy', 'lost races on an endpoint that kept answering did not eject it (consecutiveFailures 2)');
});

test('a first attempt that loses to its hedge on an endpoint that answered nothing since counts against it: a stuck endpoint is ejected', async () => {
  const { gw, key, stateOfA } = await slowOnRequest({});
  for (let i = 0; i < 2; i++) {
    const res = await fetch(`${gw.url}/slow?i=${i}`, { headers: { 'x-key': key } });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
  }
  assert.equal(await stateOfA(), 'ejected', 'two lost races with nothing answered in between eject a (consecutiveFailures 2)');
});

test('a cold endpoint — just back from failing its health checks — is not charged for races it loses; once warm it is', async () => {
  let sick = false;
  const handler = (slowMs: number) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (req.url === '/healthz') {
      res.writeHead(sick && slowMs > 100 ? 503 : 200).end();
      return;
    }
    globalThis.setTimeout(() => res.writeHead(200).end(), (req.url ?? '').includes('slow') ? slowMs : 0);
  };
  const a = await backend('a', handler(500));
  const b = await backend('b', handler(150));
  const gw = await gateway(shopConfig([a.address, b.address], {
    healthCheck: { interval: '100ms', timeout: '100ms' }, balancer: 'consistent-hash', hash: { header: 'x-key' }, outlier: { consecutiveFailures: 2 },
  }));
  for (let i = 0; i < 200; i++) assert.equal((await fetch(`${gw.url}/warm?i=${i}`)).status, 200);
  await hedgeDelayKnown(gw);
  let key = '';
  for (let k = 0; key === ''; k++) {
    await (await fetch(`${gw.url}/which`, { headers: { 'x-key': `k${k}` } })).arrayBuffer();
    if (a.seen.some((s) => s.url === '/which' && s.headers['x-key'] === `k${k}`)) key = `k${k}`;
  }
  type WithEndpoints = ClusterService & { endpoints: Array<{ id: string; state: string }> };
  const stateOfA = async () => (await clusterService<WithEndpoints>(gw, 'shop')).endpoints.find((e) => e.id === a.address)!.state;
  const until = async (state: string) => { while ((await stateOfA()) !== state) await new Promise((r) => setImmediate(r)); };
  const get = async (path: string) => { const r = await fetch(`${gw.url}${path}`, { headers: { 'x-key': key } }); await r.arrayBuffer(); return r.status; };

  // a fails its checks, then passes them again: as cold as a restarted process.
  sick = true;
  await until('unhealthy');
  sick = false;
  await until('healthy');
  for (let i = 0; i < 2; i++) assert.equal(await get(`/slow?cold=${i}`), 200);
  assert.equal(await stateOfA(), 'healthy', 'two races lost while cold did not eject a (consecutiveFailures 2)');
  // Warm again (20 answers), the same two lost races with nothing answered in between eject it.
  for (let i = 0; i < 25; i++) assert.equal(await get(`/quick?i=${i}`), 200);
  for (let i = 0; i < 2; i++) assert.equal(await get(`/slow?warm=${i}`), 200);
  assert.equal(await stateOfA(), 'ejected');
});
