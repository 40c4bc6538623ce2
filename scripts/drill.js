#!/usr/bin/env node
// Fault drills with real processes: tandem vs. nginx vs. HAProxy, three drill backends each.
//
// Usage: npm run drill [-- [--quick] [--only tandem,nginx,haproxy] [--scenario kill,stop,...]
//                          [--no-build] [--keep-tmp]]
//   env: DRILL_RATE (req/s, default 300), DRILL_DURATION (s, default 8; 4 with --quick),
//        DRILL_TIMEOUT (client timeout per request in s, default 10; 5 with --quick)
//
// Per target and scenario: 3 fresh backends (bench/drill-backend.js), a fresh proxy, 1 s warm-up,
// then an open-loop load (requests sent on a fixed schedule whatever the proxy does; latency
// measured from the scheduled send time; a request not answered within the client timeout
// fails). The fault hits one instance at 25 % of the run and is cleared at 62.5 %.
// failed = non-2xx or error; duplicates = request ids that backends processed more than once.
// Cache scenarios (cache-503, cache-kill): GETs over 100 keys with `max-age=1, stale-if-error=60`
// while every instance fails (503, SIGKILL) — quick: 2 s warm, 2 s outage, 2 s after; full: 2, 6, 3 —
// through tandem (a route cache), two tandem gateways sharing a private Redis (full profile, when
// redis-server is installed) and nginx (proxy_cache, use_stale, lock, background_update); HAProxy has no
// equivalent. Same code as npm run drill:cache (scripts/lib/cache-drill.js).
// Results: tables on stdout and bench/results/drill-latest.{md,json}.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { cacheMarkdown, cacheTargetMissing, createCacheDrill } from './lib/cache-drill.js';
import { createProcs, ensureTools, freePorts, httpRequest, sleep, tail, versionOf, waitUntilAnswering, which, positiveEnv, runDrillMain } from './lib/procs.js';
import { nginxPreamble } from './lib/nginx-preamble.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill';
const ALL_TARGETS = ['tandem', 'nginx', 'haproxy'];

const SCENARIOS = [
  { name: 'kill', what: 'SIGKILL one instance at 25 %, restart it at 62.5 %' },
  { name: 'stop', what: 'SIGSTOP one instance at 25 %, SIGCONT at 62.5 %' },
  { name: 'all-503', what: 'one instance answers 503 to everything, health included' },
  { name: 'real-503', what: 'one instance: /healthz 200, every real request 503' },
  { name: 'some-503', what: 'one instance answers 30 % of real requests 503' },
  { name: 'slow-2s', what: 'one instance answers everything after 2 s' },
  { name: 'reset', what: 'one instance resets every connection on a request' },
  { name: 'hang', what: 'one instance reads requests and never answers' },
  { name: 'rolling', what: 'SIGTERM (drain) + restart of all three in turn' },
  { name: 'kill-two', what: 'SIGKILL two of the three at 25 %, restart them at 62.5 %' },
  { name: 'post', what: 'POST load, no fault (baseline for post-kill)', method: 'POST' },
  { name: 'post-kill', what: 'POST load; SIGKILL one instance at 25 %, restart at 62.5 %', method: 'POST' },
  // The cache scenarios (scripts/lib/cache-drill.js, as npm run drill:cache): their own targets —
  // tandem with a route cache, two tandem gateways sharing Redis, nginx with proxy_cache — and table.
  { name: 'cache-503', what: 'cached GETs over 100 keys; every instance answers 503 for the outage', cache: '503' },
  { name: 'cache-kill', what: 'cached GETs over 100 keys; every instance SIGKILLed for the outage', cache: 'kill' },
];

// ---------------------------------------------------------------------------------------------
// Options

function die(msg) {
  console.error(`${TAG}: ${msg}`);
  process.exit(2);
}

function listArg(argv, i, a, flag, known) {
  const v = a === flag ? argv[i + 1] : a.slice(flag.length + 1);
  const list = String(v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const bad = list.filter((n) => !known.includes(n));
  if (bad.length || !list.length) die(`bad ${flag} value "${v}" (known: ${known.join(', ')})`);
  return { list, skip: a === flag ? 1 : 0 };
}

function parseArgs(argv) {
  const opts = { quick: false, only: null, scenarios: null, build: true, keepTmp: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const r = listArg(argv, i, a, '--only', ALL_TARGETS);
      opts.only = r.list;
      i += r.skip;
    } else if (a === '--scenario' || a.startsWith('--scenario=')) {
      const r = listArg(argv, i, a, '--scenario', SCENARIOS.map((s) => s.name));
      opts.scenarios = r.list;
      i += r.skip;
    } else if (a === '--help' || a === '-h') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 15).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else die(`unknown argument: ${a}`);
  }
  return opts;
}


const opts = parseArgs(process.argv.slice(2));
const RATE = positiveEnv('DRILL_RATE', 300, die);
const DURATION = positiveEnv('DRILL_DURATION', opts.quick ? 4 : 8, die);
const TIMEOUT_MS = positiveEnv('DRILL_TIMEOUT', opts.quick ? 5 : 10, die) * 1000;
const WARMUP_S = 1;
const FAULT_AT = 0.25;
const CLEAR_AT = 0.625;
const scenarios = opts.scenarios ? SCENARIOS.filter((s) => opts.scenarios.includes(s.name)) : SCENARIOS;
let targets = opts.only ? ALL_TARGETS.filter((t) => opts.only.includes(t)) : ALL_TARGETS;

const procs = createProcs({ tag: TAG, root });
let tmpRoot = null;
procs.installHandlers(() => { if (tmpRoot && !opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true }); });

// ---------------------------------------------------------------------------------------------
// Proxy configs

function tandemConfig(port, adminPort, backendPorts) {
  // Exactly the minimal config (README, examples/gateway.yaml) with this run's ports: no tuning.
  return `listen: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
services:
  shop:
    endpoints: [${backendPorts.map((p) => `127.0.0.1:${p}`).join(', ')}]
routes:
  - prefix: /
    service: shop
`;
}

function nginxConfig(dir, port, backendPorts) {
  return `${nginxPreamble(dir, { generator: 'scripts/drill.js' })}
  upstream backends {
    # passive health: one failure (as listed in proxy_next_upstream) takes a server out for 10 s
${backendPorts.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=10s;`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }

  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 1s;
      proxy_send_timeout 1s;
      proxy_read_timeout 1s;
      # retry on the next server; without "non_idempotent" a POST is never re-sent once sent
      proxy_next_upstream error timeout http_502 http_503 http_504;
      proxy_next_upstream_tries 3;
    }
  }
}
`;
}

function haproxyConfig(port, backendPorts) {
  return `# generated by scripts/drill.js
global
  nbthread 1
  maxconn 8192

defaults
  mode http
  option http-keep-alive
  timeout connect 1s
  timeout client 65s
  timeout server 1s
  timeout queue 1s
  timeout http-request 10s
  timeout http-keep-alive 65s
  retries 3
  option redispatch 1
  retry-on all-retryable-errors

frontend fe
  bind 127.0.0.1:${port}
  default_backend be

backend be
  balance roundrobin
  # L7 retries (503, timeouts, empty/junk responses) only for idempotent methods; a POST is
  # retried only when the connection was never established (conn-failure).
  http-request disable-l7-retry unless { method GET HEAD OPTIONS }
  option httpchk GET /healthz
  http-check expect status 200
  default-server check inter 500ms fall 2 rise 2 observe layer7 error-limit 5 on-error mark-down
${backendPorts.map((p, i) => `  server b${i + 1} 127.0.0.1:${p}`).join('\n')}
`;
}

function startTarget(name, dir, ports, backendPorts) {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  if (name === 'tandem') {
    const file = join(dir, 'tandem.yaml');
    writeFileSync(file, tandemConfig(ports.proxy, ports.admin, backendPorts));
    const proc = procs.start('tandem', process.execPath, [join(root, 'bin', 'tandem.js'), 'gateway', '--config', file], { dir });
    return { proc, port: ports.proxy, readyChecks: [[ports.admin, '/readyz'], [ports.proxy, '/']], readyTimeoutMs: 20_000 };
  }
  if (name === 'nginx') {
    const file = join(dir, 'nginx.conf');
    writeFileSync(file, nginxConfig(dir, ports.proxy, backendPorts));
    const proc = procs.start('nginx', which('nginx'), ['-c', file, '-p', dir, '-e', join(dir, 'error.log')], { dir });
    proc.extraLog = join(dir, 'error.log');
    return { proc, port: ports.proxy, readyChecks: [[ports.proxy, '/']], readyTimeoutMs: 10_000 };
  }
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, haproxyConfig(ports.proxy, backendPorts));
  const proc = procs.start('haproxy', which('haproxy'), ['-db', '-f', file], { dir });
  return { proc, port: ports.proxy, readyChecks: [[ports.proxy, '/']], readyTimeoutMs: 10_000 };
}

async function waitReady(proc, checks, timeoutMs) {
  await waitUntilAnswering(checks, timeoutMs, () => (proc && !procs.alive(proc) ? `exited (${proc.child.exitCode ?? proc.child.signalCode})` : undefined));
}

function procLogs(proc) {
  if (!proc) return '';
  const parts = [];
  for (const [label, f, n] of [['stderr', proc.errFile, 20], ['stdout', proc.outFile, 10], ['log', proc.extraLog, 10]]) {
    const t = f ? tail(f, n) : '';
    if (t) parts.push(`--- ${label} ---\n${t}`);
  }
  return parts.join('\n') || '(no output)';
}

// ---------------------------------------------------------------------------------------------
// Backends

class Backends {
  constructor(dir, ports) {
    this.dir = dir;
    this.ports = ports;
    this.logDir = join(dir, 'ids');
    mkdirSync(this.logDir, { recursive: true });
    this.procs = ports.map(() => null);
  }

  start(i) {
    const name = `b${i + 1}`;
    this.procs[i] = procs.start(name, process.execPath, [join(root, 'bench', 'drill-backend.js'), String(this.ports[i]), name], {
      dir: this.dir,
      env: { ...process.env, DRILL_LOG: this.logDir },
    });
    return this.procs[i];
  }

  async waitUp(i, timeoutMs = 5000) {
    await waitReady(this.procs[i], [[this.ports[i], '/healthz']], timeoutMs);
  }

  async startAll() {
    this.ports.forEach((_, i) => this.start(i));
    await Promise.all(this.ports.map((_, i) => this.waitUp(i, 10_000)));
  }

  pid(i) { return this.procs[i]?.child.pid; }

  signal(i, sig) { procs.signalProc(this.procs[i], sig); }

  async kill(i) {
    const p = this.procs[i];
    procs.signalProc(p, 'SIGKILL');
    await Promise.race([p.exited, sleep(2000)]);
  }

  /** SIGTERM; the backend drains and exits. Resolves with its exit code (or 'timeout'). */
  async term(i, graceMs = 12_000) {
    const p = this.procs[i];
    procs.signalProc(p, 'SIGTERM');
    const r = await Promise.race([p.exited, sleep(graceMs).then(() => 'timeout')]);
    if (r === 'timeout') {
      procs.signalProc(p, 'SIGKILL');
      await Promise.race([p.exited, sleep(1000)]);
      return 'timeout';
    }
    return r.code ?? r.signal;
  }

  async setMode(i, mode) {
    const r = await httpRequest(this.ports[i], `/__drill/mode?m=${mode}`, { method: 'POST', headers: { 'x-drill-control': '1' }, timeoutMs: 2000 });
    if (r.status !== 200) throw new Error(`could not set b${i + 1} to ${mode}: ${r.status || 'no answer'}`);
  }

  async stopAll() {
    await Promise.all(this.procs.map((p) => procs.stop(p, { sig: 'SIGKILL' })));
  }

  /** Parses every id log: [{kind, id, pid, backend}]. */
  readLogs() {
    const out = [];
    for (const f of readdirSync(this.logDir)) {
      const backend = f.replace(/\.log$/, '');
      for (const line of readFileSync(join(this.logDir, f), 'utf8').split('\n')) {
        if (!line) continue;
        const [kind, id, pid] = line.split(' ');
        out.push({ kind, id, pid: Number(pid), backend });
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// Open-loop load

/** A sleep that does not keep the process alive (for bounds that normally never fire). */
const sleepUnref = (ms) => new Promise((r) => setTimeout(r, ms).unref());

// The load generator and percentile are tandem's own (src/drill/open-loop.ts), loaded from
// dist/ once main() has built it.
let openLoopImpl;
let percentile;

const POST_BODY = JSON.stringify({ order: 'drill', qty: 1 });

/** GET or POST /items/i to 127.0.0.1:port on the open-loop schedule. */
function openLoop({ port, rate, durationS, method = 'GET', idPrefix, timeoutMs, state = { outstanding: 0 } }) {
  return openLoopImpl({
    origin: `http://127.0.0.1:${port}`,
    rate,
    durationS,
    idPrefix,
    timeoutMs,
    state,
    request: (i) => (method === 'POST'
      ? { method, path: `/items/${i}`, headers: { 'content-type': 'application/json' }, body: POST_BODY }
      : { method, path: `/items/${i}` }),
  });
}

// ---------------------------------------------------------------------------------------------
// Scenarios: fault(ctx) runs alongside the load; resolves when the fault is over.

async function at(ctx, fraction) {
  const wait = ctx.t0Ms + fraction * DURATION * 1000 - performance.now();
  if (wait > 0) await sleep(wait);
}

function note(ctx, what) {
  const t = Math.round(performance.now() - ctx.t0Ms);
  ctx.events.push({ t, what, clientInFlight: ctx.state.outstanding });
}

async function modeFault(ctx, mode) {
  await at(ctx, FAULT_AT);
  await ctx.backends.setMode(0, mode);
  note(ctx, `b1 → ${mode}`);
  await at(ctx, CLEAR_AT);
  await ctx.backends.setMode(0, 'ok');
  note(ctx, 'b1 → ok');
}

async function killFault(ctx, which) {
  await at(ctx, FAULT_AT);
  ctx.killed = which.map((i) => ({ backend: `b${i + 1}`, pid: ctx.backends.pid(i) }));
  const inFlight = ctx.state.outstanding;
  // Client-side time of the kill (ms after t0), to tell requests outstanding at the kill from later ones.
  ctx.killAtMs = performance.now() - ctx.t0Ms;
  await Promise.all(which.map((i) => ctx.backends.kill(i)));
  note(ctx, `SIGKILL ${which.map((i) => `b${i + 1}`).join(', ')}`);
  ctx.clientInFlightAtKill = inFlight;
  await at(ctx, CLEAR_AT);
  for (const i of which) ctx.backends.start(i);
  await Promise.all(which.map((i) => ctx.backends.waitUp(i)));
  note(ctx, `restarted ${which.map((i) => `b${i + 1}`).join(', ')}`);
}

const FAULTS = {
  kill: (ctx) => killFault(ctx, [0]),
  'post-kill': (ctx) => killFault(ctx, [0]),
  'kill-two': (ctx) => killFault(ctx, [0, 1]),
  post: async () => {},
  stop: async (ctx) => {
    await at(ctx, FAULT_AT);
    ctx.backends.signal(0, 'SIGSTOP');
    note(ctx, 'SIGSTOP b1');
    await at(ctx, CLEAR_AT);
    ctx.backends.signal(0, 'SIGCONT');
    note(ctx, 'SIGCONT b1');
  },
  'all-503': (ctx) => modeFault(ctx, 'all-503'),
  'real-503': (ctx) => modeFault(ctx, 'real-503'),
  'some-503': (ctx) => modeFault(ctx, 'some-503'),
  'slow-2s': (ctx) => modeFault(ctx, 'slow-2s'),
  reset: (ctx) => modeFault(ctx, 'reset'),
  hang: (ctx) => modeFault(ctx, 'hang'),
  rolling: async (ctx) => {
    // Start at 15 %; after each restart give the proxy time to see the instance up again.
    await at(ctx, 0.15);
    const gapMs = DURATION * 1000 * 0.2;
    for (let i = 0; i < 3; i++) {
      note(ctx, `SIGTERM b${i + 1}`);
      const code = await ctx.backends.term(i);
      note(ctx, `b${i + 1} exited (${code})`);
      ctx.backends.start(i);
      await ctx.backends.waitUp(i);
      note(ctx, `b${i + 1} up again`);
      if (i < 2) await sleep(gapMs);
    }
  },
};

// ---------------------------------------------------------------------------------------------
// One run

const round = (n, d = 1) => (n === null || n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10 ** d) / 10 ** d);

async function runOne(target, scenario) {
  const dir = mkdtempSync(join(tmpRoot, `${target}-${scenario.name}-`));
  chmodSync(dir, 0o755);
  const [b1, b2, b3, proxy, admin] = await freePorts(5);
  const backends = new Backends(dir, [b1, b2, b3]);
  const result = { target, scenario: scenario.name, method: scenario.method ?? 'GET', status: 'ok' };
  let started = null;
  try {
    await backends.startAll();
    started = startTarget(target, join(dir, target), { proxy, admin }, [b1, b2, b3]);
    await waitReady(started.proc, started.readyChecks, started.readyTimeoutMs);
    const warm = await openLoop({ port: started.port, rate: RATE, durationS: WARMUP_S, idPrefix: 'w', timeoutMs: 2000 });
    result.warmupFailed = warm.results.filter((r) => r.err || r.status < 200 || r.status > 299).length;

    const state = { outstanding: 0 };
    const method = scenario.method ?? 'GET';
    const load = openLoop({ port: started.port, rate: RATE, durationS: DURATION, method, idPrefix: 'm', timeoutMs: TIMEOUT_MS, state });
    const ctx = { backends, state, t0Ms: state.t0, events: [], killed: null, clientInFlightAtKill: null };
    const fault = FAULTS[scenario.name](ctx).catch((e) => { ctx.faultError = e.message; });
    const { results, maxSendLagMs, hardStopped } = await load;
    await Promise.race([fault, sleepUnref(20_000)]);
    if (ctx.faultError) throw new Error(`fault injection failed: ${ctx.faultError}`);
    result.proxyAlive = procs.alive(started.proc);
    if (!result.proxyAlive) result.proxyExit = `${started.proc.child.exitCode ?? started.proc.child.signalCode}`;
    if (!result.proxyAlive) result.logTail = procLogs(started.proc);

    const lats = results.map((r) => r.lat).sort((a, b) => a - b);
    const failedRs = results.filter((r) => r.err || r.status < 200 || r.status > 299);
    const errors = {};
    for (const r of failedRs) {
      const k = r.err ?? String(r.status);
      errors[k] = (errors[k] ?? 0) + 1;
    }
    const logs = backends.readLogs().filter((l) => l.id?.startsWith('m-'));
    const processed = new Map();
    for (const l of logs) if (l.kind === 'P') processed.set(l.id, (processed.get(l.id) ?? 0) + 1);
    const dupIds = [...processed].filter(([, n]) => n > 1).map(([id]) => id);
    Object.assign(result, {
      requests: results.length,
      failed: failedRs.length,
      p50: round(percentile(lats, 50)),
      p99: round(percentile(lats, 99)),
      max: round(lats[lats.length - 1]),
      duplicates: dupIds.length,
      duplicateIds: dupIds.slice(0, 20),
      errors,
      maxSendLagMs: round(maxSendLagMs),
      hardStopped,
      events: ctx.events,
      // failures over time (per 500 ms) show when a fault starts and stops hurting
      failedTimeline: timeline(failedRs),
      firstFailures: failedRs.slice(0, 10).map((r) => ({ t: r.t, status: r.status, err: r.err })),
    });
    if (ctx.killed) {
      // In flight on a killed instance = requests it had received but not answered (R without A).
      const killedPids = new Set(ctx.killed.map((k) => k.pid));
      const answered = new Set(logs.filter((l) => l.kind === 'A' && killedPids.has(l.pid)).map((l) => l.id));
      const failedIds = new Set(failedRs.map((r) => r.id));
      result.killed = ctx.killed;
      result.clientInFlightAtKill = ctx.clientInFlightAtKill;
      if (method === 'POST') {
        result.instanceInFlightAtKill = logs.filter((l) => l.kind === 'R' && killedPids.has(l.pid) && !answered.has(l.id)).length;
        result.processedButFailed = [...processed.keys()].filter((id) => failedIds.has(id)).length;
        result.notProcessedAndFailed = [...failedIds].filter((id) => !processed.has(id)).length;
        // A POST may be in flight on the instance without having been read: in its socket
        // buffer, discarded by the kernel with the process. No proxy can tell it from one that
        // was processed, so it must not be re-sent. The bound is therefore: only requests
        // outstanding when the kill happened may fail (sent before it, unanswered at it), at
        // most as many as the client had outstanding; any request sent after it must succeed.
        const killAt = ctx.killAtMs;
        result.failedOutstandingAtKill = failedRs.filter((r) => r.t !== null && r.t <= killAt && r.t + r.lat >= killAt).length;
        result.postOk = result.duplicates === 0
          && (result.failed <= result.instanceInFlightAtKill
            || (result.failed === result.failedOutstandingAtKill && result.failed <= result.clientInFlightAtKill));
      }
    } else if (method === 'POST') {
      const failedIds = new Set(failedRs.map((r) => r.id));
      result.processedButFailed = [...processed.keys()].filter((id) => failedIds.has(id)).length;
      result.postOk = result.duplicates === 0 && result.failed === 0;
    }
  } catch (e) {
    result.status = 'error';
    result.error = e.message;
    if (started?.proc) result.logTail = procLogs(started.proc);
  } finally {
    await procs.stop(started?.proc, { graceMs: 2000 });
    await backends.stopAll();
    if (!opts.keepTmp) rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

function timeline(failed) {
  const buckets = {};
  for (const r of failed) {
    if (r.t === null) continue;
    const b = Math.floor(r.t / 500) * 0.5;
    buckets[b] = (buckets[b] ?? 0) + 1;
  }
  return buckets;
}

// ---------------------------------------------------------------------------------------------
// Reporting

const fmt = (n) => (n === null || n === undefined ? '—' : n >= 100 ? String(Math.round(n)) : n.toFixed(1));

function errorSummary(errors, r) {
  const s = Object.entries(errors).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(', ') || '—';
  return r && r.proxyAlive === false ? `**${r.target} crashed (exit ${r.proxyExit})**; ${s}` : s;
}

function getTable(results) {
  const lines = [
    '| Scenario | Target | Requests | Failed | p50 (ms) | p99 (ms) | Max (ms) | Duplicates | Failures |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results.filter((x) => x.method === 'GET')) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.scenario} | ${r.target} | **error** | — | — | — | — | — | ${oneLine(r.error)} |`);
      continue;
    }
    const pct = r.requests ? ` (${((100 * r.failed) / r.requests).toFixed(1)} %)` : '';
    lines.push(`| ${r.scenario} | ${r.target} | ${r.requests} | ${r.failed}${r.failed ? pct : ''} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${r.duplicates} | ${errorSummary(r.errors, r)} |`);
  }
  return lines.join('\n');
}

function postTable(results) {
  const rows = results.filter((x) => x.method === 'POST');
  if (!rows.length) return '';
  const lines = [
    '| Scenario | Target | Requests | Failed | In flight on killed instance | Client in flight at kill | Duplicates | Failed but processed | p99 (ms) | Verdict |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.scenario} | ${r.target} | **error** | — | — | — | — | — | — | ${oneLine(r.error)} |`);
      continue;
    }
    const bound = r.instanceInFlightAtKill === undefined ? 'failed with no fault' : 'failed > in flight';
    let verdict = r.postOk ? 'ok' : `**FAIL** (${r.duplicates ? 'duplicates' : bound})`;
    if (r.proxyAlive === false) verdict += `; **${r.target} crashed (exit ${r.proxyExit})**`;
    lines.push(`| ${r.scenario} | ${r.target} | ${r.requests} | ${r.failed} | ${r.instanceInFlightAtKill ?? '—'} | ${r.clientInFlightAtKill ?? '—'} | ${r.duplicates} | ${r.processedButFailed} | ${fmt(r.p99)} | ${verdict} |`);
  }
  return lines.join('\n');
}

function oneLine(s) {
  return String(s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 160);
}

function machineInfo() {
  const cpus = os.cpus();
  const g = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    node: process.version,
    gitCommit: g.status === 0 ? g.stdout.trim() : null,
    loadavg: os.loadavg().map((n) => round(n, 2)),
  };
}

/** The cache scenarios, for the targets asked for that have a cache (tandem also as two gateways sharing Redis). */
async function runCacheScenarios(selected) {
  const cacheTargets = [
    // Two gateways sharing Redis in the full profile only: the quick one stays within ~30 s more.
    ...(targets.includes('tandem') ? (opts.quick ? ['tandem'] : ['tandem', 'tandem-redis']) : []),
    ...(targets.includes('nginx') ? ['nginx'] : []),
  ].filter((t) => {
    const missing = cacheTargetMissing(t);
    if (missing !== undefined) console.log(`${TAG}: cache scenarios skip ${t} (${missing} is not installed)`);
    return missing === undefined;
  });
  if (selected.length === 0 || cacheTargets.length === 0) return [];
  const dir = mkdtempSync(join(tmpRoot, 'cache-'));
  chmodSync(dir, 0o755); // nginx workers (user nobody) write their cache here
  // Every key must be stored before the outage: a 1 s warm-up on a loaded machine left some in flight.
  const [warmS, outageS, afterS] = opts.quick ? [2, 2, 2] : [2, 6, 3];
  const drill = createCacheDrill({ procs, tmp: dir, root, rate: RATE, outageS, warmS, afterS, fail: (msg) => { throw new Error(msg); } });
  const rows = [];
  for (const scenario of selected) {
    for (const target of cacheTargets) {
      const t = Date.now();
      process.stdout.write(`${TAG}: ${scenario.name.padEnd(10)} ${target.padEnd(12)} `);
      try {
        const r = await drill.run(target, scenario.cache);
        rows.push(r);
        console.log(`GETs ${r.gets}, failed ${r.failed}, origin requests per GET ${r.originPerRequest}, per key per expiry ${r.perKeyPerExpiry}, last old answer ${r.lastOldAnswerAfterRecoveryMs} ms after recovery (${round((Date.now() - t) / 1000)} s)`);
      } catch (err) {
        if (procs.isCleaningUp()) return rows;
        console.log(`ERROR ${err.message}`);
        rows.push({ target, fault: scenario.cache, error: err.message });
      }
    }
  }
  return rows;
}

function buildMarkdown(meta, results, cacheRows = []) {
  const m = meta.machine;
  const out = [
    `# tandem fault drill — ${meta.date}`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GB, Linux ${m.kernel}; Node ${m.node}; `
      + `nginx ${meta.versions.nginx ?? '—'}; HAProxy ${meta.versions.haproxy ?? '—'}${m.gitCommit ? `; tandem @ ${m.gitCommit}` : ''}; `
      + `load average at start ${m.loadavg.join(' ')}.`,
    '',
    `Profile: ${meta.params.quick ? 'quick' : 'full'} — open-loop ${meta.params.rate} req/s for ${meta.params.durationS} s per scenario `
      + `(${Math.round(meta.params.rate * meta.params.durationS)} requests), client timeout ${meta.params.timeoutMs / 1000} s, `
      + `fault on one instance at ${FAULT_AT * meta.params.durationS} s, cleared at ${CLEAR_AT * meta.params.durationS} s. Total ${meta.totalSeconds} s.`,
    '',
    getTable(results),
  ];
  const pt = postTable(results);
  if (pt) out.push('', pt);
  const cacheOk = cacheRows.filter((r) => r.error === undefined);
  if (cacheOk.length > 0) {
    out.push('', `Cache scenarios: ${meta.params.rate} GET/s over 100 keys, origin \`max-age=1, stale-if-error=60\`, every instance failing for the outage (${meta.params.quick ? '2 s warm, 2 s outage, 2 s after' : '2 s warm, 6 s outage, 3 s after'}); `
      + '"per key per expiry": answered origin requests per key per max-age window (1 = never fetched twice while fresh, across both gateways for tandem-redis); "last old answer": how long after recovery an answer from before the outage was last served.', '', cacheMarkdown(cacheOk));
  }
  for (const r of cacheRows.filter((x) => x.error !== undefined)) out.push('', `Cache scenario ${r.target} / ${r.fault}: ${r.error}`);
  const lag = Math.max(0, ...results.filter((r) => r.maxSendLagMs !== undefined).map((r) => r.maxSendLagMs));
  out.push('', `Latencies are from each request's scheduled send time. Largest send lag of the load generator: ${fmt(lag)} ms.`);
  for (const r of results.filter((x) => (x.status !== 'ok' || x.proxyAlive === false) && x.logTail)) {
    out.push('', `### ${r.target} / ${r.scenario}: ${r.error ?? `exited (${r.proxyExit}) during the run`}`, '', '```', r.logTail, '```');
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const startedAt = Date.now();
  const needed = targets.filter((t) => t !== 'tandem');
  const missing = ensureTools(needed, TAG);
  if (missing.length) {
    console.log(`${TAG}: skipping ${missing.join(', ')} (not installed; run as root to install with apt-get)`);
    targets = targets.filter((t) => !missing.includes(t));
  }
  const versions = {
    nginx: which('nginx') ? versionOf(which('nginx'), ['-v'], /nginx\/(\S+)/) : null,
    haproxy: which('haproxy') ? versionOf(which('haproxy'), ['-v'], /HA-?Proxy version (\S+)/) : null,
  };
  // Built for every target: the load generator is tandem's too.
  if (opts.build) {
    const t = Date.now();
    const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    console.log(`${TAG}: npm run build ${r.status === 0 ? 'ok' : `exited ${r.status}`} (${Date.now() - t} ms)`);
  }
  ({ openLoop: openLoopImpl, percentile } = await import('../dist/src/drill/open-loop.js'));
  tmpRoot = mkdtempSync(join(os.tmpdir(), 'tandem-drill-'));
  chmodSync(tmpRoot, 0o755);
  const machine = machineInfo();
  console.log(`${TAG}: ${opts.quick ? 'quick' : 'full'} profile: ${RATE} req/s × ${DURATION} s, client timeout ${TIMEOUT_MS / 1000} s; `
    + `targets ${targets.join(', ')}; scenarios ${scenarios.map((s) => s.name).join(', ')}; temp dir ${tmpRoot}`);

  const results = [];
  for (const scenario of scenarios.filter((s) => s.cache === undefined)) {
    for (const target of targets) {
      const t = Date.now();
      process.stdout.write(`${TAG}: ${scenario.name.padEnd(9)} ${target.padEnd(8)} `);
      const r = await runOne(target, scenario);
      if (procs.isCleaningUp()) return new Promise(() => {});
      r.seconds = round((Date.now() - t) / 1000);
      results.push(r);
      if (r.status !== 'ok') console.log(`ERROR ${r.error}${r.logTail ? `\n${r.logTail}` : ''}`);
      else {
        console.log(`requests ${r.requests}, failed ${r.failed}, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, max ${fmt(r.max)} ms, duplicates ${r.duplicates}`
          + (r.method === 'POST' ? `, in flight on killed ${r.instanceInFlightAtKill ?? '—'}, failed-but-processed ${r.processedButFailed}` : '')
          + (r.failed || r.proxyAlive === false ? ` [${errorSummary(r.errors, r)}]` : '') + ` (${r.seconds} s)`);
      }
    }
  }

  const cacheRows = await runCacheScenarios(scenarios.filter((s) => s.cache !== undefined));
  if (procs.isCleaningUp()) return new Promise(() => {});

  const now = new Date();
  const meta = {
    date: now.toISOString(),
    machine,
    versions,
    params: { quick: opts.quick, rate: RATE, durationS: DURATION, timeoutMs: TIMEOUT_MS, warmupS: WARMUP_S, targets, scenarios: scenarios.map((s) => s.name) },
    configs: { tandem: tandemConfig(8080, 9901, [7001, 7002, 7003]), nginx: nginxConfig('$TMP', 8080, [7001, 7002, 7003]), haproxy: haproxyConfig(8080, [7001, 7002, 7003]) },
    totalSeconds: round((Date.now() - startedAt) / 1000),
  };
  const md = buildMarkdown(meta, results, cacheRows);
  console.log('\n' + md);
  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const base = opts.quick ? 'drill-quick-latest' : 'drill-latest';
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), JSON.stringify({ meta, scenarios: SCENARIOS, results, cache: cacheRows, markdown: md }, null, 2) + '\n');
  console.log(`${TAG}: wrote bench/results/${base}.{md,json} (${meta.totalSeconds} s total)`);
  return results.some((r) => r.status !== 'ok') || cacheRows.some((r) => r.error !== undefined) ? 1 : 0;
}

runDrillMain(main, { tag: TAG, procs, tmpDir: () => tmpRoot, keepTmp: () => opts.keepTmp });
