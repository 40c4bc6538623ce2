#!/usr/bin/env node
// Gateway-pair drill (tandem issue 13): two gateways behind one virtual address (keepalived,
// VRRP), open-loop load on that address, and the faults a pair is for — then the same faults
// against the classic pair (nginx + keepalived with its usual settings).
//
// Usage (as root): npm run drill:gateways [-- [--quick] [--rate N] [--keep-tmp]]
//   --quick     about 60 s: shorter windows, and only SIGKILL against the classic pair
//   --rate N    requests per second on the virtual address (default 300)
//   --no-drop-syn  the tandem gateways hand over without dropping new connections first
//               (no --handover-drop-syn: the behaviour before it, for comparison)
//   --no-watchdog  no `tandem watchdog` beside the gateways: a freeze is seen by keepalived's
//               /readyz script alone (once a second), as before the watchdog
//   --dead-after MS  the watchdog's --dead-after (default 500)
//
// The network is the drill's own: network namespaces named <prefix>-cl (client), -g1 and -g2
// (gateway hosts), -in (the three instances) and -br (a bridge joining them), addresses
// 10.213.0.0/24 only, the virtual address 10.213.0.100. Everything is
// removed at the end, on Ctrl-C/SIGTERM, and at the start of the next run when a crashed run
// left namespaces behind (their names carry the prefix "tgd" and the pid of the run).
//
// Per fault it prints: failed requests by kind (raw, for a caller that retries once a refused
// connection and a GET reset before any response byte, and for a caller with a 2 s timeout instead of 5 s), POSTs processed twice, the time until the address was
// on the peer, the time from the fault to the first success after the last failure, and p99.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createProcs, ensureTools, runDrillMain, sleep, tail, which } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill:gateways';
const NET = '10.213.0';
const VIP = `${NET}.100`;
const HOSTS = { cl: `${NET}.2`, g1: `${NET}.11`, g2: `${NET}.12`, in: `${NET}.20` };
const PORT = 8080;
const ADMIN = 9901;
const INSTANCE_PORTS = [7001, 7002, 7003];
const PREFIX = `tgd${process.pid}`;

function die(msg) {
  console.error(`${TAG}: ${msg}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { quick: false, rate: 300, keepTmp: false, dropSyn: true, watchdog: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-watchdog') opts.watchdog = false;
    else if (a === '--dead-after') opts.deadAfter = argv[++i];
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--no-drop-syn') opts.dropSyn = false;
    else if (a === '--rate') {
      opts.rate = Number(argv[++i]);
      if (!Number.isFinite(opts.rate) || opts.rate <= 0 || opts.rate > 2000) die(`--rate needs a number from 1 to 2000, got ${argv[i]}`);
    } else die(`unknown argument ${a} (known: --quick, --rate N, --keep-tmp, --no-drop-syn, --no-watchdog, --dead-after MS)`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const procs = createProcs({ tag: TAG, root });
let tmp;
const token = randomBytes(24).toString('hex');
const ns = (h) => `${PREFIX}-${h}`;

function run(cmd, args, { check = true } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout || '').trim()}`);
  return r.stdout ?? '';
}
const ip = (...args) => run('ip', args);

/** Namespaces of earlier runs whose drill process is gone (a crash, a SIGKILL): their processes and links go. */
function removeStale() {
  for (const line of run('ip', ['netns', 'list'], { check: false }).split('\n')) {
    const m = /^(tgd(\d+)-\w+)/.exec(line);
    if (!m) continue;
    const pid = Number(m[2]);
    let alive = pid === process.pid;
    if (!alive) try { process.kill(pid, 0); alive = true; } catch { /* gone */ }
    if (alive && pid !== process.pid) continue;
    removeNamespace(m[1]);
  }
}

/** Temp dirs of runs whose drill process is gone. */
function removeStaleDirs() {
  for (const name of readdirSync(os.tmpdir())) {
    const m = /^tandem-drill-gateways-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try { process.kill(Number(m[1]), 0); continue; } catch { /* gone */ }
    rmSync(join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

function removeNamespace(name) {
  for (const pid of run('ip', ['netns', 'pids', name], { check: false }).split('\n').filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
  }
  run('ip', ['netns', 'del', name], { check: false });
}

function teardown() {
  for (const h of ['cl', 'g1', 'g2', 'in', 'br']) removeNamespace(ns(h));
}

function buildNetwork() {
  for (const h of ['br', 'cl', 'g1', 'g2', 'in']) ip('netns', 'add', ns(h));
  ip('-n', ns('br'), 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', ns('br'), 'link', 'set', 'br0', 'up');
  for (const h of ['cl', 'g1', 'g2', 'in']) {
    ip('link', 'add', 'eth0', 'netns', ns(h), 'type', 'veth', 'peer', 'name', `p-${h}`, 'netns', ns('br'));
    ip('-n', ns('br'), 'link', 'set', `p-${h}`, 'master', 'br0', 'up');
    ip('-n', ns(h), 'addr', 'add', `${HOSTS[h]}/24`, 'dev', 'eth0');
    ip('-n', ns(h), 'link', 'set', 'eth0', 'up');
    ip('-n', ns(h), 'link', 'set', 'lo', 'up');
  }
  for (const h of ['g1', 'g2']) {
    // The gateway's copy of the address on lo (see startTandemGateway) stays out of ARP.
    run('ip', ['netns', 'exec', ns(h), 'sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.eth0.arp_ignore=1', 'net.ipv4.conf.eth0.arp_announce=2']);
  }
}

function inHost(h, name, cmd, args) {
  return procs.start(name, 'ip', ['netns', 'exec', ns(h), cmd, ...args], { dir: tmp });
}

/** curl inside a namespace; the HTTP status, 0 when no answer. */
function status(h, url, timeoutS = 1) {
  const out = run('ip', ['netns', 'exec', ns(h), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(timeoutS), url], { check: false });
  return Number(out) || 0;
}

async function waitFor(what, pred, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const holder = () => ['g1', 'g2'].find((h) => / 10\.213\.0\.100\/24 /.test(ip('-n', ns(h), '-o', 'addr', 'show', 'dev', 'eth0')));

/** Records when the address appears on each gateway host, from `ip monitor` (no polling). */
function watchAddress() {
  const events = [];
  const watchers = ['g1', 'g2'].map((h) => {
    const child = spawn('ip', ['-n', ns(h), '-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.includes(`${VIP}/24`)) events.push({ at: Date.now(), host: h, added: !line.startsWith('Deleted') });
      }
    });
    return child;
  });
  return { events, stop: () => watchers.forEach((c) => c.kill('SIGKILL')) };
}

// ---------------------------------------------------------------- the pair under test

function gatewayConfig(h) {
  return `listen: 0.0.0.0:${PORT}
admin: ${HOSTS[h]}:${ADMIN}
drainTimeout: 10s
registry:
  token: ${token}
services:
  shop: {}
routes:
  - prefix: /
    service: shop
`;
}

/**
 * The gateway, supervised as the systemd unit in docs/deployment.md does it: while it runs, a
 * copy of the address sits on lo (scope host), so that responses in flight when the address
 * moves can still leave this host; when the process ends, however it ends, 1 goes into the
 * handover file (keepalived moves the address) and the copy goes. With --handover-drop-syn the
 * gateway's guard (an nftables table it installs when it listens, and leaves) drops a
 * connection attempt that finds nothing listening — from the instant of a SIGKILL, before any
 * supervisor could act — so the client's SYN retransmit lands on the peer instead of failing.
 */
function startTandemGateway(h) {
  run('ip', ['-n', ns(h), 'addr', 'replace', `${VIP}/32`, 'dev', 'lo', 'scope', 'host']);
  const proc = startGatewayProcess(h);
  void proc.exited.then(() => {
    if (procs.isCleaningUp()) return; // the namespaces and the temp dir are going
    try { writeFileSync(join(tmp, `${h}.handover`), '1\n'); } catch { /* removed meanwhile */ }
    run('ip', ['-n', ns(h), 'addr', 'del', `${VIP}/32`, 'dev', 'lo'], { check: false });
  });
  return proc;
}

function startGatewayProcess(h) {
  return inHost(h, `tandem-${h}`, process.execPath, [join(root, 'bin', 'tandem.js'), 'gateway', '--config', join(tmp, `${h}.yaml`),
    '--track-file', join(tmp, `${h}.handover`), '--virtual-address', VIP, '--process-name', `tandem-${h}`, ...(opts.dropSyn ? ['--handover-drop-syn'] : [])]);
}

/** `tandem watchdog` beside the gateway (docs/deployment.md): it outlives the gateway's restarts. */
function startWatchdog(h) {
  return inHost(h, `watchdog-${h}`, process.execPath, [join(root, 'bin', 'tandem.js'), 'watchdog', '--config', join(tmp, `${h}.yaml`), '--track-file', join(tmp, `${h}.watchdog`),
    ...(opts.deadAfter ? ['--dead-after', opts.deadAfter] : [])]);
}

function startKeepalived(h, conf) {
  writeFileSync(join(tmp, `${h}-keepalived.conf`), conf);
  const pidArgs = ['-p', join(tmp, `${h}-ka.pid`), '-r', join(tmp, `${h}-ka-vrrp.pid`), '-c', join(tmp, `${h}-ka-chk.pid`)];
  return inHost(h, `keepalived-${h}`, 'keepalived', ['-n', '-l', '-D', '-P', '-f', join(tmp, `${h}-keepalived.conf`), ...pidArgs]);
}

function tandemKeepalived(h, priority) {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'tandem.js'), 'keepalived', '-i', 'eth0', '-a', `${VIP}/24`, '-p', String(priority),
    '--config', join(tmp, `${h}.yaml`), '--track-file', join(tmp, `${h}.handover`), '--process-name', `tandem-${h}`, ...(opts.dropSyn ? ['--handover-drop-syn'] : []),
    ...(opts.watchdog ? ['--watchdog-file', join(tmp, `${h}.watchdog`)] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tandem keepalived: ${r.stderr}`);
  return r.stdout;
}

/** keepalived's usual settings in front of nginx: VRRPv2 adverts every second, nginx checked every 2 s, fall 2. */
function classicKeepalived(h, priority) {
  const check = join(tmp, `${h}-check-nginx.sh`);
  writeFileSync(check, `#!/bin/sh\nkill -0 "$(cat ${join(tmp, `${h}-nginx.pid`)})"\n`);
  chmodSync(check, 0o755);
  return `global_defs {
  script_user root
  enable_script_security
}
vrrp_script check_nginx {
  script "${check}"
  interval 2
  fall 2
  rise 2
  weight -20
}
vrrp_instance VI_1 {
  state ${priority > 100 ? 'MASTER' : 'BACKUP'}
  interface eth0
  virtual_router_id 52
  priority ${priority}
  advert_int 1
  virtual_ipaddress {
    ${VIP}/24 dev eth0
  }
  track_script {
    check_nginx
  }
}
`;
}

function nginxConfig(h) {
  const n = (s) => join(tmp, `${h}-nginx${s}`);
  return `daemon off;
master_process on;
worker_processes 1;
pid ${n('.pid')};
error_log ${n('.error.log')} warn;
events { worker_connections 4096; }
http {
  client_body_temp_path ${n('.body')};
  proxy_temp_path ${n('.proxy')};
  fastcgi_temp_path ${n('.fcgi')};
  uwsgi_temp_path ${n('.uwsgi')};
  scgi_temp_path ${n('.scgi')};
  access_log off;
  upstream shop {
${INSTANCE_PORTS.map((p) => `    server ${HOSTS.in}:${p};`).join('\n')}
    keepalive 32;
  }
  server {
    listen ${PORT};
    location / {
      proxy_pass http://shop;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

// ---------------------------------------------------------------- load and figures

async function withLoad(name, seconds, fault) {
  const out = join(tmp, `${name}.load.json`);
  const load = inHost('cl', `load-${name}`, process.execPath, [join(root, 'scripts', 'lib', 'pair-load.mjs'),
    JSON.stringify({ origin: `http://${VIP}:${PORT}`, rate: opts.rate, durationS: seconds, idPrefix: name, out })]);
  const watch = watchAddress();
  await waitFor('the load to start', () => readText(load.outFile).includes('started'), 10_000);
  const startedAt = JSON.parse(readText(load.outFile).split('\n')[0]).at;
  let faultAt;
  try {
    faultAt = await fault(startedAt);
  } finally {
    await load.exited;
    watch.stop();
  }
  const { results } = JSON.parse(readFileSync(out, 'utf8'));
  return { name, faultAt, startedAt, results, moves: watch.events };
}

function readText(file) {
  try { return readFileSync(file, 'utf8'); } catch { return ''; }
}

function processedPosts() {
  const counts = new Map();
  for (const p of INSTANCE_PORTS) {
    for (const line of readText(join(tmp, `instance-${p}.stdout.log`)).split('\n')) {
      if (line.startsWith('POST ')) counts.set(line.slice(5), (counts.get(line.slice(5)) ?? 0) + 1);
    }
  }
  return counts;
}

const SHORT_TIMEOUT_MS = 2000;

function figures(setup, run, processed) {
  const { results, faultAt, startedAt, moves, name } = run;
  const failed = results.filter((r) => r.status !== 200);
  const byKind = {};
  for (const r of failed) {
    const k = `${r.method} ${r.status || r.err}`;
    byKind[k] = (byKind[k] ?? 0) + 1;
  }
  const afterRetry = failed.filter((r) => !(r.retry && r.retry.status === 200)).length;
  // The same run seen by a caller whose timeout is 2 s instead of 5 s: every answer slower than
  // that is a failure too. A freeze shorter than the 5 s timeout is mostly answered late; this
  // column shows what a caller with a common timeout saw.
  const slowOrFailed = results.filter((r) => r.status !== 200 || r.lat > SHORT_TIMEOUT_MS).length;
  const faultT = faultAt - startedAt;
  const moved = moves.find((m) => m.added && m.at >= faultAt);
  const lastFail = failed.reduce((m, r) => Math.max(m, r.t ?? 0), -1);
  const recovered = lastFail < 0 ? null : results.find((r) => r.status === 200 && r.t > lastFail);
  const lats = results.filter((r) => r.status === 200).map((r) => r.lat).sort((a, b) => a - b);
  const p99 = lats.length ? lats[Math.min(lats.length - 1, Math.ceil(0.99 * lats.length) - 1)] : null;
  const twice = results.filter((r) => r.method === 'POST' && (processed.get(r.id) ?? 0) > 1).length;
  return {
    setup, fault: name, requests: results.length, failed: failed.length, 'failed, one retry': afterRetry,
    [`failed, ${SHORT_TIMEOUT_MS / 1000} s timeout`]: slowOrFailed,
    'failed by kind': Object.entries(byKind).map(([k, v]) => `${k}×${v}`).join(' ') || '-',
    'POSTs twice': twice,
    'address moved (s)': moved ? ((moved.at - faultAt) / 1000).toFixed(2) : 'never',
    'first success after (s)': recovered ? Math.max(0, (recovered.t - faultT) / 1000).toFixed(2) : '-',
    'p99 (ms)': p99,
  };
}

// ---------------------------------------------------------------- faults

const gw = {};
const stack = { tandem: null };

function keepalivedState(h) {
  const lines = readText(join(tmp, `keepalived-${h}.stdout.log`)).split('\n').concat(readText(join(tmp, `keepalived-${h}.stderr.log`)).split('\n'));
  let state = 'none';
  for (const l of lines) {
    const m = /[Ee]ntering (\w+) (?:STATE|state)/.exec(l);
    if (m) state = m[1];
  }
  return state;
}

async function ready(h) {
  await waitFor(`${h} ready`, () => status(h, `http://${HOSTS[h]}:${ADMIN}/readyz`) === 200);
}

/** Waits until the gateway on h is back as keepalived's BACKUP (not FAULT), ready to take over. */
async function eligible(h) {
  if (stack.tandem) await ready(h);
  await waitFor(`keepalived on ${h} in BACKUP`, () => ['BACKUP', 'MASTER'].includes(keepalivedState(h)));
}

async function restart(h) {
  gw[h] = stack.tandem ? startTandemGateway(h) : startNginx(h);
  await eligible(h);
}

function startNginx(h) {
  return inHost(h, `nginx-${h}`, which('nginx'), ['-c', join(tmp, `${h}-nginx.conf`), '-p', tmp, '-e', join(tmp, `${h}-nginx.error.log`)]);
}

function signalGateway(h, sig) {
  procs.signalProc(gw[h], sig);
}

async function stopActive(sig) {
  const h = holder();
  if (!h) throw new Error('nobody holds the address');
  const at = Date.now();
  signalGateway(h, sig);
  return { h, at };
}

const FAULTS = {
  async 'SIGTERM + restart'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGTERM');
    await gw[h].exited;
    await restart(h);
    return faultAt;
  },
  async 'rolling restart'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const first = await stopActive('SIGTERM');
    await gw[first.h].exited;
    await restart(first.h);
    await sleep(1000);
    const second = await stopActive('SIGTERM');
    await gw[second.h].exited;
    await restart(second.h);
    return first.at;
  },
  async SIGKILL(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGKILL');
    await gw[h].exited;
    await sleep(1000);
    await restart(h);
    return faultAt;
  },
  async 'SIGSTOP 5 s'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGSTOP');
    await sleep(5000);
    signalGateway(h, 'SIGCONT');
    await eligible(h);
    return faultAt;
  },
};

async function runFaults(setup, list) {
  const rows = [];
  for (const [fault, seconds] of list) {
    const h = holder();
    if (!h) throw new Error('nobody holds the address before the fault');
    const faultAtS = 2;
    console.log(`${TAG}: ${setup}: ${fault} (${seconds} s of load, fault at ${faultAtS} s; ${h} holds the address)`);
    const r = await withLoad(`${setup}-${fault.replace(/\W+/g, '')}`, seconds, (t0) => FAULTS[fault](t0, faultAtS * 1000));
    r.name = fault;
    rows.push(r);
    // The other gateway must be eligible again before the next fault.
    for (const g of ['g1', 'g2']) await eligible(g);
  }
  const processed = processedPosts();
  return rows.map((r) => figures(setup, r, processed));
}

async function main() {
  if (process.getuid?.() !== 0) die('needs root (network namespaces, keepalived)');
  const missing = ensureTools(['keepalived', 'nginx', 'curl'], TAG);
  if (missing.length) die(`missing ${missing.join(', ')} (apt-get install -y keepalived nginx curl)`);
  if (opts.dropSyn && !which('nft')) {
    console.log(`${TAG}: installing nftables (nft: the gateways' --handover-drop-syn)`);
    spawnSync('sh', ['-c', 'apt-get install -y nftables || (apt-get update && apt-get install -y nftables)'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
    if (!which('nft')) die('missing nft (apt-get install -y nftables), or run with --no-drop-syn');
  }
  if (!readText(join(root, 'dist', 'src', 'node', 'index.js'))) die('run npm run build first');
  removeStale();
  removeStaleDirs();
  tmp = mkdtempSync(join(os.tmpdir(), `tandem-drill-gateways-${process.pid}-`));
  const started = Date.now();
  buildNetwork();

  // The pair under test: tandem gateways, keepalived from `tandem keepalived`.
  stack.tandem = true;
  for (const h of ['g1', 'g2']) writeFileSync(join(tmp, `${h}.yaml`), gatewayConfig(h));
  for (const h of ['g1', 'g2']) gw[h] = startTandemGateway(h);
  for (const [k, p] of INSTANCE_PORTS.entries()) {
    inHost('in', `instance-${p}`, process.execPath, [join(root, 'scripts', 'lib', 'pair-instance.mjs'),
      JSON.stringify({ host: HOSTS.in, port: p, id: `i${k + 1}`, token, registry: ['g1', 'g2'].map((h) => `http://${HOSTS[h]}:${ADMIN}`) })]);
  }
  for (const h of ['g1', 'g2']) await ready(h);
  const dogs = opts.watchdog ? { g1: startWatchdog('g1'), g2: startWatchdog('g2') } : {};
  const ka = { g1: startKeepalived('g1', tandemKeepalived('g1', 250)), g2: startKeepalived('g2', tandemKeepalived('g2', 240)) };
  await waitFor('the address on a gateway', () => holder() !== undefined);
  await waitFor('a success through the address', () => status('cl', `http://${VIP}:${PORT}/shop/items`) === 200);
  for (const h of ['g1', 'g2']) await eligible(h);
  const q = opts.quick;
  const tandemRows = await runFaults('tandem', [['SIGTERM + restart', q ? 6 : 10], ['rolling restart', q ? 14 : 20], ['SIGKILL', q ? 6 : 10], ['SIGSTOP 5 s', q ? 10 : 14]]);

  // The classic pair: nginx on both hosts, keepalived's usual settings.
  stack.tandem = false;
  for (const h of ['g1', 'g2']) {
    await procs.stop(ka[h]);
    if (dogs[h]) await procs.stop(dogs[h]);
    await procs.stop(gw[h]);
    // The tandem gateway's guard would spare nginx its refused connections after a SIGKILL: the
    // classic pair runs without it, as it is deployed.
    for (const table of ['tandem_handover', 'tandem_guard']) run('ip', ['netns', 'exec', ns(h), 'nft', 'delete', 'table', 'ip', table], { check: false });
  }
  for (const h of ['g1', 'g2']) {
    writeFileSync(join(tmp, `${h}-nginx.conf`), nginxConfig(h));
    gw[h] = startNginx(h);
  }
  for (const h of ['g1', 'g2']) await waitFor(`nginx on ${h}`, () => status(h, `http://${HOSTS[h]}:${PORT}/shop/items`) === 200);
  for (const f of ['g1.stdout', 'g1.stderr', 'g2.stdout', 'g2.stderr']) rmSync(join(tmp, `keepalived-${f}.log`), { force: true });
  ka.g1 = startKeepalived('g1', classicKeepalived('g1', 110));
  ka.g2 = startKeepalived('g2', classicKeepalived('g2', 100));
  await waitFor('the address on g1', () => holder() === 'g1');
  for (const h of ['g1', 'g2']) await eligible(h);
  const classicRows = await runFaults('nginx', q ? [['SIGKILL', 10]] : [['SIGTERM + restart', 10], ['rolling restart', 20], ['SIGKILL', 10], ['SIGSTOP 5 s', 14]]);

  console.log(`\n${TAG}: ${opts.rate} requests/s on ${VIP}, half GET half POST; tandem ${opts.dropSyn ? 'with' : 'without'} --handover-drop-syn, ${opts.watchdog ? 'with' : 'without'} tandem watchdog; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${Math.round((Date.now() - started) / 1000)} s`);
  console.table([...tandemRows, ...classicRows]);
  // The exit code holds tandem to what it reliably does, so that a CI gate does not flake on a
  // busy machine: no POST twice; the address on the peer within 1 s of a SIGKILL and 2 s of a
  // SIGSTOP; a planned move at most PLANNED_SLACK failed per move for a caller that retries once
  // (0 on a quiet machine; a regression such as connections refused while the address is still
  // here fails dozens). Raw failures of a planned move are reported against the issue's target
  // of 0 without failing the run.
  const PLANNED_SLACK = 5;
  const limits = { SIGKILL: 1, 'SIGSTOP 5 s': 2 };
  const bad = [];
  for (const r of tandemRows) {
    const planned = r.fault.startsWith('SIGTERM') || r.fault.startsWith('rolling');
    const moves = r.fault.startsWith('rolling') ? 2 : 1;
    if (r['POSTs twice'] > 0) bad.push(`${r.fault}: ${r['POSTs twice']} POSTs processed twice`);
    if (planned && r['failed, one retry'] > PLANNED_SLACK * moves) bad.push(`${r.fault}: ${r['failed, one retry']} failed even with one retry`);
    if (planned && r['failed, one retry'] > 0) console.log(`${TAG}: note: ${r.fault}: ${r['failed, one retry']} failed even with one retry (target 0)`);
    const moved = Number(r['address moved (s)']);
    if (limits[r.fault] !== undefined && !(moved <= limits[r.fault])) bad.push(`${r.fault}: the address moved after ${r['address moved (s)']} s (target ${limits[r.fault]} s)`);
    if (planned && r.failed > 0) console.log(`${TAG}: note: ${r.fault}: ${r.failed} failed without a retry (the issue's target is 0; see docs/deployment.md)`);
  }
  for (const b of bad) console.log(`${TAG}: target missed: ${b}`);
  return bad.length ? 1 : 0;
}

procs.installHandlers(() => { teardown(); if (tmp && !opts.keepTmp) rmSync(tmp, { recursive: true, force: true }); });
process.on('exit', teardown);
runDrillMain(() => main().catch((err) => {
  console.error(`${TAG}: ${err.message}`);
  for (const p of procs.children) if (p.errFile) { const t = tail(p.errFile, 5); if (t) console.error(`--- ${p.name}\n${t}`); }
  return 1;
}), { tag: TAG, procs, tmpDir: () => tmp, keepTmp: () => opts.keepTmp });
