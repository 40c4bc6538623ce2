import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adminFetch, startGateway, type RunningGateway } from './helpers/gateway.js';
import { freePort, kill, spawnBackend, startBackend, shopConfig, type Backend } from './helpers/backend.js';
import { FakeClock } from '../src/core/clock.js';
import { HealthProber } from '../src/upstream/health/prober.js';
import { EndpointHealth } from '../src/upstream/health/state.js';
import { Upstream, type EndpointTransition } from '../src/upstream/upstream.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { validateConfig } from '../src/config/validate.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

/**
 * Endpoint health through the real gateway: active checks against real processes killed with
 * SIGKILL, passive ejection from real traffic, and panic. The timing of the checks (a dead
 * instance leaves rotation within ~2 s with no traffic at all) is held on a FakeClock at the
 * end of this file; here the tests wait for each transition and report how long it took.
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

/** Polls /admin/cluster until the endpoint is in `state`; returns the ms it took, for a diagnostic. */
async function waitForState(gw: RunningGateway, id: string, state: string): Promise<number> {
  const started = performance.now();
  let last = '';
  await waitFor(() => `${id} to become ${state} (still ${last})`, async () => {
    last = (await endpointState(gw, id)).state;
    return last === state;
  }, { intervalMs: 50 });
  return performance.now() - started;
}

async function metrics(gw: RunningGateway): Promise<string> {
  return (await fetch(`${gw.adminUrl}/metrics`)).text();
}

async function startWithCleanup(config: Record<string, unknown>): Promise<RunningGateway> {
  const gw = await startGateway(config);
  defer(() => gw.stop());
  return gw;
}

/** A backend answering /healthz with `healthStatus`; `probes` counts the checks it answered. */
async function backendWithHealth(name: string, healthStatus: number, otherStatus = 200): Promise<Backend & { probes: number }> {
  let probes = 0;
  const backend = await startBackend(name, (req, res) => {
    req.resume();
    if (req.url === '/healthz') probes++;
    const status = req.url === '/healthz' ? healthStatus : otherStatus;
    res.writeHead(status, { 'content-type': 'text/plain', 'x-backend': name }).end(name);
  });
  return Object.defineProperty(backend, 'probes', { get: () => probes }) as Backend & { probes: number };
}

test('a SIGKILLed instance is taken out by its checks alone, with no traffic, and is healthy again after it restarts on the same port', async (t) => {
  const ports = [await freePort(), await freePort(), await freePort()];
  const procs = await Promise.all(ports.map(spawnBackend));
  defer(() => Promise.all(procs.map(kill)));
  const gw = await startWithCleanup(shopConfig(ports.map((p) => `127.0.0.1:${p}`)));
  const victim = `127.0.0.1:${ports[1]}`;
  await waitForState(gw, victim, 'healthy');

  await kill(procs[1]!);
  const outMs = await waitForState(gw, victim, 'unhealthy');
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
  const backMs = await waitForState(gw, victim, 'healthy');
  t.diagnostic(`unhealthy ${Math.round(outMs)} ms after SIGKILL; healthy ${Math.round(backMs)} ms after the restart`);
});

test('a /healthz answering 503 takes an endpoint out; one answering 404 stays healthy', async () => {
  const sick = await backendWithHealth('sick', 503);
  const plain = await backendWithHealth('plain', 404);
  defer(() => sick.close(), () => plain.close());
  const gw = await startWithCleanup(shopConfig([sick.address, plain.address]));
  await waitForState(gw, sick.address, 'unhealthy');
  await waitForState(gw, plain.address, 'healthy');
  // Traffic goes to the healthy one only, and 404 health answers keep it in.
  sick.seen.length = 0;
  for (let i = 0; i < 10; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  assert.equal(sick.seen.filter((s) => s.url !== '/healthz').length, 0);
  // Still in after more 404 checks: two more fail it if they count (unhealthyThreshold 2).
  const probes = plain.probes;
  await waitFor('three more checks of the 404 endpoint', () => plain.probes >= probes + 3);
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
  // Ejected for a while, at most baseEjectionTime (30 s) + 10 % jitter for a first ejection
  // (an upper bound the wall clock cannot break: time only runs it down); the exact length is
  // held on a FakeClock in outlier.test.ts.
  const until = Date.parse(state.ejectedUntil!) - Date.now();
  assert.ok(until > 0 && until <= 33_000, `ejected for ${until} ms more`);
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
  for (const b of sick) await waitForState(gw, b.address, 'unhealthy');
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
  for (const b of sick) await waitForState(gw, b.address, 'unhealthy');
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

test('check timing (FakeClock): a dead endpoint is out two intervals after it died, and back four checks after it restarts', async () => {
  const clock = new FakeClock(0);
  const backend = await backendWithHealth('probed', 200);
  defer(() => backend.close());
  const health = new EndpointHealth({}, clock.now());
  const seen: Array<[string, number]> = [];
  health.onTransition((t) => seen.push([t.to.kind, clock.now()]));
  // The probes go over a real socket; only their schedule is on the clock. Each check ends in
  // checkPassed or checkFailed: counting those tells the test when a probe's answer is in.
  let checks = 0;
  const passed = health.checkPassed.bind(health);
  const failed = health.checkFailed.bind(health);
  health.checkPassed = (now) => { checks++; return passed(now); };
  health.checkFailed = (now) => { checks++; return failed(now); };
  // random() = 1: the latest first check (one interval) and the longest jitter (+10 %).
  const prober = new HealthProber({ id: backend.address, health }, { path: '/healthz', intervalMs: 500, timeoutMs: 500 }, clock, () => 1);
  defer(() => prober.stop());
  const check = async (dueInMs: number) => {
    const before = checks;
    clock.advance(dueInMs);
    await waitFor(`check ${before + 1}`, () => checks > before);
  };
  prober.start();
  await check(500);
  await check(550);
  assert.deepEqual(seen, [['healthy', 1_050]]);

  backend.server.closeAllConnections();
  await new Promise<void>((resolve) => backend.server.close(() => resolve()));
  const diedAt = clock.now();
  await check(550);
  await check(550);
  assert.deepEqual(seen.at(-1), ['unhealthy', diedAt + 1_100], 'out after unhealthyThreshold (2) checks, the latest they can come');

  await new Promise<void>((resolve) => backend.server.listen(backend.port, '127.0.0.1', resolve));
  const restartedAt = clock.now();
  for (let i = 0; i < 4; i++) await check(550);
  assert.deepEqual(seen.slice(-2), [['probation', restartedAt + 1_100], ['healthy', restartedAt + 2_200]]);
  assert.equal(clock.pending, 1, 'one check scheduled at a time');
});
