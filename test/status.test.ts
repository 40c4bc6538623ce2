// `tandem status`: the dashboard's picture in the terminal, from a real gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { spawnInstance } from './helpers/sdk.js';
import { adminFetch, startGateway, runCli, BIN } from './helpers/gateway.js';
import { freePort, kill, spawnBackend } from './helpers/backend.js';
import { render } from '../src/cli/status-command.js';
import type { DashboardSnapshot } from '../src/gateway/dashboard-feed.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';

const { defer } = cleanupAfterAll();

test('tandem status --once: gateway health and version, each instance with its state and numbers, recent events', async () => {
  const ports = [await freePort(), await freePort()];
  const procs = [await spawnBackend(ports[0]!), await spawnBackend(ports[1]!)];
  defer(() => Promise.all(procs.map((p) => kill(p))));
  const gw = await startGateway({ services: { shop: { endpoints: ports.map((p) => `127.0.0.1:${p}`) } }, routes: [{ prefix: '/', service: 'shop' }] });
  defer(() => gw.stop('SIGKILL'));
  await gw.waitForLog((l) => l.to === 'healthy' && l.endpoint === `127.0.0.1:${ports[1]}`);
  await kill(procs[1]!);
  await gw.waitForLog((l) => l.to === 'unhealthy' || l.to === 'ejected');
  for (let i = 0; i < 10; i++) await (await fetch(`${gw.url}/x`)).arrayBuffer();
  // The dashboard samples once a second: wait for the first sample that counts those requests.
  await waitFor('a sample with the live instance\'s requests', async () => {
    const snap = (await (await adminFetch(`${gw.adminUrl}/admin/dashboard`)).json()) as DashboardSnapshot;
    return snap.services.find((s) => s.name === 'shop')?.endpoints.some((e) => e.id === `127.0.0.1:${ports[0]}` && e.rate > 0);
  }, { intervalMs: 50 });

  const { code, stdout, stderr } = await runCli(['status', '--admin', gw.adminUrl, '--once']);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^tandem \d+\.\d+\.\d+ {2}ok {2}listen 127\.0\.0\.1:\d+/);
  assert.match(stdout, new RegExp(`healthy +127\\.0\\.0\\.1:${ports[0]} +\\d+\\.\\d`), 'the live instance, with its request rate');
  assert.match(stdout, new RegExp(`(unhealthy|ejected) +127\\.0\\.0\\.1:${ports[1]}`), 'the killed instance');
  assert.match(stdout, /^shop {2}[\d.]+ req\/s {2}errors/m);
  assert.match(stdout, /recent events\n(.*\n)*.*start +gateway .* started/);
  assert.match(stdout, new RegExp(`shop 127\\.0\\.0\\.1:${ports[1]}: healthy → (unhealthy|ejected)`));
  assert.ok(!stdout.includes('\u001b['), 'no colours when not a terminal');

  const down = await runCli(['status', '--admin', `127.0.0.1:${await freePort()}`, '--once']);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /^tandem status: no gateway answers at http:\/\/127\.0\.0\.1:\d+ \(connection refused\): is it running\? Start one with `tandem gateway --config FILE`/);
  // The public listener given by mistake: said so.
  const wrong = await runCli(['status', '--admin', gw.url, '--once']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /answered \d+ .* — is http:\/\/127\.0\.0\.1:\d+ a tandem admin listener\? \(the config's `admin`, not `listen`\)/);
  const bad = await runCli(['status', '--interval', 'x']);
  assert.equal(bad.code, 2);

  // Without --once it refreshes: a new picture every interval.
  const live = spawn(process.execPath, [BIN, 'status', '--admin', gw.adminUrl, '--interval', '0.3'], { stdio: ['ignore', 'pipe', 'pipe'] });
  defer(async () => { live.kill('SIGKILL'); });
  let out = '';
  live.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const frames = () => (out.match(/^tandem \d/gm) ?? []).length;
  await waitFor(`three refreshed pictures (so far: ${out})`, () => frames() >= 3, { intervalMs: 50 });
  live.kill('SIGTERM');
});

test('a draining instance stays on the dashboard, as draining, until it leaves', async () => {
  const gw = await startGateway({ services: { reg: {} }, routes: [{ prefix: '/', service: 'reg' }] });
  defer(() => gw.stop('SIGKILL'));
  const inst = await spawnInstance({ registry: gw.adminUrl, service: 'reg', drainQuietPeriod: 3000 });
  defer(async () => { inst.proc.kill('SIGKILL'); await inst.exited; });
  const stateOf = async () => {
    const snap = (await (await adminFetch(`${gw.adminUrl}/admin/dashboard`)).json()) as DashboardSnapshot;
    return snap.services.find((s) => s.name === 'reg')?.endpoints.find((e) => e.id === inst.address)?.state;
  };
  const joined = await waitFor('the instance on the dashboard', stateOf, { intervalMs: 50 });
  assert.ok(['probation', 'healthy'].includes(joined), joined);
  inst.proc.kill('SIGTERM');
  await waitFor('the instance shown as draining', async () => (await stateOf()) === 'draining', { intervalMs: 50 });
  await inst.exited;
  await waitFor('the instance gone from the dashboard once it left', async () => (await stateOf()) === undefined, { intervalMs: 50 });
});

test('tandem status in a small terminal: unhealthy instances first, the healthy rest summarized', () => {
  const endpoints = Array.from({ length: 500 }, (_, i) => ({ id: `10.0.${i >> 8}.${i & 255}:8080`, state: i % 100 === 7 ? 'ejected' : 'healthy', rate: 1, errorRate: 0, p99Ms: 5, latencyEstimateMs: 3, inflight: 0, weight: 1 }));
  const snap: DashboardSnapshot = {
    gateway: { version: '1.2.3', pid: 1, uptimeSeconds: 5, health: 'ok', inflight: 0, listen: '127.0.0.1:8080', rssBytes: 1, rate: 500, errorRate: 0 },
    services: [{ name: 'big', panic: false, rate: 500, errorRate: 0, p99Ms: 5, active: 0, retriesPerSecond: 0, budgetExhausted: 0, endpoints }],
    timeline: [],
    sampledAt: new Date().toISOString(),
  };
  const text = render(snap, { color: false, maxRows: 40 });
  const lines = text.trimEnd().split('\n');
  assert.ok(lines.length <= 40, `fits 40 rows: ${lines.length}`);
  assert.equal(lines.filter((l) => /^ {2}ejected/.test(l)).length, 5, 'all 5 ejected instances are shown');
  assert.match(text, /… \d+ more \(all healthy\)/);
  assert.equal(render(snap).split('\n').filter((l) => /^ {2}(healthy|ejected) /.test(l)).length, 500, '--once prints every instance');
});

test('tandem status says why the gateway is not ok, and which instances left lately and why', () => {
  const snap: DashboardSnapshot = {
    gateway: {
      version: '1.2.3', pid: 1, uptimeSeconds: 5, health: 'degraded', inflight: 0, listen: '127.0.0.1:8080', rssBytes: 1, rate: 20, errorRate: 1,
      reasons: [
        { kind: 'no-eligible', service: 'shop', text: 'no eligible instance (2 unhealthy)' },
        { kind: 'panic', service: 'shop', text: 'in panic: traffic sent to instances out of rotation' },
        { kind: 'no-instance', service: 'orders', text: 'no instance: every request gets 503' },
      ],
    },
    services: [{
      name: 'orders', panic: false, rate: 0, errorRate: 0, p99Ms: null, active: 0, retriesPerSecond: 0, budgetExhausted: 0, endpoints: [],
      departed: [{ id: '127.0.0.1:7001', instance: 'orders-1', cause: 'connection-lost', time: '2030-01-01T10:00:01.000Z' }],
    }],
    timeline: [],
    sampledAt: new Date().toISOString(),
  };
  const text = render(snap);
  assert.match(text, /^tandem 1\.2\.3 {2}degraded {2}listen/);
  assert.match(text, /^ {2}! shop: no eligible instance \(2 unhealthy\), in panic: traffic sent to instances out of rotation\n {2}! orders: no instance: every request gets 503$/m);
  assert.match(text, /^ {2}left {9}127\.0\.0\.1:7001 {11}connection lost at 10:00:01 \(orders-1\)$/m);
  assert.ok(render(snap, { color: false, maxRows: 12 }).trimEnd().split('\n').length <= 12 + 1, 'reasons and departures count in a terminal\'s rows');
});
