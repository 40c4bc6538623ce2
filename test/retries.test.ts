import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clusterService, metricSum, startGateway, type RunningGateway } from './helpers/gateway.js';
import { answerOk, freePort, kill, spawnBackend, startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/**
 * Retries through the real gateway, against real processes and sockets: a failed attempt goes
 * to another endpoint when that cannot run a request twice, the client never sees the failure,
 * and the budget caps the retries a failing service gets.
 */

interface ClusterService { name: string; retries: Record<string, number>; budgetExhausted: number; budgetAvailable: number | null }

const { defer } = cleanupAfterAll();

async function gateway(config: Record<string, unknown>): Promise<RunningGateway> {
  const gw = await startGateway(config);
  defer(() => gw.stop());
  return gw;
}

async function backend(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Backend> {
  const b = await startBackend(name, handler);
  defer(() => b.close());
  return b;
}

/** Reads the whole request, then closes the connection without a byte of answer. */
function cutAfterReading(req: IncomingMessage): void {
  req.resume();
  req.on('end', () => req.socket.destroy());
}

const clusterOf = (gw: RunningGateway) => clusterService<ClusterService>(gw, 'shop');

/** Request ids (the `id` query parameter) each backend saw. */
function ids(...backends: Backend[]): string[] {
  return backends.flatMap((b) => b.seen.map((s) => new URL(s.url, 'http://x').searchParams.get('id')!));
}

test('one of three instances SIGKILLed: 300 sequential GETs all succeed on retries alone (no health checks)', async (t) => {
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs = await Promise.all(ports.map(spawnBackend));
  defer(() => Promise.all(procs.map(kill)));
  // Round-robin: the dead instance is certainly picked (peak-EWMA may leave it out for the
  // whole test, its estimate decaying over 10 s). Outlier ejection after 5 failures still works.
  const gw = await gateway(shopConfig(ports.map((p) => `127.0.0.1:${p}`), { healthCheck: false, balancer: 'round-robin' }));
  // Warm up: pooled keep-alive connections to all three, which the kill then resets.
  for (let i = 0; i < 30; i++) assert.equal((await fetch(`${gw.url}/warm`)).status, 200);
  await kill(procs[1]!);
  const statuses = new Map<number, number>();
  for (let i = 0; i < 300; i++) {
    const res = await fetch(`${gw.url}/x?i=${i}`);
    await res.arrayBuffer();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
  }
  assert.deepEqual([...statuses], [[200, 300]]);
  const retries = await metricSum(gw, /^tandem_retries_total\{service="shop",reason="(connect|reset|reset-before-send)"\}/);
  assert.ok(retries >= 5, `retries counted: ${retries}`);
  const cluster = await clusterOf(gw);
  assert.equal(cluster.retries.connect! + cluster.retries.reset! + cluster.retries['reset-before-send']!, retries);
  t.diagnostic(`retries: ${JSON.stringify(cluster.retries)}`);
});

test('an instance answering 503 to 30 % of requests: every GET gets 200, the 503s are retried elsewhere', async () => {
  let n = 0;
  const flaky = await backend('flaky', (req, res) => {
    req.resume();
    const fail = n++ % 10 < 3;
    res.writeHead(fail ? 503 : 200, { 'content-type': 'text/plain' }).end(fail ? 'busy' : 'flaky');
  });
  const good = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const gw = await gateway(shopConfig([flaky.address, ...good.map((b) => b.address)], { healthCheck: false, balancer: 'round-robin' }));
  for (let i = 0; i < 150; i++) {
    const res = await fetch(`${gw.url}/x?id=${i}`);
    assert.equal(res.status, 200, await res.text());
  }
  assert.ok(flaky.seen.length >= 40, `flaky saw ${flaky.seen.length}`);
  const retried = await metricSum(gw, /^tandem_retries_total\{service="shop",reason="status-503"\}/);
  assert.ok(retried >= 10, `retries for 503: ${retried}`);
  assert.equal((await clusterOf(gw)).retries['status-503'], retried);
});

test('POST and PUT: never re-sent once they may have been processed; re-sent when they cannot have been', async () => {
  const cutter = await backend('cutter', cutAfterReading);
  const good = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const gw = await gateway(shopConfig([cutter.address, ...good.map((b) => b.address)], {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 },
  }));
  const all = [cutter, ...good];
  const send = async (method: string, id: string, size: number) => {
    const res = await fetch(`${gw.url}/x?id=${id}`, { method, body: Buffer.alloc(size, 'p') });
    await res.arrayBuffer();
    return res.status;
  };

  // A POST the cutter read may have been processed: 502, and no other endpoint sees it.
  const post: number[] = [];
  for (let i = 0; i < 9; i++) post.push(await send('POST', `post${i}`, 100));
  const cutPosts = ids(cutter).filter((id) => id.startsWith('post'));
  assert.ok(cutPosts.length >= 2, `the cutter got ${cutPosts.length} POSTs`);
  assert.equal(post.filter((s) => s === 502).length, cutPosts.length);
  assert.equal(post.filter((s) => s === 200).length, 9 - cutPosts.length);
  const postIds = ids(...all).filter((id) => id.startsWith('post'));
  assert.equal(postIds.length, 9, 'a POST was sent twice');
  assert.equal(new Set(postIds).size, 9);

  // A small PUT (kept in memory, idempotent) is retried elsewhere: all 200.
  for (let i = 0; i < 9; i++) assert.equal(await send('PUT', `small${i}`, 1024), 200);
  const cutSmall = ids(cutter).filter((id) => id.startsWith('small'));
  assert.ok(cutSmall.length >= 2);
  for (const id of cutSmall) assert.equal(ids(...good).filter((x) => x === id).length, 1, `${id} not retried once`);

  // A 100 KiB PUT is over retry.bodyLimit (64 KiB): streamed, so once sent it cannot go again.
  const big: number[] = [];
  for (let i = 0; i < 9; i++) big.push(await send('PUT', `big${i}`, 100 * 1024));
  const cutBig = ids(cutter).filter((id) => id.startsWith('big'));
  assert.ok(cutBig.length >= 2);
  assert.equal(big.filter((s) => s === 502).length, cutBig.length);
  assert.equal(ids(...all).filter((id) => id.startsWith('big')).length, 9, 'a large PUT was sent twice');
});

test('retry.idempotencyHeader: a POST carrying the key goes again after it may have been processed; one without it does not', async () => {
  const cutter = await backend('cutter', cutAfterReading);
  const good = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const gw = await gateway(shopConfig([cutter.address, ...good.map((b) => b.address)], {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 }, retry: { idempotencyHeader: 'Idempotency-Key' },
  }));
  const send = async (id: string, key: boolean) => {
    const res = await fetch(`${gw.url}/x?id=${id}`, { method: 'POST', body: '{}', headers: key ? { 'idempotency-key': id } : {} });
    await res.arrayBuffer();
    return res.status;
  };
  const keyed: number[] = [];
  for (let i = 0; i < 9; i++) keyed.push(await send(`keyed${i}`, true));
  assert.deepEqual(keyed, Array(9).fill(200), 'every keyed POST answered');
  const cutKeyed = ids(cutter).filter((id) => id.startsWith('keyed'));
  assert.ok(cutKeyed.length >= 2, `the cutter got ${cutKeyed.length} keyed POSTs`);
  for (const id of cutKeyed) assert.equal(ids(...good).filter((x) => x === id).length, 1, `${id} went again once`);
  const plain: number[] = [];
  for (let i = 0; i < 9; i++) plain.push(await send(`plain${i}`, false));
  const cutPlain = ids(cutter).filter((id) => id.startsWith('plain'));
  assert.ok(cutPlain.length >= 2);
  assert.equal(plain.filter((s) => s === 502).length, cutPlain.length, 'a POST without the key is not sent twice');
  assert.equal(ids(...good).filter((id) => cutPlain.includes(id)).length, 0);
});

test('POST when the picked endpoint refuses connections: retried (it never left), 200, processed once', async () => {
  const dead = await freePort();
  const good = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const gw = await gateway(shopConfig([`127.0.0.1:${dead}`, ...good.map((b) => b.address)], { healthCheck: false, balancer: 'round-robin' }));
  for (let i = 0; i < 12; i++) {
    const res = await fetch(`${gw.url}/x?id=p${i}`, { method: 'POST', body: JSON.stringify({ i }) });
    assert.equal(res.status, 200, await res.text());
  }
  // A chunked POST (no length: streamed, not kept) is retried too: not a byte of it was read.
  for (let i = 0; i < 6; i++) {
    const body = new ReadableStream({ start(c) { c.enqueue(new TextEncoder().encode('chunk')); c.close(); } });
    const res = await fetch(`${gw.url}/x?id=c${i}`, { method: 'POST', body, duplex: 'half' } as RequestInit);
    assert.equal(res.status, 200, await res.text());
  }
  const seen = ids(...good);
  assert.equal(seen.length, 18);
  assert.equal(new Set(seen).size, 18);
  assert.ok(await metricSum(gw, /^tandem_retries_total\{service="shop",reason="connect"\}/) >= 3);
});

test('the budget: with every instance failing, retries stop at 20 % of requests + the per-second reserve, and the refusals are counted', async (t) => {
  const failing = await Promise.all(['a', 'b', 'c'].map((name) => backend(name, (req, res) => {
    req.resume();
    res.writeHead(503).end('down');
  })));
  const gw = await gateway(shopConfig(failing.map((b) => b.address), {
    healthCheck: false, outlier: { consecutiveFailures: 1_000_000 },
    retry: { budget: { percent: 20, minPerSecond: 1 } },
  }));
  for (let i = 0; i < 30; i++) assert.equal((await fetch(`${gw.url}/x?id=${i}`)).status, 503);
  const retries = await metricSum(gw, /^tandem_retries_total\{service="shop"/);
  // Reserve: 1/s × 10 s = 10; deposits: 20 % of 30 requests = 6. Without a budget: 60.
  assert.ok(retries >= 10 && retries <= 16, `retries: ${retries}`);
  assert.equal(failing.reduce((n, b) => n + b.seen.length, 0), 30 + retries);
  const exhausted = await metricSum(gw, /^tandem_retry_budget_exhausted_total\{service="shop"\}/);
  assert.ok(exhausted > 0);
  const cluster = await clusterOf(gw);
  assert.equal(cluster.budgetExhausted, exhausted);
  assert.equal(cluster.budgetAvailable, 0);
  t.diagnostic(`30 requests: ${retries} retries, ${exhausted} refused by the budget`);
});

test('retries after a refused connection are not charged to the budget: with the budget empty they still save every GET; 503s are not retried', async () => {
  const dead = await freePort();
  const good = await backend('a', answerOk('a'));
  const gw = await gateway(shopConfig([`127.0.0.1:${dead}`, good.address], {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1_000_000 },
    retry: { budget: { percent: 0, minPerSecond: 0 } },
  }));
  for (let i = 0; i < 20; i++) assert.equal((await fetch(`${gw.url}/x?id=${i}`)).status, 200);
  assert.ok(await metricSum(gw, /^tandem_retries_total\{service="shop",reason="connect"\}/) >= 10);
  assert.equal(await metricSum(gw, /^tandem_retry_budget_exhausted_total\{service="shop"\}/), 0);
  // The same empty budget refuses a retry that would add load: a 503 reaches the client.
  const flaky = await backend('b', (req, res) => {
    req.resume();
    res.writeHead(503).end('down');
  });
  const gw2 = await gateway(shopConfig([flaky.address, good.address], {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1_000_000 },
    retry: { budget: { percent: 0, minPerSecond: 0 } },
  }));
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await fetch(`${gw2.url}/y?id=${i}`)).status);
  assert.ok(statuses.includes(503), `statuses: ${statuses.join(',')}`);
  assert.ok(await metricSum(gw2, /^tandem_retry_budget_exhausted_total\{service="shop"\}/) > 0);
});

test('x-tandem-timeout-ms tells the endpoint the time left (a client value is dropped); a per-try timeout moves a GET off a hanging endpoint', async (t) => {
  const hang = await backend('hang', () => { /* never answers */ });
  const good = [await backend('a', answerOk('a')), await backend('b', answerOk('b'))];
  const gw = await gateway(shopConfig([hang.address, ...good.map((b) => b.address)], {
    healthCheck: false, balancer: 'round-robin', timeout: '2s', retry: { perTryTimeout: '200ms' },
  }));
  for (let i = 0; i < 6; i++) {
    const res = await fetch(`${gw.url}/x?id=${i}`, { headers: { 'x-tandem-timeout-ms': '999999' } });
    assert.equal(res.status, 200, await res.text());
  }
  // When the timeout fires is request-timing.test.ts's business (fake clock); here: that it moves the GET.
  assert.ok(hang.seen.length >= 1, `hang saw ${hang.seen.length}`);
  for (const s of hang.seen) assert.equal(s.headers['x-tandem-timeout-ms'], '200');
  for (const b of good) {
    for (const s of b.seen) {
      const v = s.headers['x-tandem-timeout-ms'];
      assert.match(String(v), /^\d+$/);
      assert.ok(Number(v) > 0 && Number(v) <= 200, `x-tandem-timeout-ms: ${v}`);
    }
  }
  assert.equal(await metricSum(gw, /^tandem_retries_total\{service="shop",reason="timeout"\}/), hang.seen.length);
  t.diagnostic(`${hang.seen.length} of 6 GETs met the hanging endpoint first and were answered by another`);
});

test('without a per-try timeout the header carries the service timeout; past the overall deadline: 504 TANDEM_ERR_UPSTREAM_TIMEOUT', async () => {
  const seen: string[] = [];
  const hang = await Promise.all(['h1', 'h2', 'h3'].map((name) => backend(name, (req) => { seen.push(String(req.headers['x-tandem-timeout-ms'])); })));
  const gw = await gateway(shopConfig(hang.map((b) => b.address), { healthCheck: false, timeout: '600ms', retry: { perTryTimeout: '250ms' } }));
  const res = await fetch(`${gw.url}/x`);
  assert.equal(res.status, 504);
  assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'TANDEM_ERR_UPSTREAM_TIMEOUT');
  assert.equal(seen.length, 3);
  assert.deepEqual(seen.slice(0, 2), ['250', '250']);
  assert.ok(Number(seen[2]) > 0 && Number(seen[2]) <= 100, `third attempt told ${seen[2]} ms`);

  const single = await backend('one', (req, res) => { req.resume(); res.writeHead(200).end(String(req.headers['x-tandem-timeout-ms'])); });
  const gw2 = await gateway(shopConfig([single.address], { healthCheck: false }));
  assert.equal(await (await fetch(`${gw2.url}/x`)).text(), '15000');
});
