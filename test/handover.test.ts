import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, request, type Server } from 'node:http';
import { spawn, spawnSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { startGateway, tempDir, runCli, BIN, type RunningGateway } from './helpers/gateway.js';
import { followJsonLines } from './helpers/json-lines.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { guardRuleset, holdsAddress } from '../src/gateway/handover.js';

/**
 * A gateway of a pair behind a virtual address (issue 13): SIGTERM moves the address first —
 * the track file keepalived watches gets 1, /readyz says 503 — and only then drains.
 */

const backends: Backend[] = [];
const gateways: RunningGateway[] = [];
const dirs: string[] = [];
const servers: Server[] = [];

after(async () => {
  for (const g of gateways) if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL');
  await Promise.all(backends.map((b) => b.close()));
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function get(port: number, path: string): Promise<{ status?: number; body?: string; connection?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'keep-alive' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

test('SIGTERM with --track-file: the address is released (track file 1, /readyz 503) before the drain starts; in-flight requests finish', async () => {
  let arrived = 0;
  let finish!: () => void;
  const held = new Promise<void>((resolve) => { finish = resolve; });
  const backend = await startBackend('slow', (req, res) => {
    if (req.url === '/healthz') {
      res.end('ok');
      return;
    }
    arrived++;
    req.resume();
    // Answered only once the test has seen the handover: the request is in flight throughout.
    void held.then(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(`done ${req.url}`));
  });
  backends.push(backend);
  const dir = tempDir('tandem-handover-');
  dirs.push(dir);
  const trackFile = join(dir, 'handover');
  // 192.0.2.1 (TEST-NET-1) is on no interface here: nothing to wait for, the order is what is tested.
  const gw = await startGateway({ services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] },
    { args: ['--track-file', trackFile, '--virtual-address', '192.0.2.1'] });
  gateways.push(gw);
  await gw.waitForLog((l) => l.msg === 'listening');
  // Written once the listeners are bound; keepalived may give this gateway the address.
  await until(() => contents(trackFile) === '0\n');

  const inflight = get(gw.port, '/inflight');
  await until(() => arrived === 1);
  gw.proc.kill('SIGTERM');
  await gw.waitForLog((l) => l.msg === 'releasing the address');
  assert.equal(readFileSync(trackFile, 'utf8'), '1\n', 'the track file says "give the address away" as the release starts');
  const ready = await fetch(`${gw.adminUrl}/readyz`);
  assert.equal(ready.status, 503);
  await ready.arrayBuffer();
  finish();

  const outcome = await inflight;
  assert.equal(outcome.status, 200, JSON.stringify(outcome));
  assert.equal(outcome.connection, 'close', 'a response after the release tells the client to close');
  assert.equal(await gw.exited, 0, gw.stderr());
  // By the lines' own timestamps: pino may write two lines of the same moment out of order.
  const at = (msg: string) => Date.parse(String(gw.logs.find((l) => l.msg === msg)?.time ?? NaN));
  assert.ok(at('releasing the address') <= at('no new connections') && at('no new connections') <= at('draining'),
    `release, then the quiet period, then the drain: ${JSON.stringify(gw.logs.map((l) => [l.msg, l.time]))}`);
  assert.equal(readFileSync(trackFile, 'utf8'), '1\n', 'a stopped gateway leaves the file at 1: keepalived keeps the address away');
});

/**
 * With the address really on an interface (a network namespace of the test's own, root only):
 * the gateway keeps serving — new connections accepted, answered with `Connection: close` — for
 * as long as the address stays, and drains only once it left.
 */
const root = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
test('SIGTERM with --virtual-address: the gateway serves until the address left the host, then drains', { skip: root ? false : 'needs root and iproute2' }, async () => {
  const ns = `tgdt${process.pid}`;
  const ip = (...args: string[]) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  const dir = tempDir('tandem-handover-ns-');
  dirs.push(dir);
  ip('netns', 'add', ns);
  try {
    // A veth pair: this side 10.213.9.1, the namespace's side 10.213.9.2 and the "virtual" 10.213.9.100.
    ip('link', 'add', `tgv${process.pid}`.slice(0, 15), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('addr', 'add', '10.213.9.1/24', 'dev', `tgv${process.pid}`.slice(0, 15));
    ip('link', 'set', `tgv${process.pid}`.slice(0, 15), 'up');
    ip('-n', ns, 'addr', 'add', '10.213.9.2/24', 'dev', 'eth0');
    ip('-n', ns, 'addr', 'add', '10.213.9.100/24', 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    // The service, on this side of the veth (the gateway in the namespace reaches it there).
    const service = createServer((req, res) => { req.resume(); res.end('ok'); });
    servers.push(service);
    await new Promise<void>((resolve) => service.listen(0, '10.213.9.1', resolve));
    const servicePort = (service.address() as { port: number }).port;
    const config = join(dir, 'gw.json');
    writeFileSync(config, JSON.stringify({ listen: '0.0.0.0:0', admin: '10.213.9.2:0', registry: { token: 'handover-test-token-0123' },
      services: { shop: { endpoints: [`10.213.9.1:${servicePort}`] } }, routes: [{ prefix: '/', service: 'shop' }] }));
    const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'gateway', '--config', config, '--track-file', join(dir, 'handover'),
      '--virtual-address', '10.213.9.100', '--handover-timeout', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const logs = followJsonLines(proc, exited, 'gateway');
    try {
      const listening = await logs.waitFor((l) => l.msg === 'listening');
      const port = Number(String(listening.listen).split(':').pop());
      const via = (path: string) => new Promise<{ status?: number; connection?: string; error?: string }>((resolve) => {
        const req = request({ host: '10.213.9.100', port, path, agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode, connection: res.headers.connection }));
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
        req.end();
      });
      assert.equal((await via('/before')).status, 200);
      proc.kill('SIGTERM');
      await logs.waitFor((l) => l.msg === 'handing the address over');
      // The address is still here: the gateway must still take new connections.
      const during = await via('/during');
      assert.deepEqual(during, { status: 200, connection: 'close' }, 'a new connection while the address is still on the host');
      assert.ok(!logs.lines.some((l) => l.msg === 'draining'), 'drained while the address was still here');
      // Not ready for new traffic, but the handover, not keepalived's check or the watchdog,
      // decides when the address goes: /readyz?address says hold it until then.
      const admin = String(listening.admin);
      const readyz = async (path: string) => { const r = await fetch(`http://${admin}${path}`); return [r.status, await r.text()]; };
      assert.deepEqual(await readyz('/readyz'), [503, 'not ready\n']);
      assert.deepEqual(await readyz('/readyz?address'), [200, 'releasing the address\n']);
      ip('-n', ns, 'addr', 'del', '10.213.9.100/24', 'dev', 'eth0');
      await logs.waitFor((l) => l.msg === 'address released');
      await logs.waitFor((l) => l.msg === 'draining');
      assert.equal(await exited, 0, logs.stderr());
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['link', 'del', `tgv${process.pid}`.slice(0, 15)]);
  }
});

/**
 * --handover-drop-syn (root, a namespace of the test's own): from SIGTERM on, new connections to
 * the address are dropped by an nftables table in the gateway's network namespace — in place
 * before the address is released (the track file gets 1), gone once the gateway exited. A table
 * left by a killed run is removed when the gateway starts.
 */
const nftUsable = root && spawnSync('nft', ['--version']).status === 0;
test('--handover-drop-syn: a guard drops connection attempts while nothing listens; from SIGTERM on, new connections are dropped before the address is released, and that rule goes with the process', { skip: nftUsable ? false : 'needs root, iproute2 and nft' }, async () => {
  const ns = `tgdn${process.pid}`;
  const hostSide = `tgn${process.pid}`.slice(0, 15);
  const ip = (...args: string[]) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  const table = () => spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'tandem_handover'], { encoding: 'utf8' });
  const guardTable = () => spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', 'tandem_guard'], { encoding: 'utf8' });
  const droppedByGuard = () => Number(/counter packets (\d+)/.exec(guardTable().stdout)?.[1] ?? -1);
  const dir = tempDir('tandem-handover-nft-');
  dirs.push(dir);
  ip('netns', 'add', ns);
  try {
    ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('addr', 'add', '10.213.8.1/24', 'dev', hostSide);
    ip('link', 'set', hostSide, 'up');
    ip('-n', ns, 'addr', 'add', '10.213.8.2/24', 'dev', 'eth0');
    ip('-n', ns, 'addr', 'add', '10.213.8.100/24', 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    // What a gateway killed in the middle of a handover leaves behind.
    const stale = spawnSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: 'table ip tandem_handover {\n}\n', encoding: 'utf8' });
    assert.equal(stale.status, 0, stale.stderr);
    const service = createServer((req, res) => { req.resume(); res.end('ok'); });
    servers.push(service);
    await new Promise<void>((resolve) => service.listen(0, '10.213.8.1', resolve));
    const servicePort = (service.address() as { port: number }).port;
    const config = join(dir, 'gw.json');
    const trackFile = join(dir, 'handover');
    writeFileSync(config, JSON.stringify({ listen: '0.0.0.0:0', admin: '10.213.8.2:0', registry: { token: 'handover-test-token-0123' },
      services: { shop: { endpoints: [`10.213.8.1:${servicePort}`] } }, routes: [{ prefix: '/', service: 'shop' }] }));
    const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'gateway', '--config', config, '--track-file', trackFile,
      '--virtual-address', '10.213.8.100', '--handover-timeout', '60', '--handover-drop-syn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const logs = followJsonLines(proc, exited, 'gateway');
    try {
      await logs.waitFor((l) => l.msg === 'listening');
      await until(() => contents(trackFile) === '0\n');
      assert.notEqual(table().status, 0, 'the table a killed run left is gone once the gateway claims the address');
      const port = Number(String(logs.lines.find((l) => l.msg === 'listening')!.listen).split(':').pop());
      const guard = guardTable();
      assert.equal(guard.status, 0, `the guard is in place once the gateway listens: ${guard.stderr}`);
      assert.match(guard.stdout, new RegExp(`ip daddr 10\\.213\\.8\\.100 tcp dport ${port} tcp flags syn / fin,syn,rst,ack socket transparent 0 accept`));
      const served = await fetch(`http://10.213.8.100:${port}/`);
      assert.equal(served.status, 200, 'the guard lets connections through while the gateway listens');
      await served.text();
      proc.kill('SIGTERM');
      // Logged after the track file got 1, while the address is still on the host (the test removes it).
      await logs.waitFor((l) => l.msg === 'handing the address over');
      const rules = table();
      assert.equal(rules.status, 0, `the drop rule is in place when the address is released: ${rules.stderr}`);
      assert.match(rules.stdout, /ip daddr 10\.213\.8\.100 tcp flags syn \/ fin,syn,rst,ack drop/);
      const order = logs.lines.map((l) => l.msg);
      assert.ok(order.indexOf('new connections dropped') >= 0 && order.indexOf('new connections dropped') < order.indexOf('connections ended'),
        `the rule, then the wait for open connections, then the release: ${JSON.stringify(order)}`);
      ip('-n', ns, 'addr', 'del', '10.213.8.100/24', 'dev', 'eth0');
      assert.equal(await exited, 0, logs.stderr());
      assert.notEqual(table().status, 0, 'the drop rule is gone once the gateway stopped');
      // Nothing listens now: a connection attempt is dropped by the guard (its SYN retransmitted
      // later, to whichever host holds the address), not refused.
      ip('-n', ns, 'addr', 'add', '10.213.8.100/24', 'dev', 'eth0');
      const dropped = droppedByGuard();
      const attempt = createConnection({ host: '10.213.8.100', port });
      const outcome = new Promise<string>((resolve) => { attempt.once('connect', () => resolve('connected')); attempt.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error')); });
      await until(() => droppedByGuard() > dropped);
      assert.equal(await Promise.race([outcome, Promise.resolve('pending')]), 'pending', 'a connection attempt with no gateway listening is neither refused nor taken');
      attempt.destroy();
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['link', 'del', hostSide]);
  }
});

test('the guard covers each listener port once, on the address only', () => {
  const rules = guardRuleset('10.0.0.100', [8443, 8080, 8443]);
  assert.match(rules, /ip daddr 10\.0\.0\.100 tcp dport \{ 8080, 8443 \} tcp flags & \(fin \| syn \| rst \| ack\) == syn socket transparent 0 accept\n/);
  assert.match(rules, /ip daddr 10\.0\.0\.100 tcp dport \{ 8080, 8443 \} tcp flags & \(fin \| syn \| rst \| ack\) == syn counter drop\n/);
});

test('holdsAddress looks at every interface but loopback (the address also stays on lo)', () => {
  const nic = (address: string, internal: boolean) => ({ address, internal, family: 'IPv4' as const, netmask: '255.255.255.0', mac: '00:00:00:00:00:00', cidr: `${address}/24` });
  assert.equal(holdsAddress('10.0.0.100', { eth0: [nic('10.0.0.11', false), nic('10.0.0.100', false)], lo: [nic('127.0.0.1', true)] }), true);
  assert.equal(holdsAddress('10.0.0.100', { eth0: [nic('10.0.0.11', false)], lo: [nic('127.0.0.1', true), nic('10.0.0.100', true)] }), false);
});

test('tandem keepalived prints a config with the handover file, the /readyz check from --config and the address; bad flags exit 2', async () => {
  const dir = tempDir('tandem-keepalived-');
  dirs.push(dir);
  const config = join(dir, 'gw.yaml');
  writeFileSync(config, 'listen: 0.0.0.0:8080\nadmin: 10.1.2.3:9911\nregistry:\n  token: 0123456789abcdef0123\nservices:\n  shop: {}\nroutes:\n  - prefix: /\n    service: shop\n');
  const ok = await runCli(['keepalived', '--interface', 'eth1', '--address', '10.1.2.100/24', '--priority', '150', '--config', config, '--peer', '10.1.2.4']);
  assert.equal(ok.code, 0, ok.stderr);
  for (const part of ['vrrp_version 3', 'interface eth1', 'priority 150', 'nopreempt', '10.1.2.100/24 dev eth1', 'http://10.1.2.3:9911/readyz', 'file "/run/tandem/handover"', 'unicast_peer', '10.1.2.4']) {
    assert.ok(ok.stdout.includes(part), `missing ${part}:\n${ok.stdout}`);
  }
  assert.ok(!ok.stdout.includes('track_process'), 'track_process only on request (not every kernel has process events)');
  assert.ok(!ok.stdout.includes('notify_master'), 'no nft call unless the gateway drops SYNs');
  const drop = await runCli(['keepalived', '--interface', 'eth1', '--address', '10.1.2.100/24', '--priority', '150', '--handover-drop-syn']);
  assert.equal(drop.code, 0, drop.stderr);
  assert.match(drop.stdout, /notify_master "\/usr\/sbin\/nft delete table ip tandem_handover" root/, 'taking the address removes a drop rule left behind');
  assert.match(drop.stdout, /--handover-drop-syn/, 'the gateway command it names carries the flag');
  const bad = await runCli(['keepalived', '--interface', 'eth1', '--address', '10.1.2.100', '--priority', '150']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /VIP|prefix length/);
});

function contents(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

async function until(pred: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
