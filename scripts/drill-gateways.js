#!/usr/bin/env node
// Gateway-pair drill (tandem issue 13): two gateways behind one virtual address (keepalived,
// VRRP), open-loop load on that address, and the faults a pair is for — then the same faults
// against the classic pair (nginx + keepalived with its usual settings).
//
// Usage (as root): npm run drill:gateways [-- [--quick] [--rate N] [--only tandem] [--keep-tmp]]
//   --quick     about 60 s: shorter windows, and only SIGKILL against the classic pair
//   --only tandem  the tandem pair alone, without the classic pair beside it (CI: the
//               comparison is the full drill's, docs/deployment.md)
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
// left namespaces behind (their names carry the prefix "tgd" and the pid of the run). The hosts
// and the tandem pair on them: scripts/lib/gateway-pair.js, shared with the shop's --pair.
//
// Per fault it prints: failed requests by kind (raw, for a caller that retries once a refused
// connection and a GET reset before any response byte, and for a caller with a 2 s timeout instead of 5 s), POSTs processed twice, the time until the address was
// on the peer, the time from the fault to the first success after the last failure, and p99.
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createProcs, ensureTools, runDrillMain, sleep, tail, which } from './lib/procs.js';
import { GATEWAY_HOSTS, PACKAGES, PairHosts, TandemPair, readText, waitFor } from './lib/gateway-pair.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill:gateways';
const PORT = 8080;
const ADMIN = 9901;
const INSTANCE_PORTS = [7001, 7002, 7003];

function die(msg) {
  console.error(`${TAG}: ${msg}`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { quick: false, rate: 300, keepTmp: false, dropSyn: true, watchdog: true, classic: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-watchdog') opts.watchdog = false;
    else if (a === '--dead-after') opts.deadAfter = argv[++i];
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--no-drop-syn') opts.dropSyn = false;
    else if (a === '--only') {
      const v = argv[++i];
      if (v !== 'tandem' && v !== 'tandem,nginx' && v !== 'nginx,tandem') die(`--only takes tandem (the classic pair is measured only beside it), got ${v ?? '(nothing)'}`);
      opts.classic = v !== 'tandem';
    } else if (a === '--rate') {
      opts.rate = Number(argv[++i]);
      if (!Number.isFinite(opts.rate) || opts.rate <= 0 || opts.rate > 2000) die(`--rate needs a number from 1 to 2000, got ${argv[i]}`);
    } else die(`unknown argument ${a} (known: --quick, --rate N, --only tandem, --keep-tmp, --no-drop-syn, --no-watchdog, --dead-after MS)`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const procs = createProcs({ tag: TAG, root });
const hosts = new PairHosts({ prefix: 'tgd', subnet: '10.213.0', hosts: { cl: 2, g1: 11, g2: 12, in: 20 }, procs, tmpName: 'tandem-drill-gateways' });
const VIP = hosts.vip;
const token = randomBytes(24).toString('hex');

// ---------------------------------------------------------------- the pair under test

function gatewayConfig(h) {
  return `listen: 0.0.0.0:${PORT}
admin: ${hosts.address(h)}:${ADMIN}
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

/** keepalived's usual settings in front of nginx: VRRPv2 adverts every second, nginx checked every 2 s, fall 2. */
function classicKeepalived(h, priority) {
  const check = join(hosts.dir, `${h}-check-nginx.sh`);
  writeFileSync(check, `#!/bin/sh\nkill -0 "$(cat ${join(hosts.dir, `${h}-nginx.pid`)})"\n`);
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
  const n = (s) => join(hosts.dir, `${h}-nginx${s}`);
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
${INSTANCE_PORTS.map((p) => `    server ${hosts.address('in')}:${p};`).join('\n')}
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
  const out = join(hosts.dir, `${name}.load.json`);
  const load = hosts.start('cl', `load-${name}`, process.execPath, [join(root, 'scripts', 'lib', 'pair-load.mjs'),
    JSON.stringify({ origin: `http://${VIP}:${PORT}`, rate: opts.rate, durationS: seconds, idPrefix: name, out })]);
  const watch = hosts.watchAddress();
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

function processedPosts() {
  const counts = new Map();
  for (const p of INSTANCE_PORTS) {
    for (const line of readText(join(hosts.dir, `instance-${p}.stdout.log`)).split('\n')) {
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

/** The pair under test: a TandemPair, or the classic one below; each has gw, restart(h), eligible(h), signal(h, sig). */
let stack;

/** nginx on both hosts, behind keepalived's usual settings (classicKeepalived). */
const classic = {
  gw: {},
  start(h) {
    this.gw[h] = hosts.start(h, `nginx-${h}`, which('nginx'), ['-c', join(hosts.dir, `${h}-nginx.conf`), '-p', hosts.dir, '-e', join(hosts.dir, `${h}-nginx.error.log`)]);
  },
  /** Waits until keepalived on h is back in BACKUP (not FAULT), able to take over. */
  async eligible(h) {
    await waitFor(`keepalived on ${h} in BACKUP`, () => ['BACKUP', 'MASTER'].includes(hosts.keepalivedState(h)));
  },
  async restart(h) {
    this.start(h);
    await this.eligible(h);
  },
  signal(h, sig) {
    procs.signalProc(this.gw[h], sig);
  },
};

async function stopActive(sig) {
  const h = hosts.holder();
  if (!h) throw new Error('nobody holds the address');
  const at = Date.now();
  stack.signal(h, sig);
  return { h, at };
}

const FAULTS = {
  async 'SIGTERM + restart'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGTERM');
    await stack.gw[h].exited;
    await stack.restart(h);
    return faultAt;
  },
  async 'rolling restart'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const first = await stopActive('SIGTERM');
    await stack.gw[first.h].exited;
    await stack.restart(first.h);
    await sleep(1000);
    const second = await stopActive('SIGTERM');
    await stack.gw[second.h].exited;
    await stack.restart(second.h);
    return first.at;
  },
  async SIGKILL(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGKILL');
    await stack.gw[h].exited;
    await sleep(1000);
    await stack.restart(h);
    return faultAt;
  },
  async 'SIGSTOP 5 s'(t0, at) {
    await sleep(Math.max(0, at - (Date.now() - t0)));
    const { h, at: faultAt } = await stopActive('SIGSTOP');
    await sleep(5000);
    stack.signal(h, 'SIGCONT');
    await stack.eligible(h);
    return faultAt;
  },
};

async function runFaults(setup, list) {
  const rows = [];
  for (const [fault, seconds] of list) {
    const h = hosts.holder();
    if (!h) throw new Error('nobody holds the address before the fault');
    const faultAtS = 2;
    console.log(`${TAG}: ${setup}: ${fault} (${seconds} s of load, fault at ${faultAtS} s; ${h} holds the address)`);
    const r = await withLoad(`${setup}-${fault.replace(/\W+/g, '')}`, seconds, (t0) => FAULTS[fault](t0, faultAtS * 1000));
    r.name = fault;
    rows.push(r);
    // The other gateway must be eligible again before the next fault.
    for (const g of GATEWAY_HOSTS) await stack.eligible(g);
  }
  const processed = processedPosts();
  return rows.map((r) => figures(setup, r, processed));
}

/** The classic pair, measured the same way: nginx on both hosts, keepalived's usual settings. */
async function runClassic(q) {
  for (const h of GATEWAY_HOSTS) {
    // The tandem gateway's guard would spare nginx its refused connections after a SIGKILL: the
    // classic pair runs without it, as it is deployed.
    for (const table of ['tandem_handover', 'tandem_guard']) hosts.exec(h, 'nft', ['delete', 'table', 'ip', table], { check: false });
  }
  stack = classic;
  for (const h of GATEWAY_HOSTS) {
    writeFileSync(join(hosts.dir, `${h}-nginx.conf`), nginxConfig(h));
    classic.start(h);
  }
  for (const h of GATEWAY_HOSTS) await waitFor(`nginx on ${h}`, async () => await hosts.status(h, `http://${hosts.address(h)}:${PORT}/shop/items`) === 200);
  for (const h of GATEWAY_HOSTS) hosts.clearKeepalivedLogs(h);
  hosts.startKeepalived('g1', classicKeepalived('g1', 110));
  hosts.startKeepalived('g2', classicKeepalived('g2', 100));
  await waitFor('the address on g1', () => hosts.holder() === 'g1');
  for (const h of GATEWAY_HOSTS) await classic.eligible(h);
  return runFaults('nginx', q ? [['SIGKILL', 10]] : [['SIGTERM + restart', 10], ['rolling restart', 20], ['SIGKILL', 10], ['SIGSTOP 5 s', 14]]);
}

async function main() {
  if (process.getuid?.() !== 0) die('needs root (network namespaces, keepalived)');
  // nft: the gateways' --handover-drop-syn.
  const missing = ensureTools(['ip', 'keepalived', 'nginx', 'curl', ...(opts.dropSyn ? ['nft'] : [])], TAG, PACKAGES);
  if (missing.length) die(`missing ${missing.join(', ')} (apt-get install -y ${missing.map((t) => PACKAGES[t] ?? t).join(' ')}${missing.includes('nft') ? ', or run with --no-drop-syn' : ''})`);
  if (!readText(join(root, 'dist', 'src', 'node', 'index.js'))) die('run npm run build first');
  const started = Date.now();
  hosts.build();

  // The pair under test: tandem gateways, keepalived from `tandem keepalived`.
  const configs = Object.fromEntries(GATEWAY_HOSTS.map((h) => [h, gatewayConfig(h)]));
  stack = new TandemPair(hosts, { configs, adminPort: ADMIN, dropSyn: opts.dropSyn, watchdog: opts.watchdog, deadAfter: opts.deadAfter });
  stack.startGateways();
  for (const [k, p] of INSTANCE_PORTS.entries()) {
    hosts.start('in', `instance-${p}`, process.execPath, [join(root, 'scripts', 'lib', 'pair-instance.mjs'),
      JSON.stringify({ host: hosts.address('in'), port: p, id: `i${k + 1}`, token, registry: GATEWAY_HOSTS.map((h) => `http://${hosts.address(h)}:${ADMIN}`) })]);
  }
  await stack.elect();
  await waitFor('a success through the address', async () => await hosts.status('cl', `http://${VIP}:${PORT}/shop/items`) === 200);
  const q = opts.quick;
  const tandemRows = await runFaults('tandem', [['SIGTERM + restart', q ? 6 : 10], ['rolling restart', q ? 14 : 20], ['SIGKILL', q ? 6 : 10], ['SIGSTOP 5 s', q ? 10 : 14]]);

  await stack.stop();
  const classicRows = opts.classic ? await runClassic(q) : [];

  console.log(`\n${TAG}: ${opts.rate} requests/s on ${VIP}, half GET half POST; tandem ${opts.dropSyn ? 'with' : 'without'} --handover-drop-syn, ${opts.watchdog ? 'with' : 'without'} tandem watchdog${opts.classic ? '' : '; the classic pair not run (--only tandem)'}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${Math.round((Date.now() - started) / 1000)} s`);
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

procs.installHandlers(() => { hosts.teardown(); if (hosts.dir && !opts.keepTmp) rmSync(hosts.dir, { recursive: true, force: true }); });
process.on('exit', () => hosts.teardown());
runDrillMain(() => main().catch((err) => {
  console.error(`${TAG}: ${err.message}`);
  for (const p of procs.children) if (p.errFile) { const t = tail(p.errFile, 5); if (t) console.error(`--- ${p.name}\n${t}`); }
  return 1;
}), { tag: TAG, procs, tmpDir: () => hosts.dir, keepTmp: () => opts.keepTmp });
