import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminFetch, startGateway } from './helpers/gateway.js';
import { startBackend } from './helpers/backend.js';

/** Past concurrencyLimit a service refuses at once (503 + Retry-After) instead of queueing. */
test('concurrencyLimit: the request past the limit gets 503 at once; the count goes back down as requests finish or fail', async () => {
  const held: Array<() => void> = [];
  let heldChanged = (): void => {};
  /** Resolves once the endpoint holds `n` requests. */
  const holding = (n: number) => new Promise<void>((resolve) => {
    heldChanged = () => { if (held.length >= n) resolve(); };
    heldChanged();
  });
  const backend = await startBackend('held', (req, res) => {
    req.resume();
    if (req.url === '/fail') {
      res.writeHead(404).end();
      return;
    }
    held.push(() => {
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain' }).end('released');
    });
    heldChanged();
  });
  const gw = await startGateway({
    services: { shop: { endpoints: [backend.address], concurrencyLimit: 3, healthCheck: false } },
    routes: [{ prefix: '/', service: 'shop' }],
  });
  try {
    const waiting = [1, 2, 3].map((i) => fetch(`${gw.url}/hold/${i}`));
    await holding(3);

    // The three are held until released below: an answer now means the fourth did not queue.
    const refused = await fetch(`${gw.url}/hold/4`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'TANDEM_ERR_OVERLOADED');
    assert.equal(held.length, 3, 'the refused request never reached the endpoint');

    const cluster = async () => ((await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ active: number; overloaded: number }> }).services[0]!;
    assert.deepEqual(await cluster().then((s) => [s.active, s.overloaded]), [3, 1]);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    assert.match(metrics, /tandem_requests_rejected_total\{service="shop",reason="concurrency-limit"\} 1/);
    assert.match(metrics, /tandem_service_requests_active\{service="shop"\} 3/);

    for (const release of held) release();
    for (const res of await Promise.all(waiting)) assert.equal(res.status, 200);
    // Finished and failed requests both give their place back.
    assert.equal((await fetch(`${gw.url}/fail`)).status, 404);
    const again = [5, 6, 7].map((i) => fetch(`${gw.url}/hold/${i}`));
    await holding(6);
    assert.equal((await cluster()).active, 3);
    for (const release of held.slice(3)) release();
    for (const res of await Promise.all(again)) assert.equal(res.status, 200);
    assert.equal((await cluster()).active, 0);
  } finally {
    for (const release of held) release();
    await gw.stop();
    await backend.close();
  }
});
