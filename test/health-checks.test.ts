import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminFetch, startGateway, type RunningGateway } from './helpers/gateway.js';
import { freePort, kill, spawnBackend, startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { FakeClock } from '../src/core/clock.js';
import { Upstream, type EndpointTransition } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { validateConfig } from '../src/config/validate.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/**
 * Endpoint health through the real gateway: active checks against real processes killed with
 * SIGKILL, passive ejection from real traffic, and panic. Timings are the defaults': a dead
 * instance must leave rotation within ~2 s with no traffic at all.
 */

interface ClusterEndpoint { id: string; state: string; ejectedUntil?: string; timesEjected?: number }
interface Cluster { services: Array<{ name: string; panic: boolean; endpoints: ClusterEndpoint[] }> }

const { defer } = cleanupAfterAll();

async function cluster(gw: RunningGateway): Promise<Cluster['services'][number]> {
  const body = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as Cluster;
  return body.services.find((s) => s.name === 'shop')!;
}

async function endpointState(gw: RunningGateway, id: string): Promise<ClusterEndpoint> {
  return (await cluster(gw)).endpoints.find((e) => e.id === id)!;
}

/** Polls /admin/cluster until the endpoint is in `state`; returns the ms it took. */
async function waitForState(gw: RunningGateway, id: string, state: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  let last = '';
  while (performance.now() - started < timeoutMs) {
    last = (await endpointState(gw, id)).state;
    if (last === state) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${id} did not become ${state} within ${timeoutMs} ms (still ${last})`);
}

async function metrics(gw: RunningGateway): Promise<string> {
  return (await fetch(`${gw.adminUrl}/metrics`)).text();
}

async function startWithCleanup(config: Record<string, unknown>): Promise<RunningGateway> {
  const gw = await startGateway(config);
  defer(() => gw.stop());
  return gw;
}

function backendWithHealth(name: string, healthStatus: number, otherStatus = 200): Promise<Backend> {
  return startBackend(name, (req, res) => {
    req.resume();
    const status = req.url === '/healthz' ? healthStatus : otherStatus;
    res.writeHead(status, { 'content-type': 'text/plain', 'x-backend': name }).end(name);
  });
}

test('a SIGKILLed instance is unhealthy within 2.5 s with no traffic, and healthy again soon after it restarts on the same port', async (t) => {
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs = await Promise.all(ports.map(spawnBackend));
  defer(() => Promise.all(procs.map(kill)));
  const gw = await startWithCleanup(shopConfig(ports.map((p) => `127.0.0.1:${p}`)));
  const victim = `127.0.0.1:${ports[1]}`;
  await waitForState(gw, victim, 'healthy', 5_000);

  await kill(procs[1]!);
  const outMs = await waitForState(gw, victim, 'unhealthy', 2_500);
  assert.ok(outMs < 2_500, `out after ${Math.round(outMs)} ms`);
  const text = await metrics(gw);
  assert.match(text, new RegExp(`tandem_endpoint_state\\{service="shop",endpoint="127\\.0\\.0\\.1:${ports[1]}",state="unhealthy"\\} 1`));
  assert.match(text, new RegExp(`tandem_endpoint_state\\{service="shop",endpoint="127\\.0\\.0\\.1:${ports[1]}",state="healthy"\\} 0`));
  assert.match(text, new RegExp(`tandem_endpoint_transitions_total\\{service="shop",endpoint="127\\.0\\.0\\.1:${ports[1]}",to="unhealthy"\\} 1`));
  await gw.waitForLog((l) => l.msg === 'endpoint state' && l.endpoint === victim && l.to === 'unhealthy' && l.from === 'healthy' && l.reason === 'check-failed');
  // The others carry the traffic meanwhile.
  for (let i = 0; i < 10; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);

  procs[1] = await spawnBackend(ports[1]!);
  // Back takes healthyThreshold passed checks to probation (eligible again), as many again to
  // healthy: four checks at 500 ms ± 10 %, after the first one falls due.
  const backMs = await waitForState(gw, victim, 'healthy', 3_500);
  assert.ok(backMs < 3_500, `healthy again after ${Math.round(backMs)} ms`);
  t.diagnostic(`unhealthy ${Math.round(outMs)} ms after SIGKILL; healthy ${Math.round(backMs)} ms after the restart`);
});

test('a /healthz answering 503 takes an endpoint out; one answering 404 stays healthy', async () => {
  const sick = await backendWithHealth('sick', 503);
  const plain = await backendWithHealth('plain', 404);
  defer(() => sick.close(), () => plain.close());
  const gw = await startWithCleanup(shopConfig([sick.address, plain.address]));
  await waitForState(gw, sick.address, 'unhealthy', 2_500);
  await waitForState(gw, plain.address, 'healthy', 2_500);
  // Traffic goes to the healthy one only, and 404 health answers keep it in.
  sick.seen.length = 0;
  for (let i = 0; i < 10; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  assert.equal(sick.seen.filter((s) => s.url !== '/healthz').length, 0);
  await new Promise((r) => setTimeout(r, 1_200));
  assert.equal((await endpointState(gw, plain.address)).state, 'healthy');
  assert.equal((await cluster(gw)).panic, false);
});

test('passive ejection: an endpoint whose /healthz is fine but whose traffic fails is ejected after 5 failures and then gets none', async () => {
  const liar = await backendWithHealth('liar', 200, 500);
  const good = [await backendWithHealth('a', 200), await backendWithHealth('b', 200)];
  defer(() => liar.close(), ...good.map((b) => () => b.close()));
  const gw = await startWithCleanup(shopConfig([liar.address, ...good.map((b) => b.address)], { balancer: 'round-robin' }));
  const traffic = () => liar.seen.filter((s) => s.url !== '/healthz').length;
  let failures = 0;
  for (let i = 0; i < 30 && failures < 5; i++) {
    if ((await fetch(`${gw.url}/x`)).status === 500) failures++;
  }
  assert.equal(failures, 5);
  assert.equal(traffic(), 5);
  const state = await endpointState(gw, liar.address);
  assert.equal(state.state, 'ejected');
  assert.equal(state.timesEjected, 1);
  const until = Date.parse(state.ejectedUntil!) - Date.now();
  assert.ok(until > 20_000 && until <= 33_000, `ejected for ${until} ms more`);
  for (let i = 0; i < 20; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  assert.equal(traffic(), 5, 'the ejected endpoint got traffic');
  assert.match(await metrics(gw), /tandem_outlier_ejections_total\{service="shop"\} 1/);
  await gw.waitForLog((l) => l.msg === 'endpoint state' && l.endpoint === liar.address && l.to === 'ejected' && l.reason === 'ejected');
  assert.equal((await endpointState(gw, liar.address)).state, 'ejected', 'passing checks do not end an ejection');
});

test('panic: with 2 of 3 endpoints failing checks, the service is in panic but traffic stays on the one that passes', async () => {
  const sick = [await backendWithHealth('s1', 503), await backendWithHealth('s2', 503)];
  const well = await backendWithHealth('w', 200);
  defer(...sick.map((b) => () => b.close()), () => well.close());
  const gw = await startWithCleanup(shopConfig([...sick.map((b) => b.address), well.address], { balancer: 'round-robin' }));
  for (const b of sick) await waitForState(gw, b.address, 'unhealthy', 2_500);
  assert.equal((await cluster(gw)).panic, true);
  assert.match(await metrics(gw), /tandem_service_panic\{service="shop"\} 1/);
  await gw.waitForLog((l) => l.msg === 'service panic' && l.service === 'shop');
  for (const b of [...sick, well]) b.seen.length = 0;
  for (let i = 0; i < 30; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  for (const b of sick) assert.equal(b.seen.length, 0, 'an endpoint failing its checks got traffic');
  assert.equal(well.seen.length, 30);
});

test('panic: when every endpoint fails its checks, traffic is spread over all of them rather than refused', async () => {
  const sick = [await backendWithHealth('s1', 503), await backendWithHealth('s2', 503), await backendWithHealth('s3', 503)];
  defer(...sick.map((b) => () => b.close()));
  const gw = await startWithCleanup(shopConfig(sick.map((b) => b.address), { balancer: 'round-robin' }));
  for (const b of sick) await waitForState(gw, b.address, 'unhealthy', 2_500);
  assert.equal((await cluster(gw)).panic, true);
  for (const b of sick) b.seen.length = 0;
  for (let i = 0; i < 30; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  for (const b of sick) assert.ok(b.seen.length >= 5, 'every endpoint gets traffic when all fail their checks');
});

test('Upstream wiring (FakeClock): transitions are reported and counted, panic follows eligibility', () => {
  const clock = new FakeClock(1_000);
  const config = validateConfig(shopConfig(['127.0.0.1:7001', '127.0.0.1:7002'], { healthCheck: false }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  const seen: EndpointTransition[] = [];
  const panics: boolean[] = [];
  const u = new Upstream(upstreamSettingsOf(config), [], { clock, onTransition: (t) => seen.push(t), onPanic: (_s, p) => panics.push(p) });
  try {
    const [a, b] = u.endpoints as [typeof u.endpoints[number], typeof u.endpoints[number]];
    assert.equal(a.health.state.kind, 'probation');
    assert.equal(a.health.state.since, 1_000);
    a.health.requestSucceeded(clock.now());
    a.health.requestSucceeded(clock.now());
    assert.deepEqual(seen, [{ service: 'shop', endpoint: a.id, from: 'probation', to: 'healthy', reason: 'request-succeeded' }]);
    a.health.eject(clock.now(), 30_000, 1);
    assert.equal(u.stats.ejections, 1);
    assert.equal(u.inPanic, false, 'one of two eligible is not below 50 %');
    b.health.checkFailed(clock.now());
    assert.equal(u.inPanic, true);
    assert.deepEqual(panics, [true]);
    assert.deepEqual(a.transitions, [0, 1, 1, 0, 0]);
    const snap = u.snapshot();
    assert.equal(snap[0]!.state, 'ejected');
    assert.equal(snap[1]!.state, 'unhealthy');
  } finally {
    void u.destroy();
  }
});
