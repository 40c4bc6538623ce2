import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startBackend, answerOk, shopConfig, type Backend } from './helpers/backend.js';
import { validateConfig } from '../src/config/validate.js';
import { Upstream } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { FakeClock } from '../src/core/clock.js';
import { Attempt } from '../src/upstream/attempt.js';
import type { Endpoint } from '../src/upstream/endpoint.js';
import type { TandemError } from '../src/core/errors.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/**
 * Deadlines, per-try timeouts, backoff and hedge delays, driven by a FakeClock against real
 * endpoints: each step of time is taken by the test, so the assertions name exact
 * milliseconds instead of wall-clock windows. undici's own timers (the service `timeout`, 10 s)
 * stay real and never come into play.
 */

const { defer } = cleanupAfterAll();

async function backend(name: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const b = await startBackend(name, handler);
  defer(() => b.close());
  return b;
}

function upstreamOf(backends: readonly Backend[], service: Record<string, unknown>, clock: FakeClock, random: () => number): Upstream {
  const config = validateConfig(shopConfig(backends.map((b) => b.address), { healthCheck: false, balancer: 'round-robin', timeout: '10s', ...service }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  const upstream = new Upstream(upstreamSettingsOf(config), [], { clock, random });
  defer(() => upstream.destroy());
  return upstream;
}

interface Outcome { status: number; error: TandemError | undefined; body: string }

/** Dispatches a GET; `attempts` lists the endpoints each attempt went to, as they are made. */
function send(upstream: Upstream, path: string): { attempts: string[]; legs: unknown[]; done: Promise<Outcome> } {
  const attempts: string[] = [];
  const legs: unknown[] = [];
  const done = new Promise<Outcome>((resolve) => {
    let status = 0;
    const chunks: Buffer[] = [];
    upstream.dispatch({ method: 'GET', path, headers: [], body: null, hashKey: undefined, bodyLimit: Infinity }, {
      onStart() {},
      onAttempt(e: Endpoint, leg?: unknown) { attempts.push(e.id); legs.push(leg); },
      onHeaders(s) { status = s; return true; },
      onData(c) { chunks.push(c); return true; },
      onComplete: () => resolve({ status, error: undefined, body: Buffer.concat(chunks).toString() }),
      onError: (error) => resolve({ status: 0, error, body: '' }),
    });
  });
  return { attempts, legs, done };
}

/** Resolves once `cond` holds, looking after each turn of the event loop (I/O included); the test's timeout bounds it. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/** Never answers; `arrived` lists the timeout header of each request it got. */
function hanging(): { handler: (req: IncomingMessage) => void; arrived: string[] } {
  const arrived: string[] = [];
  return { arrived, handler: (req) => { req.resume(); arrived.push(String(req.headers['x-tandem-timeout-ms'])); } };
}

const retriesOf = (u: Upstream, reason: string): number => u.retrySnapshot().retries[reason]!;

test('per-try timeout: the attempt fails exactly when its wait is up, and the retry goes after the backoff', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const hang = hanging();
  const backends = [await backend('hang', hang.handler), await backend('b', answerOk('b'))];
  const upstream = upstreamOf(backends, { retry: { perTryTimeout: '50ms' } }, clock, () => 0.4);
  const r = send(upstream, '/x');
  await until(() => hang.arrived.length === 1);
  assert.deepEqual(hang.arrived, ['50'], 'the endpoint is told its per-try wait');
  clock.advance(49);
  assert.equal(retriesOf(upstream, 'timeout'), 0, 'not timed out at 49 ms');
  clock.advance(1);
  assert.equal(retriesOf(upstream, 'timeout'), 1, 'timed out at 50 ms');
  assert.equal(r.attempts.length, 1, 'the retry waits for its backoff');
  clock.advance(9);
  assert.equal(r.attempts.length, 1, 'backoff 0.4 × 25 ms: not yet at 9 ms');
  clock.advance(1);
  assert.deepEqual(r.attempts, [backends[0]!.address, backends[1]!.address], 'sent at 10 ms, to the other endpoint');
  const out = await r.done;
  assert.equal(out.status, 200);
  assert.equal(out.body, 'b');
});

test('backoff: a 503 is retried after random × 25 ms on the clock; a refused connection at once', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const backends = [
    await backend('busy', (req, res) => { req.resume(); res.writeHead(503).end(); }),
    await backend('b', answerOk('b')),
  ];
  const upstream = upstreamOf(backends, {}, clock, () => 0.8);
  const r = send(upstream, '/x');
  await until(() => retriesOf(upstream, 'status-503') === 1);
  assert.equal(r.attempts.length, 1);
  clock.advance(19);
  assert.equal(r.attempts.length, 1, 'backoff 0.8 × 25 ms = 20 ms: not yet at 19 ms');
  clock.advance(1);
  assert.equal(r.attempts.length, 2, 'sent at 20 ms');
  assert.equal((await r.done).status, 200);

  // A refused connection never reached the endpoint: the retry needs no clock at all.
  const closed = await backend('closed', answerOk('closed'));
  await closed.close();
  const upstream2 = upstreamOf([closed, backends[1]!], {}, clock, () => 0.8);
  const pending = clock.pending;
  const r2 = send(upstream2, '/y');
  const out = await r2.done;
  assert.equal(out.status, 200);
  assert.equal(r2.attempts.length, 2);
  assert.equal(retriesOf(upstream2, 'connect'), 1);
  assert.equal(clock.pending, pending, 'no backoff timer for a refused connection');
});

test('deadline across attempts: each attempt is told what is left, and the request ends with 504 when the service timeout is spent', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const told: string[] = [];
  const backends = await Promise.all([0, 1, 2].map((i) => backend(`h${i}`, (req) => { req.resume(); told.push(String(req.headers['x-tandem-timeout-ms'])); })));
  const upstream = upstreamOf(backends, { retry: { perTryTimeout: '6s' } }, clock, () => 0);
  const r = send(upstream, '/x');
  await until(() => told.length === 1);
  assert.deepEqual(told, ['6000'], 'first attempt: the per-try timeout (below the 10 s deadline)');
  clock.advance(6000);
  // random() = 0: the shortest backoff a timer allows, 1 ms.
  clock.advance(1);
  assert.equal(r.attempts.length, 2);
  await until(() => told.length === 2);
  assert.equal(told[1], '3999', 'second attempt at 6001 ms: 3999 ms left of the deadline');
  clock.advance(3998);
  assert.equal(r.attempts.length, 2);
  clock.advance(1);
  const out = await r.done;
  assert.equal(out.error?.code, 'TANDEM_ERR_UPSTREAM_TIMEOUT');
  assert.equal(out.error?.status, 504);
  assert.match(out.error!.message, /within 10000 ms over 2 attempts/);
  assert.equal(r.attempts.length, 2, 'no third attempt: the deadline had passed');
  assert.equal(told.length, 2);
});

test('hedge delay: the hedge goes exactly when the delay (here minDelay) is up, not a millisecond sooner', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  let stuck = 0;
  // The first /stuck request anywhere never answers; everything else answers at once.
  const handler = (name: string) => (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/stuck' && stuck++ === 0) { req.resume(); return; }
    answerOk(name)(req, res);
  };
  const backends = [await backend('a', handler('a')), await backend('b', handler('b'))];
  const upstream = upstreamOf(backends, { hedge: { minDelay: '20ms' } }, clock, () => 0);
  for (let i = 0; i < 60; i++) assert.equal((await send(upstream, '/warm').done).status, 200);
  // The latency tracker sorts its samples at most every 100 ms of clock time.
  clock.advance(100);
  assert.equal(upstream.retrySnapshot().hedgeDelayMs, 20);
  const r = send(upstream, '/stuck');
  await until(() => stuck === 1);
  clock.advance(19);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(upstream.stats.hedges, 0, 'no hedge at 19 ms');
  clock.advance(1);
  // The hedge decision waits for the check phase (after I/O), see hedgeDue in upstream.ts.
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(upstream.stats.hedges, 1, 'hedged at 20 ms');
  assert.equal(r.attempts.length, 2);
  assert.notEqual(r.attempts[1], r.attempts[0], 'the hedge goes to the other endpoint');
  assert.ok(r.legs.every((leg) => leg instanceof Attempt) && r.legs[0] !== r.legs[1], 'both legs are Attempts, each its own');
  const out = await r.done;
  assert.equal(out.status, 200);
  assert.equal(upstream.stats.hedgeWins, 1);
});

test('retry budget: every request through the pipeline deposits its share (20 % of 10 requests = 2 retries)', { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const backends = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const upstream = upstreamOf(backends, { retry: { budget: { percent: 20, minPerSecond: 0 } } }, clock, () => 0);
  assert.equal(upstream.retrySnapshot().budgetAvailable, 0, 'nothing before any request');
  for (let i = 0; i < 10; i++) assert.equal((await send(upstream, `/${i}`).done).status, 200);
  assert.equal(upstream.retrySnapshot().budgetAvailable, 2);
});
