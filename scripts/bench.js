#!/usr/bin/env node
// Benchmark orchestrator: tandem vs. nginx vs. HAProxy vs. a minimal undici proxy vs. direct.
//
// Usage: npm run bench [-- [--quick] [--rounds N] [--only tandem,nginx] [--no-build] [--keep-tmp]
//                         [--baseline DIR] [--section h1,h2]]
//   --section:  h1 (HTTP/1.1 over plaintext, the table below), h2 (HTTP/2, gRPC and TLS: tandem,
//               a minimal node:http2 proxy, nginx, Caddy; scripts/lib/bench-h2.js); default both,
//               h1 first. `minimal` in --only selects the minimal proxy of both sections.
//   --baseline DIR: also measure the tandem of another checkout (built, e.g. a `git worktree` of
//               the commit before a change) as target 'baseline', interleaved with this one:
//               the before and after of a change in one run, under the same conditions
//   --rounds N: measure every target N times (default 3; 1 with --quick), see below
//   --quick:    1 round of 3 s runs with a 1 s warm-up (a smoke test, not a measurement)
//   env: BENCH_DURATION (seconds per measured run, default 5; 3 with --quick)
//        BENCH_CONNECTIONS (default 50), BENCH_THREADS (wrk threads, default 1)
//        BENCH_WARMUP (seconds, default 2; 1 with --quick)
//
// Each round runs every selected target once, in the same order: start it, wait until a request
// through it answers 200, warm up with wrk, run `wrk -t1 -c50 -d5s --latency`, stop it. Targets are
// thus interleaved in time, so load from other processes hits all of them alike. Per run: req/s,
// p50/p99, errors, the proxy's CPU time per request (utime+stime summed over the proxy's process
// tree, from /proc/PID/stat, before and after the measured wrk run, divided by the requests wrk
// completed) and its peak RSS (VmHWM summed over the process tree, reset via /proc/PID/clear_refs
// just before the measured run). Reported per target: the median over rounds of req/s, p50, p99
// and CPU/req, the max of peak RSS, the min–max of req/s; ratios are computed from the medians.
// Results: markdown table + ratios on stdout, and bench/results/bench-<stamp>.{md,json} (+ latest.*;
// the JSON also holds every round's raw data).
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync,
} from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { H2_SCENARIOS, H2_TARGETS, runH2Section } from './lib/bench-h2.js';
import { createProcs, ensureTools as ensureToolsShared, freePorts, sleep, tail, versionOf, waitUntilAnswering, which, positiveEnv } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const ALL_TARGETS = ['direct', 'tandem', 'cached', 'baseline', 'nginx', 'haproxy', 'minimal'];
const LABELS = {
  direct: 'direct (1 backend)',
  tandem: 'tandem',
  cached: 'tandem, cache hits',
  baseline: 'tandem (baseline)',
  nginx: 'nginx (1 worker)',
  haproxy: 'HAProxy (1 thread)',
  minimal: 'minimal undici proxy',
};

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = { quick: false, only: null, build: true, keepTmp: false, rounds: null, baseline: null, sections: ['h1', 'h2'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--baseline' || a.startsWith('--baseline=')) {
      const v = a === '--baseline' ? argv[++i] : a.slice('--baseline='.length);
      if (!v || !existsSync(join(v, 'bin', 'tandem.js')) || !existsSync(join(v, 'dist'))) die(`--baseline needs a built tandem checkout (bin/tandem.js and dist/), got ${v ?? '(nothing)'}`);
      opts.baseline = v;
    }
    else if (a === '--rounds' || a.startsWith('--rounds=')) {
      const v = a === '--rounds' ? argv[++i] : a.slice('--rounds='.length);
      const n = Number(v);
      if (!Number.isInteger(n) || n <= 0) die(`--rounds must be a positive integer, got ${v ?? '(nothing)'}`);
      opts.rounds = n;
    }
    else if (a === '--section' || a.startsWith('--section=')) {
      const v = a === '--section' ? argv[++i] : a.slice('--section='.length);
      opts.sections = String(v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
      if (!opts.sections.length || opts.sections.some((x) => x !== 'h1' && x !== 'h2')) die(`--section takes h1, h2 or h1,h2, got ${v ?? '(nothing)'}`);
    }
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      opts.only = String(v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
      const known = [...new Set([...ALL_TARGETS, ...H2_TARGETS])];
      const bad = opts.only.filter((n) => !known.includes(n));
      if (bad.length) die(`unknown target(s) in --only: ${bad.join(', ')} (known: ${known.join(', ')}; caddy is in the h2 section only)`);
    } else if (a === '--help' || a === '-h') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1).filter((l, i, a) => a.slice(0, i + 1).every((x) => x.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else die(`unknown argument: ${a}`);
  }
  return opts;
}


function envInt(name, dflt) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) die(`${name} must be a positive integer, got ${raw}`);
  return n;
}

function die(msg) {
  console.error(`bench: ${msg}`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const selected = !opts.sections.includes('h1') ? [] : (opts.only ? ALL_TARGETS.filter((t) => opts.only.includes(t) || (t === 'baseline' && opts.baseline)) : ALL_TARGETS)
  .filter((t) => t !== 'baseline' || opts.baseline !== null);
// The HTTP/2 + gRPC section's targets (scripts/lib/bench-h2.js), filtered by --only as well.
const selectedH2 = !opts.sections.includes('h2') ? [] : H2_TARGETS.filter((t) => (opts.only ? opts.only.includes(t) || t === 'baseline' : true));
if (opts.baseline) {
  const sha = spawnSync('git', ['-C', opts.baseline, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim();
  LABELS.baseline = `tandem (baseline${sha ? ` ${sha}` : ''})`;
}
const ROUNDS = opts.rounds ?? (opts.quick ? 1 : 3);
const DURATION = positiveEnv('BENCH_DURATION', opts.quick ? 3 : 5, die);
const WARMUP = positiveEnv('BENCH_WARMUP', opts.quick ? 1 : 2, die);
const CONNECTIONS = envInt('BENCH_CONNECTIONS', 50);
const THREADS = envInt('BENCH_THREADS', 1);
const OTHER_LOAD_WARN_PCT = 5;

// ---------------------------------------------------------------------------------------------
// Child process bookkeeping (scripts/lib/procs.js): every child is its own process group
// (detached) so that stopping it also stops its workers (nginx). Everything is killed on exit,
// error and SIGINT/SIGTERM/SIGHUP, and the temp dir removed.

let tmpRoot = null;
const procs = createProcs({ tag: 'bench', root });
const { alive, signalProc, killAllSync, children } = procs;
const removeTmp = () => { if (tmpRoot && !opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true }); };
procs.installHandlers(removeTmp);
const emergencyExit = (code, why) => procs.fatal(code, why, removeTmp);
const startProc = (name, cmd, args, options = {}) => procs.start(name, cmd, args, { ...options, dir: tmpRoot });
const stopProc = (proc, options) => procs.stop(proc, options);

function describeExit(proc) {
  if (proc.spawnError) return `could not spawn ${proc.cmd}: ${proc.spawnError.message}`;
  const { exitCode, signalCode } = proc.child;
  if (exitCode !== null) return `exited with code ${exitCode}`;
  if (signalCode !== null) return `killed by ${signalCode}`;
  return 'running';
}

// ---------------------------------------------------------------------------------------------
// Small helpers


/** Poll until every check answers 200 (all on 127.0.0.1), failing early if the process died. */
async function waitReady(proc, checks, timeoutMs) {
  await waitUntilAnswering(checks, timeoutMs, () => (proc && !alive(proc) ? describeExit(proc) : undefined));
}

function ensureTools(tools) {
  const still = ensureToolsShared(tools, 'bench');
  if (still.length) die(`missing ${still.join(', ')}; install them (apt-get install -y ${still.join(' ')}) or run as root`);
}

// ---------------------------------------------------------------------------------------------
// /proc accounting

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout);
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

function readStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": index 0 = field 3 (state), so field N is at index N - 3.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(f[1]),
      ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), // utime stime cutime cstime
    };
  } catch {
    return null;
  }
}

/** pids of rootPid and all its descendants. */
function processTree(rootPid) {
  const byParent = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(d);
    if (!st) continue;
    if (!byParent.has(st.ppid)) byParent.set(st.ppid, []);
    byParent.get(st.ppid).push(Number(d));
  }
  const out = [rootPid];
  for (let i = 0; i < out.length; i++) out.push(...(byParent.get(out[i]) ?? []));
  return out;
}

/** CPU ticks (utime+stime, plus reaped children) summed over the trees of the given roots. */
function cpuTicks(rootPids) {
  let ticks = 0;
  const pids = [];
  for (const rp of rootPids) {
    for (const pid of processTree(rp)) {
      const st = readStat(pid);
      if (st) { ticks += st.ticks; pids.push(pid); }
    }
  }
  return { ticks, pids };
}

function statusKb(pid, field) {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Reset the peak-RSS watermark (VmHWM) of the given pids; returns true if all resets worked. */
function resetHwm(pids) {
  let ok = true;
  for (const pid of pids) {
    try { writeFileSync(`/proc/${pid}/clear_refs`, '5'); } catch { ok = false; }
  }
  return ok;
}

function machineTicks() {
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest* are already in user/nice)
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  return { idle, total };
}

/** Ticks of this process plus its reaped children (wrk once it has exited). */
function selfTicks() {
  return readStat(process.pid)?.ticks ?? 0;
}

// ---------------------------------------------------------------------------------------------
// wrk

function runWrk(port, seconds, { latency = true, path = '/', url = null, headers = {} } = {}) {
  const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`];
  if (latency) args.push('--latency');
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
  args.push(url ?? `http://127.0.0.1:${port}${path}`);
  if (procs.isCleaningUp()) return Promise.resolve({ code: null, stdout: '', stderr: '', error: new Error('shutting down') });
  return new Promise((resolve) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const proc = { name: 'wrk', cmd: 'wrk', child, spawnError: null };
    children.add(proc);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const killer = setTimeout(() => signalProc(proc, 'SIGKILL'), (seconds + 30) * 1000);
    const done = (code, error) => {
      clearTimeout(killer);
      children.delete(proc);
      resolve({ code, stdout, stderr, error, command: `wrk ${args.join(' ')}` });
    };
    child.once('error', (e) => { proc.spawnError = e; done(null, e); });
    child.once('close', (code) => done(code));
  });
}

function toMs(s) {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(s ?? '');
  if (!m) return null;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

function parseWrk(out) {
  const num = (re) => { const m = re.exec(out); return m ? Number(m[1]) : null; };
  const lat = (p) => { const m = new RegExp(`^\\s*${p}%\\s+(\\S+)`, 'm').exec(out); return m ? toMs(m[1]) : null; };
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const avg = /Latency\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  const socketErrors = sock
    ? { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) }
    : { connect: 0, read: 0, write: 0, timeout: 0 };
  const non2xx = num(/Non-2xx or 3xx responses: (\d+)/) ?? 0;
  const totalSocketErrors = Object.values(socketErrors).reduce((a, b) => a + b, 0);
  return {
    requestsPerSec: num(/Requests\/sec:\s+([\d.]+)/),
    requests: num(/(\d+) requests in /),
    latencyMs: {
      avg: avg ? toMs(avg[1]) : null,
      stdev: avg ? toMs(avg[2]) : null,
      max: avg ? toMs(avg[3]) : null,
      p50: lat(50), p75: lat(75), p90: lat(90), p99: lat(99),
    },
    socketErrors,
    non2xx,
    errors: totalSocketErrors + non2xx,
  };
}

function describeErrors(w) {
  const parts = [];
  for (const [k, v] of Object.entries(w.socketErrors)) if (v) parts.push(`${k} ${v}`);
  if (w.non2xx) parts.push(`non-2xx ${w.non2xx}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Targets

function writeNginxConfig(dir, port, backends) {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755); // workers run as an unprivileged user when the master is root
  const conf = `# generated by scripts/bench.js
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;

events {
  worker_connections 4096;
}

http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;

  # Client side keep-alive without a per-connection request cap (node and HAProxy have none).
  keepalive_timeout 65s;
  keepalive_requests 1000000;

  upstream backends {
${backends.map((b) => `    server ${b};`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }

  server {
    listen ${port};
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  return file;
}

function writeHaproxyConfig(dir, port, backends) {
  mkdirSync(dir, { recursive: true });
  const conf = `# generated by scripts/bench.js
global
  nbthread 1
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 65s
  timeout server 65s
  timeout http-request 10s
  timeout http-keep-alive 65s

frontend fe
  bind ${port}
  default_backend be

backend be
  balance roundrobin
${backends.map((b, i) => `  server b${i + 1} ${b}`).join('\n')}
`;
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, conf);
  return file;
}

function writeTandemConfig(dir, port, adminPort, backendPorts, cached = false) {
  mkdirSync(dir, { recursive: true });
  const conf = `listen: 127.0.0.1:${port}
admin: 127.0.0.1:${adminPort}
services:
  shop:
    endpoints: [${backendPorts.map((p) => `127.0.0.1:${p}`).join(', ')}]
    balancer: round-robin
routes:
${cached ? '  - prefix: /cacheable\n    service: shop\n    cache: true\n' : ''}  - prefix: /
    service: shop
`;
  const file = join(dir, 'tandem.yaml');
  writeFileSync(file, conf);
  return file;
}

function nginxSupportsE(version) {
  const [a, b, c] = String(version ?? '0.0.0').split('.').map(Number);
  return a > 1 || (a === 1 && (b > 19 || (b === 19 && c >= 5)));
}

function tandemTarget(name, checkout, ports, backendPorts, cached = false) {
  return {
    // The cache-hit path: the backend says max-age for /cacheable, so after the first request
    // every request through the route with `cache` is a hit.
    path: cached ? '/cacheable' : '/',
    start: () => {
      const dir = join(tmpRoot, name);
      const file = writeTandemConfig(dir, ports.tandem, ports.tandemAdmin, backendPorts, cached);
      const proc = startProc(name, process.execPath, [join(checkout, 'bin', 'tandem.js'), 'gateway', '--config', file], { cwd: checkout });
      return {
        proc,
        port: ports.tandem,
        readyChecks: [[ports.tandemAdmin, '/readyz'], [ports.tandem, cached ? '/cacheable' : '/']],
        readyTimeoutMs: 20_000,
      };
    },
  };
}

/** Build the target descriptions: each has start() -> {proc, port, readyChecks, readyTimeoutMs}. */
function makeTargets(ports, backendPorts, versions) {
  const backends = backendPorts.map((p) => `127.0.0.1:${p}`);
  return {
    direct: {
      start: () => ({ proc: null, port: backendPorts[0], readyChecks: [[backendPorts[0], '/']], readyTimeoutMs: 5000 }),
    },
    tandem: tandemTarget('tandem', root, ports, backendPorts),
    cached: tandemTarget('cached', root, ports, backendPorts, true),
    // The same config, run by another checkout's gateway (--baseline) on the same ports.
    baseline: tandemTarget('baseline', opts.baseline, ports, backendPorts),
    nginx: {
      start: () => {
        const dir = join(tmpRoot, 'nginx');
        const file = writeNginxConfig(dir, `127.0.0.1:${ports.nginx}`, backends);
        const args = ['-c', file, '-p', dir];
        if (nginxSupportsE(versions.nginx)) args.push('-e', join(dir, 'error.log'));
        const proc = startProc('nginx', which('nginx'), args);
        proc.extraLog = join(dir, 'error.log');
        return { proc, port: ports.nginx, readyChecks: [[ports.nginx, '/']], readyTimeoutMs: 10_000 };
      },
    },
    haproxy: {
      start: () => {
        const dir = join(tmpRoot, 'haproxy');
        const file = writeHaproxyConfig(dir, `127.0.0.1:${ports.haproxy}`, backends);
        const proc = startProc('haproxy', which('haproxy'), ['-db', '-f', file]);
        return { proc, port: ports.haproxy, readyChecks: [[ports.haproxy, '/']], readyTimeoutMs: 10_000 };
      },
    },
    minimal: {
      start: () => {
        const proc = startProc('minimal', process.execPath, [join(root, 'bench', 'minimal-proxy.js'), String(ports.minimal), ...backends]);
        return { proc, port: ports.minimal, readyChecks: [[ports.minimal, '/']], readyTimeoutMs: 10_000 };
      },
    },
  };
}

function procLogs(proc) {
  if (!proc) return '';
  const parts = [];
  const err = tail(proc.errFile);
  const out = tail(proc.outFile, 15);
  const extra = proc.extraLog ? tail(proc.extraLog, 15) : '';
  if (err) parts.push(`--- stderr (tail) ---\n${err}`);
  if (out) parts.push(`--- stdout (tail) ---\n${out}`);
  if (extra) parts.push(`--- ${proc.extraLog.split('/').pop()} (tail) ---\n${extra}`);
  return parts.join('\n') || '(no output)';
}

async function benchTarget(name, target, backendProcs) {
  const result = { target: name, label: LABELS[name], status: 'ok' };
  let started;
  const t0 = Date.now();
  try {
    started = target.start();
    result.command = started.proc ? [started.proc.cmd, ...started.proc.args].join(' ') : null;
    await waitReady(started.proc, started.readyChecks, started.readyTimeoutMs);
    result.startupMs = Date.now() - t0;
  } catch (e) {
    result.status = 'failed to start';
    result.error = e.message;
    if (started?.proc) {
      await sleep(200); // let a crashing process flush its output
      result.logTail = procLogs(started.proc);
      await stopProc(started.proc);
    }
    return result;
  }

  const proc = started.proc;
  try {
    // Warm-up (results discarded).
    const warm = await runWrk(started.port, WARMUP, { latency: false, path: target.path });
    if (warm.code !== 0) throw new Error(`warm-up wrk failed (exit ${warm.code}): ${warm.error?.message ?? warm.stderr.trim()}`);
    const warmParsed = parseWrk(warm.stdout);
    result.warmup = { seconds: WARMUP, requests: warmParsed.requests, errors: warmParsed.errors };
    if (proc && !alive(proc)) throw new Error(`died during warm-up: ${describeExit(proc)}`);
    await sleep(300);

    // Measured run.
    const proxyRoots = proc ? [proc.child.pid] : [];
    const backendRoots = backendProcs.map((p) => p.child.pid);
    const before = proc ? cpuTicks(proxyRoots) : null;
    const hwmReset = proc ? resetHwm(before.pids) : null;
    const beBefore = cpuTicks(backendRoots);
    const mBefore = machineTicks();
    const selfBefore = selfTicks();
    const run = await runWrk(started.port, DURATION, { path: target.path });
    const selfAfter = selfTicks(); // includes the reaped wrk
    const mAfter = machineTicks();
    const beAfter = cpuTicks(backendRoots);
    const after = proc ? cpuTicks(proxyRoots) : null;
    if (run.code !== 0) throw new Error(`wrk failed (exit ${run.code}): ${run.error?.message ?? run.stderr.trim()}`);
    const w = parseWrk(run.stdout);
    if (!w.requests || w.requestsPerSec === null) throw new Error(`could not parse wrk output:\n${run.stdout}\n${run.stderr}`);
    const machineTotal = Math.max(1, mAfter.total - mBefore.total);
    const machineBusy = machineTotal - (mAfter.idle - mBefore.idle);
    const ours = (after ? after.ticks - before.ticks : 0) + (beAfter.ticks - beBefore.ticks) + (selfAfter - selfBefore);
    Object.assign(result, {
      wrkCommand: run.command,
      durationS: DURATION,
      connections: CONNECTIONS,
      requestsPerSec: w.requestsPerSec,
      requests: w.requests,
      latencyMs: w.latencyMs,
      socketErrors: w.socketErrors,
      non2xx: w.non2xx,
      errors: w.errors,
      errorSummary: describeErrors(w),
      wrkOutput: run.stdout,
      machineCpuBusyPct: round((100 * machineBusy) / machineTotal, 1),
      // CPU used by anything outside the benchmark (proxy, backends, wrk, this script): other load
      // on the machine skews the results; flagged in the report when above 5 % of all cores.
      otherCpuPct: round(Math.max(0, (100 * (machineBusy - ours)) / machineTotal), 1),
      backendsCpuUsPerReq: round(((beAfter.ticks - beBefore.ticks) / CLK_TCK) * 1e6 / w.requests, 2),
    });
    if (proc) {
      const ticks = after.ticks - before.ticks;
      const perPid = after.pids.map((pid) => ({ pid, vmHwmKb: statusKb(pid, 'VmHWM'), vmRssKb: statusKb(pid, 'VmRSS') }));
      const hwmKb = perPid.reduce((a, p) => a + (p.vmHwmKb ?? 0), 0);
      Object.assign(result, {
        proxyPids: after.pids,
        proxyCpuSeconds: round(ticks / CLK_TCK, 3),
        proxyCpuUsPerReq: round((ticks / CLK_TCK) * 1e6 / w.requests, 2),
        proxyCpuCoresUsed: round(ticks / CLK_TCK / DURATION, 2),
        peakRssKb: hwmKb,
        peakRssMethod: hwmReset ? 'VmHWM summed over process tree, reset (clear_refs=5) after warm-up' : 'VmHWM summed over process tree since process start (reset failed)',
        perProcessMemory: perPid,
      });
      if (!alive(proc)) {
        result.status = 'crashed';
        result.error = `died during the run: ${describeExit(proc)}`;
        // The dead process's CPU ticks and memory are gone from /proc: the deltas mean nothing.
        Object.assign(result, { proxyCpuSeconds: null, proxyCpuUsPerReq: null, proxyCpuCoresUsed: null, peakRssKb: null });
        result.logTail = procLogs(proc);
      }
    }
    const deadBackends = backendProcs.filter((p) => !alive(p));
    if (deadBackends.length) {
      result.status = 'failed';
      result.error = `backend(s) died: ${deadBackends.map((p) => p.name).join(', ')}`;
    }
  } catch (e) {
    result.status = 'failed';
    result.error = e.message;
    if (proc) result.logTail = procLogs(proc);
  } finally {
    await stopProc(proc);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Reporting

function round(n, d) {
  if (n === null || n === undefined || !Number.isFinite(n)) return null;
  const f = 10 ** d;
  return Math.round(n * f) / f;
}

const fmtInt = (n) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'));
const fmtMs = (n) => (n === null || n === undefined ? '—' : n < 10 ? n.toFixed(2) : n.toFixed(1));
const fmtUs = (n) => (n === null || n === undefined ? '—' : n.toFixed(1));
const fmtMb = (kb) => (kb === null || kb === undefined ? '—' : (kb / 1024).toFixed(1));

function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function maxOf(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x));
  return v.length ? Math.max(...v) : null;
}

const isNoisy = (run) => run.otherCpuPct > OTHER_LOAD_WARN_PCT;

/**
 * Fold the per-round runs of one target into one result: medians of req/s, p50, p99 and CPU/req,
 * max of peak RSS, min–max of req/s. Only runs that completed cleanly (status ok) count; if none
 * did but some still produced wrk numbers (e.g. the proxy crashed at the end), those are used and
 * the target is flagged. The raw runs are kept under `runs`.
 */
function aggregate(name, runs) {
  const measured = runs.filter((r) => r.requestsPerSec !== undefined);
  const ok = measured.filter((r) => r.status === 'ok');
  // Rounds disturbed by other load are left out of the medians when at least one quiet round
  // exists: a median over mostly disturbed rounds measures the disturbance, not the proxy.
  const quiet = ok.filter((r) => !isNoisy(r));
  const used = quiet.length ? quiet : ok.length ? ok : measured;
  const bad = runs.filter((r) => r.status !== 'ok');
  const badText = bad.map((r) => `round ${r.round}: ${r.status}: ${r.error ?? ''}`.trim()).join('; ');
  const lastBad = bad[bad.length - 1];
  const agg = {
    target: name,
    label: LABELS[name],
    rounds: runs.length,
    roundsUsed: used.map((r) => r.round),
  };
  if (used.length === 0) {
    return {
      ...agg,
      status: runs.length > 1 && runs.some((r) => r.status !== lastBad.status) ? 'failed' : lastBad.status,
      error: runs.length > 1 ? badText : lastBad.error,
      logTail: lastBad.logTail,
      flagged: true,
      runs,
    };
  }
  const rps = used.map((r) => r.requestsPerSec);
  const noisyRounds = used.filter(isNoisy).map((r) => r.round);
  const leftOut = ok.filter((r) => isNoisy(r) && !used.includes(r)).map((r) => r.round);
  const errorRuns = used.filter((r) => r.errors);
  let status = 'ok';
  if (bad.length) status = ok.length ? `failed in ${bad.length}/${runs.length} rounds` : lastBad.status;
  Object.assign(agg, {
    status,
    error: bad.length ? (runs.length > 1 ? badText : lastBad.error) : undefined,
    logTail: lastBad?.logTail,
    requestsPerSec: median(rps),
    requestsPerSecMin: Math.min(...rps),
    requestsPerSecMax: Math.max(...rps),
    latencyMs: {
      p50: median(used.map((r) => r.latencyMs.p50)),
      p99: median(used.map((r) => r.latencyMs.p99)),
    },
    requests: used.reduce((a, r) => a + r.requests, 0),
    errors: used.reduce((a, r) => a + r.errors, 0),
    errorSummary: errorRuns.map((r) => (used.length > 1 ? `round ${r.round}: ${r.errorSummary}` : r.errorSummary)).join('; '),
    machineCpuBusyPct: round(median(used.map((r) => r.machineCpuBusyPct)), 1),
    otherCpuPct: round(median(used.map((r) => r.otherCpuPct)), 1),
    otherCpuPctMax: maxOf(used.map((r) => r.otherCpuPct)),
    noisyRounds,
    leftOutRounds: leftOut,
    backendsCpuUsPerReq: round(median(used.map((r) => r.backendsCpuUsPerReq)), 2),
  });
  if (name !== 'direct') {
    Object.assign(agg, {
      proxyCpuUsPerReq: round(median(used.map((r) => r.proxyCpuUsPerReq)), 2),
      proxyCpuCoresUsed: round(median(used.map((r) => r.proxyCpuCoresUsed)), 2),
      peakRssKb: maxOf(used.map((r) => r.peakRssKb)),
    });
  }
  agg.flagged = Boolean(agg.errors) || status !== 'ok' || noisyRounds.length > 0;
  agg.runs = runs;
  return agg;
}

function noiseText(r) {
  if (!r.noisyRounds?.length) {
    return r.leftOutRounds?.length ? `(round${r.leftOutRounds.length > 1 ? 's' : ''} ${r.leftOutRounds.join(', ')} left out: other load)` : '';
  }
  const n = r.roundsUsed.length;
  return n > 1
    ? `⚠ other load >${OTHER_LOAD_WARN_PCT}% CPU in ${r.noisyRounds.length}/${n} rounds (max ${r.otherCpuPctMax}%)`
    : `⚠ other load ${r.otherCpuPctMax}% CPU`;
}

function markdownTable(results) {
  const lines = [
    '| Target | Req/s | Req/s min–max | p50 (ms) | p99 (ms) | Proxy CPU (µs/req) | Proxy peak RSS (MB) | Requests | Errors |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.requestsPerSec === undefined) {
      lines.push(`| ${r.label} ⚠ | **${r.status}** | — | — | — | — | — | — | ${oneLine(r.error)} |`);
      continue;
    }
    const parts = [];
    if (r.status !== 'ok') parts.push(`**${r.status}**: ${oneLine(r.error)}`);
    if (r.errors) parts.push(`⚠ ${r.errorSummary}`);
    if (r.noisyRounds.length || r.leftOutRounds?.length) parts.push(noiseText(r));
    const spread = r.requestsPerSecMin === r.requestsPerSecMax && r.roundsUsed.length === 1
      ? '—'
      : `${fmtInt(r.requestsPerSecMin)}–${fmtInt(r.requestsPerSecMax)}`;
    lines.push(`| ${r.flagged ? `${r.label} ⚠` : r.label} | ${fmtInt(r.requestsPerSec)} | ${spread} | `
      + `${fmtMs(r.latencyMs.p50)} | ${fmtMs(r.latencyMs.p99)} | `
      + `${r.target === 'direct' ? '—' : fmtUs(r.proxyCpuUsPerReq)} | ${r.target === 'direct' ? '—' : fmtMb(r.peakRssKb)} | `
      + `${fmtInt(r.requests)} | ${parts.length ? parts.join('; ') : '0'} |`);
  }
  return lines.join('\n');
}

/** Req/s of every run, one column per round (shows how much the rounds disagree). */
function markdownRounds(results, rounds) {
  const head = Array.from({ length: rounds }, (_, i) => `Round ${i + 1}`);
  const lines = [`| Req/s per round | ${head.join(' | ')} |`, `|---|${head.map(() => '---:').join('|')}|`];
  for (const r of results) {
    const cells = head.map((_, i) => {
      const run = r.runs.find((x) => x.round === i + 1);
      if (!run) return '—';
      if (run.requestsPerSec === undefined) return `**${run.status}**`;
      const marks = [run.status !== 'ok' ? run.status : '', run.errors ? 'errors' : '', isNoisy(run) ? `other ${run.otherCpuPct}%` : '']
        .filter(Boolean);
      return `${fmtInt(run.requestsPerSec)}${marks.length ? ` ⚠ ${marks.join(', ')}` : ''}`;
    });
    lines.push(`| ${r.label} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function oneLine(s) {
  return String(s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 160);
}

function computeRatios(results) {
  const by = Object.fromEntries(results.filter((r) => r.requestsPerSec !== undefined).map((r) => [r.target, r]));
  const pairs = [['cached', 'tandem', 'cache hit / proxied (tandem)'], ['tandem', 'baseline', 'tandem / baseline'], ['tandem', 'minimal', 'tandem / minimal-undici'], ['tandem', 'nginx', 'tandem / nginx'], ['minimal', 'nginx', 'minimal / nginx']];
  return pairs.map(([a, b, label]) => {
    const ra = by[a];
    const rb = by[b];
    const q = (f) => (ra && rb && f(ra) && f(rb) ? round(f(ra) / f(rb), 2) : null);
    return {
      label, a, b,
      flagged: [ra, rb].some((r) => r && r.flagged),
      requestsPerSec: q((r) => r.requestsPerSec),
      p50: q((r) => r.latencyMs?.p50),
      p99: q((r) => r.latencyMs?.p99),
      cpuPerReq: q((r) => r.proxyCpuUsPerReq),
      peakRss: q((r) => r.peakRssKb),
    };
  });
}

function markdownRatios(ratios) {
  const f = (n) => (n === null ? 'n/a' : `${n.toFixed(2)}×`);
  const lines = [
    '| Ratio | Req/s | p50 | p99 | CPU/req | Peak RSS |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of ratios) {
    lines.push(`| ${r.label}${r.flagged ? ' ⚠' : ''} | ${f(r.requestsPerSec)} | ${f(r.p50)} | ${f(r.p99)} | ${f(r.cpuPerReq)} | ${f(r.peakRss)} |`);
  }
  return lines.join('\n');
}

function machineInfo() {
  const cpus = os.cpus();
  let gitCommit = null;
  const g = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  if (g.status === 0) gitCommit = g.stdout.trim();
  // The benchmark builds and runs the working tree: say so when it differs from the commit.
  const d = spawnSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin', 'package.json'], { cwd: root, encoding: 'utf8' });
  const dirty = d.status === 0 && d.stdout.trim() !== '';
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    node: process.version,
    gitCommit,
    gitDirty: dirty,
    clkTck: CLK_TCK,
  };
}

function buildMarkdown(meta, results, ratios) {
  const v = meta.versions;
  const p = meta.params;
  const out = [];
  out.push(`# tandem benchmark — ${meta.date}`);
  out.push('');
  out.push(`Machine: ${meta.machine.cpuModel}, ${meta.machine.cores} cores, ${meta.machine.memoryGb} GB, Linux ${meta.machine.kernel}; `
    + `Node ${meta.machine.node}; wrk ${v.wrk ?? '?'}; nginx ${v.nginx ?? '?'}; HAProxy ${v.haproxy ?? '?'}; undici ${v.undici ?? '?'}`
    + `${meta.machine.gitCommit ? `; tandem @ ${meta.machine.gitCommit}${meta.machine.gitDirty ? ' + uncommitted changes' : ''}` : ''}.`);
  out.push('');
  out.push(`Load: \`wrk -t${p.threads} -c${p.connections} -d${p.durationS}s --latency\` after a ${p.warmupS}s warm-up, `
    + `${p.rounds} round${p.rounds === 1 ? '' : 's'} (each round starts, measures and stops every target once, same order every round: ${p.targets.join(', ')}); `
    + `3 Node backends (\`bench/backend.js\`, 12-byte body), proxies balance round robin over keep-alive connections. `
    + 'Everything (wrk, proxy, backends) shares the same machine.');
  out.push('');
  out.push(markdownTable(results));
  out.push('');
  out.push(markdownRatios(ratios));
  out.push('');
  out.push((p.rounds > 1
    ? `Req/s, p50, p99 and CPU/req are medians over the ${p.rounds} rounds, peak RSS is the maximum, "min–max" the range of req/s over the rounds, Requests and Errors are totals; ratios are computed from the medians. `
    : '')
    + 'Proxy CPU = utime+stime of the proxy\'s whole process tree (nginx master+worker) from `/proc/PID/stat`, '
    + 'delta over the measured run ÷ requests completed. Peak RSS = `VmHWM` summed over the tree, reset after warm-up. '
    + 'Ratios are A ÷ B (for req/s higher is better; for latency, CPU and RSS lower is better). '
    + `⚠ = errors, a failure, or more than ${OTHER_LOAD_WARN_PCT}% of the machine's CPU used by other processes during a run.`);
  if (p.rounds > 1) {
    out.push('');
    out.push(markdownRounds(results, p.rounds));
  }
  const extra = results.filter((r) => r.requestsPerSec !== undefined);
  if (extra.length) {
    out.push('');
    out.push(`Context per target${p.rounds > 1 ? ' (medians over rounds)' : ''} (machine CPU busy over all cores; share used by processes outside the benchmark; backends' CPU per request): `
      + extra.map((r) => `${r.target}: ${r.machineCpuBusyPct}% busy, other ${r.otherCpuPct}%`
      + `${p.rounds > 1 ? ` (max ${r.otherCpuPctMax}%)` : ''}, backends ${fmtUs(r.backendsCpuUsPerReq)} µs/req`
      + `${r.proxyCpuCoresUsed !== undefined ? `, proxy ${r.proxyCpuCoresUsed} cores` : ''}`).join('; ') + '.');
    const noisy = extra.filter((r) => r.noisyRounds.length);
    if (noisy.length) {
      out.push('');
      out.push(`**Warning:** other processes used more than ${OTHER_LOAD_WARN_PCT}% of the machine's CPU during some runs `
        + `(${noisy.map((r) => `${r.target}: round${r.noisyRounds.length > 1 ? 's' : ''} ${r.noisyRounds.join(', ')}`).join('; ')}); `
        + `those runs are skewed${p.rounds > 1 ? ' (the medians damp this, but only if most rounds were quiet)' : ''}. Re-run on a quiet machine.`);
    }
  }
  if (meta.idleBefore && meta.idleBefore.busyPct > OTHER_LOAD_WARN_PCT) {
    out.push('');
    out.push(`**Warning:** the machine was already ${meta.idleBefore.busyPct}% busy before the benchmark started.`);
  }
  if (meta.backendRestarts?.length) {
    out.push('');
    out.push(`**Note:** backend(s) died and were restarted: ${meta.backendRestarts.map((b) => `${b.name} before round ${b.round} (${b.target})`).join('; ')}.`);
  }
  const failed = results.filter((r) => r.status !== 'ok' && (r.logTail || r.error));
  for (const r of failed) {
    out.push('');
    out.push(`### ${r.label}: ${r.status}`);
    out.push('');
    out.push(`${r.error ?? ''}`);
    if (r.logTail) {
      out.push('');
      out.push('```');
      out.push(r.logTail);
      out.push('```');
    }
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const startedAt = Date.now();
  const tools = ['wrk'];
  if (selected.includes('nginx')) tools.push('nginx');
  if (selected.includes('haproxy')) tools.push('haproxy');
  if (selectedH2.length) tools.push('h2load', 'openssl', ...selectedH2.filter((t) => t === 'nginx' || t === 'caddy'));
  ensureTools([...new Set(tools)]);

  const versions = {
    wrk: versionOf('wrk', ['-v'], /wrk (\S+)/),
    nginx: which('nginx') ? versionOf(which('nginx'), ['-v'], /nginx\/(\S+)/) : null,
    haproxy: which('haproxy') ? versionOf(which('haproxy'), ['-v'], /HA-?Proxy version (\S+)/) : null,
    undici: (() => { try { return JSON.parse(readFileSync(join(root, 'node_modules', 'undici', 'package.json'), 'utf8')).version; } catch { return null; } })(),
  };

  let build = null;
  if ((selected.includes('tandem') || selectedH2.includes('tandem')) && opts.build) {
    console.log('bench: npm run build ...');
    const t = Date.now();
    const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    build = { status: r.status, ms: Date.now() - t, outputTail: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n') };
    if (r.status !== 0) {
      console.log(`bench: build exited with ${r.status ?? r.error?.message} after ${build.ms} ms (tsc still emits on type errors); trying tandem anyway:\n${build.outputTail}`);
    } else {
      console.log(`bench: build ok (${build.ms} ms)`);
    }
  }

  // How busy is the machine before we start? (Other load makes the numbers meaningless.)
  const m0 = machineTicks();
  await sleep(1000);
  const m1 = machineTicks();
  const idleBefore = { busyPct: round(100 * (1 - (m1.idle - m0.idle) / Math.max(1, m1.total - m0.total)), 1) };
  if (idleBefore.busyPct > OTHER_LOAD_WARN_PCT) {
    console.log(`bench: warning: machine is ${idleBefore.busyPct}% busy before starting; results will be skewed`);
  }

  tmpRoot = mkdtempSync(join(os.tmpdir(), 'tandem-bench-'));
  chmodSync(tmpRoot, 0o755);
  const [b1, b2, b3, tandem, tandemAdmin, nginx, haproxy, minimal] = await freePorts(8);
  const backendPorts = [b1, b2, b3];
  const ports = { tandem, tandemAdmin, nginx, haproxy, minimal };

  if (selected.length) console.log(`bench: targets ${selected.join(', ')}; ${ROUNDS} round${ROUNDS === 1 ? '' : 's'}; wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION}s (warm-up ${WARMUP}s); temp dir ${tmpRoot}`);
  const backendProcs = (selected.length ? backendPorts : []).map((p, i) => startProc(`backend${i + 1}`, process.execPath, [join(root, 'bench', 'backend.js'), String(p)]));
  try {
    await Promise.all(backendProcs.map((p, i) => waitReady(p, [[backendPorts[i], '/']], 10_000)));
  } catch (e) {
    console.error(`bench: backends did not start: ${e.message}`);
    for (const p of backendProcs) console.error(procLogs(p));
    throw e;
  }
  if (selected.length) console.log(`bench: backends up on ${backendPorts.join(', ')}`);

  const targets = makeTargets(ports, backendPorts, versions);
  const runsByTarget = Object.fromEntries(selected.map((name) => [name, []]));
  const backendRestarts = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const name of selected) {
      // A backend that died in an earlier run would fail every later run: bring it back first.
      for (let i = 0; i < backendProcs.length; i++) {
        if (alive(backendProcs[i])) continue;
        console.log(`bench: backend${i + 1} is down (${describeExit(backendProcs[i])}); restarting it`);
        children.delete(backendProcs[i]);
        backendProcs[i] = startProc(`backend${i + 1}`, process.execPath, [join(root, 'bench', 'backend.js'), String(backendPorts[i])]);
        backendRestarts.push({ name: `backend${i + 1}`, round, target: name });
        try {
          await waitReady(backendProcs[i], [[backendPorts[i], '/']], 10_000);
        } catch (e) {
          console.log(`bench: backend${i + 1} did not come back: ${e.message}`);
        }
      }
      process.stdout.write(`bench: ${ROUNDS > 1 ? `round ${round}/${ROUNDS}: ` : ''}${LABELS[name]} ... `);
      const r = await benchTarget(name, targets[name], backendProcs);
      if (procs.isCleaningUp()) return new Promise(() => {}); // interrupted: emergencyExit() ends the process
      r.round = round;
      runsByTarget[name].push(r);
      if (r.requestsPerSec !== undefined) {
        console.log(`${fmtInt(r.requestsPerSec)} req/s, p50 ${fmtMs(r.latencyMs.p50)} ms, p99 ${fmtMs(r.latencyMs.p99)} ms`
          + (r.proxyCpuUsPerReq !== undefined ? `, ${fmtUs(r.proxyCpuUsPerReq)} µs CPU/req, ${fmtMb(r.peakRssKb)} MB peak RSS` : '')
          + (r.errors ? `, ⚠ ${r.errorSummary}` : '')
          + (isNoisy(r) ? ` (⚠ other load ${r.otherCpuPct}% of CPU)` : '')
          + (r.status !== 'ok' ? ` [${r.status}: ${r.error}]` : ''));
      } else {
        console.log(`${r.status}: ${r.error}`);
        if (r.logTail) console.log(r.logTail.split('\n').map((l) => `    ${l}`).join('\n'));
      }
      await sleep(500);
    }
  }

  await Promise.all(backendProcs.map((p) => stopProc(p)));

  // The HTTP/2 + gRPC section: its own backends, targets and tables (scripts/lib/bench-h2.js).
  let h2 = null;
  if (selectedH2.length) {
    console.log(`bench: HTTP/2 + gRPC section: targets ${selectedH2.filter((t) => t !== 'baseline' || opts.baseline).join(', ')}; scenarios ${H2_SCENARIOS.join(', ')}`);
    h2 = await runH2Section({
      root, tmpRoot, procs, rounds: ROUNDS, durationS: DURATION, warmupS: WARMUP, targets: selectedH2, baseline: opts.baseline,
      connections: CONNECTIONS, h2Connections: envInt('BENCH_H2_CONNECTIONS', 10), h2Streams: envInt('BENCH_H2_STREAMS', 10),
      cpuTicks, clkTck: CLK_TCK, machineTicks, selfTicks, parseWrk, log: (line) => process.stdout.write(line),
      runWrk: (url, seconds, o) => runWrk(null, seconds, { ...o, url }),
    });
    if (procs.isCleaningUp()) return new Promise(() => {});
  }

  const results = selected.map((name) => aggregate(name, runsByTarget[name]));
  const ratios = computeRatios(results);
  const now = new Date();
  const meta = {
    date: now.toISOString(),
    machine: machineInfo(),
    versions,
    params: {
      threads: THREADS, connections: CONNECTIONS, durationS: DURATION, warmupS: WARMUP, rounds: ROUNDS, quick: opts.quick, targets: selected, sections: opts.sections,
    },
    build,
    idleBefore,
    backendRestarts,
    totalSeconds: round((Date.now() - startedAt) / 1000, 1),
  };
  const h1md = selected.length ? buildMarkdown(meta, results, ratios) : `# tandem benchmark — ${meta.date}\n\nMachine: ${meta.machine.cpuModel}, ${meta.machine.cores} cores; Node ${meta.machine.node}; nginx ${versions.nginx ?? '?'}${meta.machine.gitCommit ? `; tandem @ ${meta.machine.gitCommit}${meta.machine.gitDirty ? ' + uncommitted changes' : ''}` : ''}.\n`;
  const md = h2 ? `${h1md}\n${h2.markdown}` : h1md;
  console.log('\n' + md);

  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  const json = JSON.stringify({ meta, results, ratios, h2, markdown: md }, null, 2) + '\n';
  for (const base of [`bench-${stamp}`, 'latest']) {
    writeFileSync(join(outDir, `${base}.md`), md);
    writeFileSync(join(outDir, `${base}.json`), json);
  }
  console.log(`bench: wrote bench/results/bench-${stamp}.{md,json} and bench/results/latest.{md,json} (${meta.totalSeconds}s total)`);
}

main()
  .then(() => {
    killAllSync('SIGKILL');
    if (tmpRoot && !opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true });
    else if (tmpRoot) console.log(`bench: kept ${tmpRoot}`);
  })
  .catch((e) => {
    console.error(e);
    emergencyExit(1, 'failed');
  });
