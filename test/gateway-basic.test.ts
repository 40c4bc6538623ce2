import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { adminFetch, startGateway, type RunningGateway } from './helpers/gateway.js';
import { startBackend, shopConfig, type Backend } from './helpers/backend.js';

let backends: Backend[];
let gw: RunningGateway;

before(async () => {
  backends = await Promise.all(['a', 'b', 'c'].map((n) => startBackend(n)));
  gw = await startGateway(shopConfig(backends.map((b) => b.address)));
});

after(async () => {
  await gw.stop();
  await Promise.all(backends.map((b) => b.close()));
});

test('proxies a GET to a backend and streams its body back', async () => {
  const res = await fetch(`${gw.url}/items?id=7`);
  assert.equal(res.status, 200);
  const body = (await res.json()) as { backend: string; url: string };
  assert.equal(body.url, '/items?id=7');
  assert.ok(['a', 'b', 'c'].includes(body.backend));
});

test('proxies a POST body unchanged', async () => {
  const payload = JSON.stringify({ hello: 'world', n: [1, 2, 3] });
  const echo = backends[0]!;
  echo.seen.length = 0;
  const res = await fetch(`${gw.url}/orders`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  const all = backends.flatMap((b) => b.seen).filter((s) => s.url === '/orders');
  assert.equal(all.length, 1);
  assert.equal(all[0]!.method, 'POST');
});

test('admin listener answers healthz, readyz, metrics and cluster state', async () => {
  assert.equal((await fetch(`${gw.adminUrl}/healthz`)).status, 200);
  assert.equal((await fetch(`${gw.adminUrl}/readyz`)).status, 200);
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  assert.match(metrics, /tandem_requests_total\{service="shop",endpoint="127\.0\.0\.1:\d+",code_class="2xx"\} \d+/);
  assert.match(metrics, /tandem_request_duration_seconds_bucket\{service="shop",le="\+Inf"\} \d+/);
  assert.match(metrics, /tandem_upstream_connections\{service="shop",endpoint=/);
  assert.match(metrics, /tandem_requests_in_flight\{service="shop",endpoint=/);
  assert.match(metrics, /tandem_endpoint_state\{service="shop",endpoint="127\.0\.0\.1:\d+",state="unhealthy"\} 0/);
  assert.match(metrics, /tandem_service_panic\{service="shop"\} 0/);
  const cluster = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ name: string; panic: boolean; endpoints: Array<{ id: string; state: string; latencyEstimateMs: number; inflight: number }> }> };
  const shop = cluster.services.find((s) => s.name === 'shop')!;
  assert.equal(shop.endpoints.length, 3);
  assert.equal(shop.panic, false);
  for (const e of shop.endpoints) {
    // New endpoints start on probation and turn healthy after two passed checks or requests.
    assert.ok(e.state === 'probation' || e.state === 'healthy', e.state);
    assert.equal(typeof e.latencyEstimateMs, 'number');
    assert.equal(e.inflight, 0);
  }
});

test('no route answers 404 with a JSON error and a request id', async () => {
  const g2 = await startGateway({ services: { shop: { endpoints: [backends[0]!.address] } }, routes: [{ prefix: '/api', service: 'shop' }] });
  try {
    const res = await fetch(`${g2.url}/apiary`);
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { code: string; requestId: string } };
    assert.equal(body.error.code, 'TANDEM_ERR_NO_ROUTE');
    assert.ok(body.error.requestId);
    assert.equal((await fetch(`${g2.url}/api/x`)).status, 200);
  } finally {
    await g2.stop();
  }
});
