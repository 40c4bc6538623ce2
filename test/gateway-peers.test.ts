// The gateways of a pair know each other (issue 13): config `peers` and `virtualAddress`, the
// peer poller with a fake clock against real sockets, and real gateways showing each other in
// /admin/cluster and the dashboard's data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { ConfigError, formatProblem, validateConfig } from '../src/config/index.js';
import { FakeClock } from '../src/core/clock.js';
import { HOLDS_ADDRESS_HEADER, PeerWatch, type GatewayView } from '../src/gateway/peer-watch.js';
import { adminFetch, startGateway } from './helpers/gateway.js';
import { freePort } from './helpers/backend.js';
import { until } from './helpers/sdk.js';
import { render } from '../src/cli/status-command.js';
import type { DashboardSnapshot } from '../src/gateway/dashboard-feed.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

const { defer, track } = cleanupAfterAll();
const base = { listen: '127.0.0.1:8080', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] };

function problems(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems.map(formatProblem);
  }
  return assert.fail('expected the config to be rejected');
}

test('config: peers are admin addresses (each once, not our own), virtualAddress an IP; both default to none', () => {
  const plain = validateConfig(base);
  assert.deepEqual([plain.peers, plain.virtualAddress], [[], undefined]);
  const pair = validateConfig({ ...base, admin: '10.0.0.1:9901', registry: { token: 'x'.repeat(16) }, peers: ['10.0.0.2:9901', '[fd00::3]:9901'], virtualAddress: '10.0.0.100/24' });
  assert.deepEqual(pair.peers, [{ host: '10.0.0.2', port: 9901 }, { host: 'fd00::3', port: 9901 }]);
  assert.equal(pair.virtualAddress, '10.0.0.100', 'the prefix length is accepted and dropped');
  assert.deepEqual(problems({ ...base, peers: ['10.0.0.2', '127.0.0.1:9901', 7], virtualAddress: 'gw.example.com' }).sort(), [
    'peers[2]: expected string, got number 7',
    'peers[0]: "10.0.0.2" is not a valid address: expected "host:port", e.g. 127.0.0.1:8080',
    'peers[1]: 127.0.0.1:9901 is this gateway\'s own admin listener — list the other gateways only',
    'virtualAddress: "gw.example.com" is not an IP address (e.g. 10.0.0.100 or 10.0.0.100/24)',
  ].sort());
  assert.equal(problems({ ...base, peers: ['10.0.0.2:9901', '10.0.0.2:9901'] }).length, 1, 'a peer listed twice');
});

/** A peer's admin listener as the poller sees it: /readyz with a status and the holds header. */
async function fakePeer(answer: { status: number; holds?: string }): Promise<{ server: Server; address: string; asked: () => number; waitAsked(n: number): Promise<void> }> {
  let asked = 0;
  const waiters = new Set<() => void>();
  const server = createServer((req, res) => {
    asked++;
    for (const w of [...waiters]) w();
    res.writeHead(answer.status, answer.holds === undefined ? {} : { [HOLDS_ADDRESS_HEADER]: answer.holds }).end();
  }).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  defer(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return {
    server,
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    asked: () => asked,
    waitAsked: (n) => new Promise((resolve) => {
      const check = () => { if (asked >= n) { waiters.delete(check); resolve(); } };
      waiters.add(check);
      check();
    }),
  };
}

test('PeerWatch (fake clock): one /readyz per peer per interval, none while one is unanswered; ready, holds and silence reported as changes', async () => {
  const ready = await fakePeer({ status: 200, holds: 'true' });
  const notReady = await fakePeer({ status: 503, holds: 'false' });
  // A frozen peer: the connection is accepted, nothing is ever answered.
  const sockets: Socket[] = [];
  let frozenAsked = 0;
  const frozen = createNetServer((s) => { sockets.push(s); s.on('data', () => { frozenAsked++; }); }).listen(0, '127.0.0.1');
  await new Promise((resolve) => frozen.once('listening', resolve));
  defer(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); frozen.close(resolve); }));
  const frozenAddress = `127.0.0.1:${(frozen.address() as AddressInfo).port}`;

  const clock = new FakeClock();
  const changes: GatewayView[] = [];
  const polls = new Map<string, number>();
  const changed = new Set<() => void>();
  const hp = (a: string) => ({ host: '127.0.0.1', port: Number(a.split(':')[1]) });
  let local = ['127.0.0.1'];
  const watch = new PeerWatch({
    self: () => ({ address: '127.0.0.1:1', ready: true }),
    peers: [hp(ready.address), hp(notReady.address), hp(frozenAddress)],
    virtualAddress: '10.9.9.9',
    clock,
    localAddresses: () => local,
    onChange: (now) => changes.push(now),
    onPoll: (view) => {
      polls.set(view.address, (polls.get(view.address) ?? 0) + 1);
      for (const c of [...changed]) c();
    },
  });
  defer(async () => watch.close());
  /** Resolves once the peers at these addresses were polled n times each (answered, or given up on). */
  const polled = (n: number, ...addresses: string[]) => new Promise<void>((resolve) => {
    const check = () => {
      if (addresses.every((a) => (polls.get(a) ?? 0) >= n)) {
        changed.delete(check);
        resolve();
      }
    };
    changed.add(check);
    check();
  });
  watch.start();
  assert.equal(watch.holdsAddress(), false);
  // Time moves only once the answers of the round are in: a fake clock would otherwise outrun real sockets.
  await polled(1, ready.address, notReady.address);
  clock.advance(1000);
  await Promise.all([polled(2, ready.address, notReady.address), polled(1, frozenAddress)]);
  const [self, a, b, c] = watch.views();
  assert.deepEqual([self!.self, self!.ready, self!.holdsAddress], [true, true, false]);
  assert.deepEqual([a!.ready, a!.holdsAddress, typeof a!.lastSeen], [true, true, 'string']);
  assert.deepEqual([b!.ready, b!.holdsAddress], [false, false]);
  assert.deepEqual([c!.ready, c!.holdsAddress, c!.lastSeen, c!.error], [false, null, null, 'no answer within 1000 ms']);
  for (let i = 3; i <= 6; i++) {
    clock.advance(1000);
    await polled(i, ready.address, notReady.address);
  }
  // One request per answering peer per interval; the frozen one only when the last request was given up on.
  assert.deepEqual([ready.asked(), notReady.asked()], [6, 6]);
  assert.ok(frozenAsked <= 6, `the frozen peer was asked ${frozenAsked} times in 6 intervals`);
  const byAddress = (x: unknown[], y: unknown[]) => String(x[0]).localeCompare(String(y[0]));
  assert.deepEqual(changes.map((ch) => [ch.address, ch.ready, ch.error ?? null]).sort(byAddress), [
    [ready.address, true, null], [notReady.address, false, null], [frozenAddress, false, 'no answer within 1000 ms'],
  ].sort(byAddress), 'one change per peer: an unchanged answer is no change');
  // This gateway takes the address: reported once.
  local = ['127.0.0.1', '10.9.9.9'];
  clock.advance(1000);
  assert.equal(watch.holdsAddress(), true);
  assert.deepEqual(changes.filter((ch) => ch.self).map((ch) => ch.holdsAddress), [true]);
  // A reload that keeps one peer: what is known of it stays; the others are gone; no address, no answer about it.
  const known = watch.views()[1]!;
  watch.configure([hp(ready.address)], undefined);
  assert.deepEqual(watch.views().slice(1), [known]);
  assert.equal(watch.holdsAddress(), null);
  assert.deepEqual(changes.filter((ch) => ch.self).map((ch) => ch.holdsAddress), [true], 'an address no longer configured is no change to report');
});

test('real gateways: /admin/cluster and the dashboard show this gateway and its peer, which one holds the address, and a frozen or stopped peer', async (t) => {
  const shop = { services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] };
  const adminA = await freePort();
  // B does not hold the address (TEST-NET: on no interface); A does (127.0.0.1 is on lo).
  const b = track(await startGateway({ ...shop, peers: [`127.0.0.1:${adminA}`], virtualAddress: '192.0.2.100' }));
  const a = track(await startGateway({ ...shop, admin: `127.0.0.1:${adminA}`, peers: [b.adminUrl.slice('http://'.length)], virtualAddress: '127.0.0.1' }));
  const bAddress = b.adminUrl.slice('http://'.length);
  const readyz = await fetch(`${b.adminUrl}/readyz`);
  assert.equal(readyz.headers.get(HOLDS_ADDRESS_HEADER), 'false', 'B says on its open /readyz that it does not hold the address');
  await a.waitForLog((l) => l.msg === 'gateway peer' && l.gateway === bAddress && l.ready === true);
  const cluster = await (await adminFetch(`${a.adminUrl}/admin/cluster`)).json() as { gateways: GatewayView[] };
  assert.deepEqual(cluster.gateways.map((g) => [g.address, g.self, g.ready, g.holdsAddress]), [[`127.0.0.1:${adminA}`, true, true, true], [bAddress, false, true, false]]);
  assert.equal(typeof cluster.gateways[1]!.lastSeen, 'string');
  const metrics = await (await fetch(`${a.adminUrl}/metrics`)).text();
  for (const line of [`tandem_gateway_ready{gateway="127.0.0.1:${adminA}"} 1`, `tandem_gateway_ready{gateway="${bAddress}"} 1`, `tandem_gateway_holds_address{gateway="127.0.0.1:${adminA}"} 1`, `tandem_gateway_holds_address{gateway="${bAddress}"} 0`]) {
    assert.ok(metrics.split('\n').includes(line), `${line} in /metrics`);
  }
  // B sees A the other way round.
  await b.waitForLog((l) => l.msg === 'gateway peer' && l.gateway === `127.0.0.1:${adminA}` && l.holdsAddress === true);

  // Frozen: not answering, last seen kept; back after SIGCONT.
  b.proc.kill('SIGSTOP');
  defer(async () => { b.proc.kill('SIGCONT'); });
  const silent = await a.waitForLog((l) => l.msg === 'gateway peer' && l.gateway === bAddress && l.error !== undefined);
  assert.match(String(silent.error), /no answer within 1000 ms/);
  // The dashboard's data is sampled once a second: the next sample has it.
  type Dashboard = { gateways: GatewayView[]; timeline: Array<{ kind: string; text: string }> };
  let dashboard: Dashboard | undefined;
  await until(async () => {
    dashboard = await (await adminFetch(`${a.adminUrl}/admin/dashboard`)).json() as Dashboard;
    return dashboard.gateways.some((g) => g.address === bAddress && g.error !== undefined);
  }, 5000, 'the frozen peer on the dashboard');
  const seen = dashboard!.gateways.find((g) => g.address === bAddress)!;
  assert.deepEqual([seen.ready, seen.holdsAddress, typeof seen.lastSeen], [false, null, 'string']);
  assert.match(render(dashboard as unknown as DashboardSnapshot), /\n {2}gateways: 127\.0\.0\.1:\d+ \(this\) ready, holds the address · 127\.0\.0\.1:\d+ not answering \(no answer within 1000 ms\)\n/, 'tandem status says it too');
  assert.ok(dashboard!.timeline.some((e) => e.kind === 'peer' && e.text === `gateway ${bAddress}: not answering (no answer within 1000 ms)`), JSON.stringify(dashboard!.timeline));
  b.proc.kill('SIGCONT');
  await a.waitForLog((l) => l.msg === 'gateway peer' && l.gateway === bAddress && l.ready === true && a.logs.indexOf(l) > a.logs.indexOf(silent));
  // Stopped: refused — or reset, when A's request was on B's admin connection as B closed it.
  await b.stop('SIGTERM');
  const gone = await a.waitForLog((l) => l.msg === 'gateway peer' && l.gateway === bAddress && /^ECONN(REFUSED|RESET)$/.test(String(l.error)) && a.logs.indexOf(l) > a.logs.indexOf(silent));
  t.diagnostic(`peer changes seen by A: ${a.logs.filter((l) => l.msg === 'gateway peer').map((l) => `${String(l.ready)}/${String(l.error ?? '')}`).join(', ')}; last: ${JSON.stringify(gone)}`);
});
