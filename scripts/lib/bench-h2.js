// The HTTP/2 + gRPC section of `npm run bench` (scripts/bench.js): tandem, nginx and Caddy in
// front of the same backends, under the same load generators, one target at a time; and a
// minimal node:http2 proxy (bench/minimal-h2-proxy.js): in the gRPC scenario, what a call
// through node:http2 costs on the Node running the benchmark with none of a gateway's work.
//
// Scenarios (each target runs all of them, from one process per round):
//   h2c             h2load, HTTP/2 cleartext with prior knowledge, GET /; the proxy speaks HTTP/1.1
//                   to bench/backend.js (as for the HTTP/1.1 section)
//   h2-tls          the same over TLS (ALPN h2)
//   grpc            h2load posting one gRPC frame (a Get of scripts/lib/grpc-drill.proto) with
//                   content-type application/grpc and te: trailers over h2c; the proxy speaks h2c to
//                   bench/h2-backend.js (node:http2: a fixed reply and grpc-status 0)
//   h1-tls          wrk, HTTP/1.1 over TLS, keep-alive
//   tls-handshakes  wrk with `Connection: close` over TLS: every request a new connection and a
//                   full handshake (wrk resumes no session), so req/s is handshakes per second
// Per run: req/s, p50/p99, and the proxy's CPU per request (utime+stime of its process tree from
// /proc/PID/stat before and after the measured run ÷ requests). gRPC calls are checked end to end:
// the backends' count of answered calls must cover what h2load counted as succeeded (a proxy's
// Trailers-Only error is a 200 to h2load).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import { getRequestFrame, GET_PATH } from './grpc-drill-service.js';
import { freePorts, sleep, tail, versionOf, waitUntilAnswering, which } from './procs.js';
import { nginxPreamble } from './nginx-preamble.js';

export const H2_TARGETS = ['tandem', 'baseline', 'minimal', 'nginx', 'caddy'];
export const ALL_H2_SCENARIOS = ['h2c', 'h2-tls', 'grpc', 'h1-tls', 'tls-handshakes'];
/** The scenarios run: all, or those BENCH_H2_SCENARIOS lists (comma-separated). */
export const H2_SCENARIOS = scenariosOf(process.env.BENCH_H2_SCENARIOS);

function scenariosOf(list) {
  if (list === undefined || list.trim() === '') return ALL_H2_SCENARIOS;
  const wanted = list.split(',').map((x) => x.trim()).filter(Boolean);
  const unknown = wanted.filter((x) => !ALL_H2_SCENARIOS.includes(x));
  if (unknown.length > 0) throw new Error(`BENCH_H2_SCENARIOS: unknown scenario(s) ${unknown.join(', ')} (known: ${ALL_H2_SCENARIOS.join(', ')})`);
  return ALL_H2_SCENARIOS.filter((x) => wanted.includes(x));
}
/** Above this share of the machine's CPU used by other processes, a run is flagged (as in bench.js). */
const OTHER_LOAD_WARN_PCT = 5;
const LABELS = { tandem: 'tandem', baseline: 'tandem (baseline)', minimal: 'minimal node:http2 proxy', nginx: 'nginx (1 worker)', caddy: 'Caddy' };

/**
 * Runs the section. `env`: { root, tmpRoot, procs, rounds, durationS, warmupS, targets (names),
 * baseline (dir or null), connections (wrk), h2Connections, h2Streams, cpuTicks(pids) → {ticks},
 * clkTck, machineTicks() → {idle, total}, selfTicks(), runWrk(url, seconds, { latency, headers }),
 * parseWrk(stdout), log(line) }.
 * Resolves { params, results: [{ scenario, target, runs: [...] , ...medians }], ratios, markdown }.
 */
export async function runH2Section(env) {
  const targets = H2_TARGETS.filter((t) => env.targets.includes(t) && (t !== 'baseline' || env.baseline));
  const missing = ['h2load', 'caddy', 'nginx', 'openssl'].filter((t) => !which(t) && (t !== 'caddy' || targets.includes('caddy')) && (t !== 'nginx' || targets.includes('nginx')));
  if (missing.length) throw new Error(`the HTTP/2 + gRPC section needs ${missing.join(', ')} (apt-get install -y ${missing.map((m) => (m === 'h2load' ? 'nghttp2-client' : m)).join(' ')})`);
  const dir = join(env.tmpRoot, 'h2');
  mkdirSync(dir, { recursive: true });
  const tls = makeCertificate(dir);
  const frameFile = join(dir, 'get.grpc');
  writeFileSync(frameFile, getRequestFrame());
  const ports = await freePorts(9);
  const h1Ports = ports.slice(0, 3);
  const h2Ports = ports.slice(3, 6);
  const [plain, secure, admin] = ports.slice(6);
  const backends = [
    ...h1Ports.map((p, i) => env.procs.start(`h2sec-backend${i + 1}`, process.execPath, [join(env.root, 'bench', 'backend.js'), String(p)], { dir })),
    ...h2Ports.map((p, i) => env.procs.start(`h2sec-grpc-backend${i + 1}`, process.execPath, [join(env.root, 'bench', 'h2-backend.js'), String(p), `g${i + 1}`], { dir })),
  ];
  try {
    await Promise.all([waitUntilAnswering(h1Ports.map((p) => [p, '/']), 10_000), ...h2Ports.map((p) => untilAnswers(p, false, '/', 10_000))]);
    const ctx = { env, dir, tls, frameFile, plain, secure, admin, h1: h1Ports.map(ep), h2: h2Ports.map(ep), h2Ports, backendPids: backends.map((b) => b.child.pid) };
    const runs = [];
    for (let round = 1; round <= env.rounds; round++) {
      for (const target of targets) {
        runs.push(...(await benchTarget(ctx, target, round)));
        if (env.procs.isCleaningUp()) return null;
      }
    }
    const results = aggregate(runs, targets);
    const ratios = computeRatios(results);
    const params = {
      rounds: env.rounds, durationS: env.durationS, warmupS: env.warmupS, h2Connections: env.h2Connections, h2Streams: env.h2Streams,
      wrkConnections: env.connections, targets,
      versions: { h2load: versionOf('h2load', ['--version'], /nghttp2\/(\S+)/), caddy: which('caddy') ? versionOf('caddy', ['version'], /v?(\d+\.\d+\.\d+)/) : null },
    };
    return { params, results, ratios, markdown: markdown(params, results, ratios) };
  } finally {
    await Promise.all(backends.map((b) => env.procs.stop(b)));
  }
}

const ep = (p) => `127.0.0.1:${p}`;

/** A throwaway P-256 certificate for 127.0.0.1 (every target serves the same one). */
function makeCertificate(dir) {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
    '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl could not make a certificate: ${r.stderr}`);
  return { cert, key };
}

/** One HTTP/2 request (h2c or TLS); resolves the status (0 when it failed). */
function h2Request(port, secure, path, { method = 'GET', headers = {}, body = null } = {}) {
  return new Promise((resolve) => {
    const session = http2.connect(`${secure ? 'https' : 'http'}://127.0.0.1:${port}`, secure ? { rejectUnauthorized: false } : {});
    const done = (status, trailers = {}) => {
      session.close();
      resolve({ status, grpcStatus: trailers['grpc-status'] });
    };
    session.on('error', () => done(0));
    session.setTimeout(2000, () => { session.destroy(); done(0); });
    const req = session.request({ ':method': method, ':path': path, ...headers });
    let status = 0;
    let trailers = {};
    req.on('response', (h) => {
      status = h[':status'];
      if (h['grpc-status'] !== undefined) trailers = h;
    });
    req.on('trailers', (t) => { trailers = t; });
    req.on('data', () => {});
    req.on('end', () => done(status, trailers));
    req.on('error', () => done(0));
    req.end(body ?? undefined);
  });
}

async function untilAnswers(port, secure, path, ms, check = (r) => r.status === 200) {
  const deadline = Date.now() + ms;
  let last = null;
  while (Date.now() < deadline) {
    last = await h2Request(port, secure, path);
    if (check(last)) return;
    await sleep(100);
  }
  throw new Error(`no HTTP/2 answer on ${secure ? 'https' : 'http'}://127.0.0.1:${port}${path} after ${ms / 1000} s (last status ${last?.status ?? 'none'})`);
}

const grpcCall = (port, frame) => h2Request(port, false, GET_PATH, { method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: frame });

// ---------------------------------------------------------------------------------------------
// Targets: one config each, with a plaintext listener (h2c, gRPC) and a TLS one (h2, HTTP/1.1)

function tandemConfig(ctx, grpc) {
  return `listen:
  - address: 127.0.0.1:${ctx.plain}
  - address: 127.0.0.1:${ctx.secure}
    tls: { cert: ${ctx.tls.cert}, key: ${ctx.tls.key} }
admin: 127.0.0.1:${ctx.admin}
services:
  web:
    endpoints: [${ctx.h1.join(', ')}]
    balancer: round-robin
${grpc ? `  grpc:
    protocol: grpc
    endpoints: [${ctx.h2.join(', ')}]
    balancer: round-robin
` : ''}routes:
${grpc ? '  - prefix: /tandem.drill.Drill/\n    service: grpc\n' : ''}  - prefix: /
    service: web
`;
}

function nginxConfig(ctx, dir) {
  const locations = `    location /tandem.drill.Drill/ {
      grpc_pass grpc://grpc_backends;
    }
    location / {
      proxy_pass http://web_backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }`;
  return `${nginxPreamble(dir, { generator: 'scripts/lib/bench-h2.js', workerConnections: 4096 })}  http2_max_requests 1000000;
  upstream web_backends {
${ctx.h1.map((e) => `    server ${e};`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
  }
  upstream grpc_backends {
${ctx.h2.map((e) => `    server ${e};`).join('\n')}
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${ctx.plain} http2;
${locations}
  }
  server {
    listen 127.0.0.1:${ctx.secure} ssl http2;
    ssl_certificate ${ctx.tls.cert};
    ssl_certificate_key ${ctx.tls.key};
${locations}
  }
}
`;
}

function caddyConfig(ctx) {
  const handlers = `  bind 127.0.0.1
  reverse_proxy /tandem.drill.Drill/* ${ctx.h2.map((e) => `h2c://${e}`).join(' ')} {
    lb_policy round_robin
  }
  reverse_proxy ${ctx.h1.join(' ')} {
    lb_policy round_robin
  }`;
  return `{
  admin 127.0.0.1:${ctx.admin}
  auto_https off
  log {
    level ERROR
  }
  servers {
    protocols h1 h2 h2c
  }
}

http://127.0.0.1:${ctx.plain} {
${handlers}
}

https://127.0.0.1:${ctx.secure} {
  tls ${ctx.tls.cert} ${ctx.tls.key}
${handlers}
}
`;
}

/** Starts a target; resolves { proc, grpc: whether it proxies gRPC }. */
async function startTarget(ctx, target) {
  const { env } = ctx;
  const dir = join(ctx.dir, target);
  mkdirSync(dir, { recursive: true });
  if (target === 'tandem' || target === 'baseline') {
    const checkout = target === 'baseline' ? env.baseline : env.root;
    const file = join(dir, 'tandem.yaml');
    // A tandem without gRPC (a baseline from before it) still runs the other scenarios.
    writeFileSync(file, tandemConfig(ctx, true));
    const check = spawnSync(process.execPath, [join(checkout, 'bin', 'tandem.js'), 'gateway', '--check', file], { encoding: 'utf8', timeout: 30_000 });
    const grpc = check.status === 0;
    if (!grpc) writeFileSync(file, tandemConfig(ctx, false));
    const proc = env.procs.start(`h2sec-${target}`, process.execPath, [join(checkout, 'bin', 'tandem.js'), 'gateway', '--config', file], { dir, cwd: checkout });
    return { proc, grpc, grpcWhyNot: grpc ? null : `its config check refused protocol: grpc (${oneLine(check.stderr || check.stdout).slice(0, 160)})` };
  }
  if (target === 'minimal') {
    // A minimal node:http2 proxy, with none of a gateway's work (bench/minimal-h2-proxy.js).
    const proc = env.procs.start('h2sec-minimal', process.execPath, [join(env.root, 'bench', 'minimal-h2-proxy.js'), String(ctx.plain), String(ctx.secure), ctx.tls.cert, ctx.tls.key, ctx.h1.join(','), ctx.h2.join(',')], { dir });
    return { proc, grpc: true };
  }
  if (target === 'nginx') {
    const file = join(dir, 'nginx.conf');
    writeFileSync(file, nginxConfig(ctx, dir));
    const proc = env.procs.start('h2sec-nginx', which('nginx'), ['-c', file, '-p', dir, '-e', join(dir, 'error.log')], { dir });
    proc.extraLog = join(dir, 'error.log');
    return { proc, grpc: true };
  }
  const file = join(dir, 'Caddyfile');
  writeFileSync(file, caddyConfig(ctx));
  const proc = env.procs.start('h2sec-caddy', which('caddy'), ['run', '--config', file, '--adapter', 'caddyfile'], { dir, env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir } });
  return { proc, grpc: true };
}

async function benchTarget(ctx, target, round) {
  const { env } = ctx;
  const out = [];
  let started;
  const fail = (status, error) => H2_SCENARIOS.map((scenario) => ({ scenario, target, round, status, error }));
  try {
    started = await startTarget(ctx, target);
    const died = () => !env.procs.alive(started.proc);
    await untilAnswers(ctx.plain, false, '/', 20_000).catch((e) => { throw died() ? new Error(`exited: ${logs(started.proc)}`) : e; });
    await untilAnswers(ctx.secure, true, '/', 10_000);
    if (started.grpc) {
      const frame = readFileSync(ctx.frameFile);
      const deadline = Date.now() + 10_000;
      let r;
      do {
        r = await grpcCall(ctx.plain, frame);
        if (r.status === 200 && r.grpcStatus === '0') break;
        await sleep(100);
      } while (Date.now() < deadline);
      if (r.grpcStatus !== '0') {
        started.grpc = false;
        started.grpcWhyNot = `a gRPC call through it did not succeed (HTTP ${r.status}, grpc-status ${r.grpcStatus ?? 'none'})`;
      }
    }
  } catch (err) {
    if (started) await env.procs.stop(started.proc);
    return fail('failed to start', err.message);
  }
  try {
    for (const scenario of H2_SCENARIOS) {
      if (scenario === 'grpc' && !started.grpc) {
        out.push({ scenario, target, round, status: 'not supported', error: started.grpcWhyNot });
        continue;
      }
      env.log(`bench: h2 ${env.rounds > 1 ? `round ${round}/${env.rounds}: ` : ''}${scenario.padEnd(14)} ${LABELS[target]} ... `);
      const r = await measure(ctx, scenario, started.proc);
      Object.assign(r, { scenario, target, round });
      if (!env.procs.alive(started.proc)) Object.assign(r, { status: 'crashed', error: `died during the run: ${logs(started.proc)}` });
      env.log(r.requestsPerSec === undefined ? `${r.status}: ${r.error}\n` : `${fmtInt(r.requestsPerSec)} req/s, p50 ${fmtMs(r.p50)} ms, p99 ${fmtMs(r.p99)} ms, ${fmtUs(r.proxyCpuUsPerReq)} µs CPU/req${r.errors ? `, ⚠ ${r.errors} errors` : ''}${r.note ? ` (${r.note})` : ''}${r.otherCpuPct > OTHER_LOAD_WARN_PCT ? ` (⚠ other load ${r.otherCpuPct}% of the CPU)` : ''}\n`);
      out.push(r);
      if (r.status === 'crashed') break;
    }
  } finally {
    await env.procs.stop(started.proc);
  }
  return out;
}

function logs(proc) {
  return [tail(proc.errFile, 10), tail(proc.outFile, 5), proc.extraLog ? tail(proc.extraLog, 5) : ''].filter(Boolean).join(' | ') || '(no output)';
}

// ---------------------------------------------------------------------------------------------
// Load generators

function runH2load(ctx, scenario, seconds, logFile) {
  const { env } = ctx;
  const secure = scenario === 'h2-tls';
  const args = ['-t1', `-c${env.h2Connections}`, `-m${env.h2Streams}`, `-D${seconds}`];
  if (logFile) args.push(`--log-file=${logFile}`);
  if (scenario === 'grpc') args.push('-d', ctx.frameFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers');
  args.push(`${secure ? 'https' : 'http'}://127.0.0.1:${secure ? ctx.secure : ctx.plain}${scenario === 'grpc' ? GET_PATH : '/'}`);
  return new Promise((resolve) => {
    const child = spawn('h2load', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', (e) => { clearTimeout(killer); resolve({ code: null, stdout, stderr: e.message, command: `h2load ${args.join(' ')}` }); });
    child.once('close', (code) => { clearTimeout(killer); resolve({ code, stdout, stderr, command: `h2load ${args.join(' ')}` }); });
  });
}

function parseH2load(stdout, logFile) {
  const m = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(stdout);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (!m || !req) return null;
  // --log-file: start time (µs since the epoch), status, µs until the end of the response.
  const durations = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split('\t')[2]) / 1000).sort((a, b) => a - b) : [];
  const pick = (p) => (durations.length ? durations[Math.min(durations.length - 1, Math.ceil((p / 100) * durations.length) - 1)] : null);
  return {
    requestsPerSec: Number(m[2]),
    requests: Number(req[4]),
    errors: Number(req[5]) + Number(req[6]) + Number(req[7]) + (codes ? Number(codes[3]) + Number(codes[4]) : 0),
    p50: pick(50),
    p99: pick(99),
  };
}

async function backendCalls(ctx) {
  let sum = 0;
  for (const p of ctx.h2Ports) {
    const body = await new Promise((resolve) => {
      const s = http2.connect(`http://127.0.0.1:${p}`);
      s.on('error', () => resolve('{}'));
      const req = s.request({ ':path': '/__count' });
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (d) => { text += d; });
      req.on('end', () => { s.close(); resolve(text); });
      req.on('error', () => resolve('{}'));
      req.end();
    });
    sum += JSON.parse(body).answered ?? 0;
  }
  return sum;
}

async function measure(ctx, scenario, proc) {
  const { env } = ctx;
  const wrkUrl = `https://127.0.0.1:${ctx.secure}/`;
  const wrkHeaders = scenario === 'tls-handshakes' ? { Connection: 'close' } : {};
  const useWrk = scenario === 'h1-tls' || scenario === 'tls-handshakes';
  const logFile = join(ctx.dir, `${scenario}.h2load.log`);
  try {
    const warm = useWrk ? await env.runWrk(wrkUrl, env.warmupS, { latency: false, headers: wrkHeaders }) : await runH2load(ctx, scenario, env.warmupS, null);
    if (warm.code !== 0) return { status: 'failed', error: `warm-up failed (exit ${warm.code}): ${oneLine(warm.stderr || warm.stdout)}` };
    await sleep(300);
    const callsBefore = scenario === 'grpc' ? await backendCalls(ctx) : 0;
    const before = env.cpuTicks([proc.child.pid]);
    const ours0 = env.cpuTicks(ctx.backendPids).ticks + env.selfTicks();
    const m0 = env.machineTicks();
    const run = useWrk ? await env.runWrk(wrkUrl, env.durationS, { latency: true, headers: wrkHeaders }) : await runH2load(ctx, scenario, env.durationS, logFile);
    const m1 = env.machineTicks();
    const ours1 = env.cpuTicks(ctx.backendPids).ticks + env.selfTicks(); // the reaped load generator included
    const after = env.cpuTicks([proc.child.pid]);
    // CPU used by anything outside the benchmark (proxy, backends, load generator, this script).
    const machineTotal = Math.max(1, m1.total - m0.total);
    const machineBusy = machineTotal - (m1.idle - m0.idle);
    const otherCpuPct = Math.round(Math.max(0, (100 * (machineBusy - (after.ticks - before.ticks) - (ours1 - ours0))) / machineTotal) * 10) / 10;
    if (run.code !== 0) return { status: 'failed', error: `${useWrk ? 'wrk' : 'h2load'} failed (exit ${run.code}): ${oneLine(run.stderr || run.stdout)}` };
    let r;
    if (useWrk) {
      const w = env.parseWrk(run.stdout);
      r = w.requests ? { requestsPerSec: w.requestsPerSec, requests: w.requests, errors: w.errors, p50: w.latencyMs.p50, p99: w.latencyMs.p99 } : null;
    } else {
      r = parseH2load(run.stdout, logFile);
    }
    rmSync(logFile, { force: true });
    if (!r || !r.requests) return { status: 'failed', error: `could not read the load generator's output: ${oneLine(run.stdout).slice(0, 200)}` };
    const cpuSeconds = (after.ticks - before.ticks) / env.clkTck;
    Object.assign(r, {
      status: 'ok',
      command: run.command,
      proxyCpuUsPerReq: Math.round((cpuSeconds * 1e6 / r.requests) * 10) / 10,
      proxyCoresUsed: Math.round((cpuSeconds / env.durationS) * 100) / 100,
      otherCpuPct,
    });
    if (scenario === 'grpc') {
      // Calls the backends answered in the run (the warm-up's are before `callsBefore`).
      r.backendCalls = (await backendCalls(ctx)) - callsBefore;
      if (r.backendCalls < r.requests) {
        r.errors += r.requests - r.backendCalls;
        r.note = `${r.requests - r.backendCalls} of h2load's successes never reached a backend (gRPC errors in trailers)`;
      }
    }
    return r;
  } catch (err) {
    return { status: 'failed', error: err.message };
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function aggregate(runs, targets) {
  const out = [];
  for (const scenario of H2_SCENARIOS) {
    for (const target of targets) {
      const all = runs.filter((r) => r.scenario === scenario && r.target === target);
      const ok = all.filter((r) => r.requestsPerSec !== undefined);
      const row = { scenario, target, label: LABELS[target], runs: all };
      if (!ok.length) {
        Object.assign(row, { status: all[0]?.status ?? 'not run', error: all[0]?.error });
      } else {
        Object.assign(row, {
          status: ok.length === all.length ? 'ok' : `${all.length - ok.length} of ${all.length} rounds failed`,
          requestsPerSec: median(ok.map((r) => r.requestsPerSec)),
          requestsPerSecMin: Math.min(...ok.map((r) => r.requestsPerSec)),
          requestsPerSecMax: Math.max(...ok.map((r) => r.requestsPerSec)),
          p50: median(ok.map((r) => r.p50)),
          p99: median(ok.map((r) => r.p99)),
          proxyCpuUsPerReq: median(ok.map((r) => r.proxyCpuUsPerReq)),
          proxyCoresUsed: median(ok.map((r) => r.proxyCoresUsed)),
          requests: ok.reduce((a, r) => a + r.requests, 0),
          errors: ok.reduce((a, r) => a + r.errors, 0),
          notes: [...new Set(ok.map((r) => r.note).filter(Boolean))],
          otherCpuPctMax: Math.max(...ok.map((r) => r.otherCpuPct ?? 0)),
        });
      }
      out.push(row);
    }
  }
  return out;
}

function computeRatios(results) {
  const out = [];
  for (const scenario of H2_SCENARIOS) {
    const by = Object.fromEntries(results.filter((r) => r.scenario === scenario && r.requestsPerSec !== undefined).map((r) => [r.target, r]));
    // tandem against each other target; the minimal proxy against nginx and Caddy: how near the targets
    // a proxy on node:http2 can come on this Node at all.
    const pairs = [['tandem', 'caddy'], ['tandem', 'nginx'], ['tandem', 'baseline'], ['tandem', 'minimal'], ['minimal', 'caddy'], ['minimal', 'nginx']];
    for (const [one, other] of pairs) {
      const a = by[one];
      const b = by[other];
      if (!a || !b) continue;
      out.push({
        scenario, label: `${LABELS[one]} / ${other === 'baseline' ? 'baseline' : LABELS[other]}`,
        requestsPerSec: Math.round((a.requestsPerSec / b.requestsPerSec) * 100) / 100,
        // Per core: calls per CPU-second, the inverse of CPU per call.
        perCore: a.proxyCpuUsPerReq && b.proxyCpuUsPerReq ? Math.round((b.proxyCpuUsPerReq / a.proxyCpuUsPerReq) * 100) / 100 : null,
      });
    }
  }
  return out;
}

const fmtInt = (n) => (n === null || n === undefined ? '—' : Math.round(n).toLocaleString('en-US'));
const fmtMs = (n) => (n === null || n === undefined ? '—' : n < 10 ? n.toFixed(2) : n.toFixed(1));
const fmtUs = (n) => (n === null || n === undefined ? '—' : n.toFixed(1));
const oneLine = (s) => String(s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 240);

function markdown(params, results, ratios) {
  const v = params.versions;
  const lines = [
    '## HTTP/2 and gRPC',
    '',
    `Load: h2load ${v.h2load ?? '?'} \`-t1 -c${params.h2Connections} -m${params.h2Streams} -D${params.durationS}\` (h2c, h2 over TLS, gRPC unary) and `
      + `\`wrk -t1 -c${params.wrkConnections} -d${params.durationS}s\` (HTTP/1.1 over TLS; with \`Connection: close\` for handshakes), after a ${params.warmupS} s warm-up each; `
      + `${params.rounds} round${params.rounds === 1 ? '' : 's'}; Caddy ${v.caddy ?? '?'}. Backends: 3 × bench/backend.js (HTTP/1.1) and 3 × bench/h2-backend.js (node:http2, gRPC); one certificate (ECDSA P-256) for every TLS listener.`,
    '',
    '| Scenario | Target | Req/s | Req/s min–max | p50 (ms) | p99 (ms) | Proxy CPU (µs/req) | Proxy cores used | Requests | Errors |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.requestsPerSec === undefined) {
      lines.push(`| ${r.scenario} | ${r.label} | **${r.status}** | — | — | — | — | — | — | ${oneLine(r.error)} |`);
      continue;
    }
    const spread = r.runs.length > 1 ? `${fmtInt(r.requestsPerSecMin)}–${fmtInt(r.requestsPerSecMax)}` : '—';
    const errs = [r.errors ? `⚠ ${r.errors}` : '0', r.status !== 'ok' ? r.status : '', ...r.notes.map((n) => `⚠ ${n}`),
      r.otherCpuPctMax > OTHER_LOAD_WARN_PCT ? `⚠ other load up to ${r.otherCpuPctMax}% of the CPU` : ''].filter(Boolean).join('; ');
    lines.push(`| ${r.scenario} | ${r.label} | ${fmtInt(r.requestsPerSec)} | ${spread} | ${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtUs(r.proxyCpuUsPerReq)} | ${r.proxyCoresUsed ?? '—'} | ${fmtInt(r.requests)} | ${errs} |`);
  }
  if (ratios.length) {
    lines.push('', '| Scenario | Ratio | Req/s | Per core (requests per CPU-second) |', '|---|---|---:|---:|');
    for (const q of ratios) lines.push(`| ${q.scenario} | ${q.label} | ${q.requestsPerSec.toFixed(2)}× | ${q.perCore === null ? 'n/a' : `${q.perCore.toFixed(2)}×`} |`);
  }
  lines.push('', 'Proxy CPU = utime+stime of the proxy\'s process tree (/proc/PID/stat) over the measured run ÷ requests; "per core" compares requests per CPU-second (the inverse of CPU per request). '
    + 'tls-handshakes: every request is a new TLS connection, so req/s is handshakes per second. '
    + `⚠ other load: processes outside the benchmark used more than ${OTHER_LOAD_WARN_PCT}% of the machine's CPU during a run (its figures are skewed).`);
  return `${lines.join('\n')}\n`;
}
