#!/usr/bin/env node
// gRPC fault drill (tandem issue 15): three grpc-js instances of the drill service
// (scripts/lib/grpc-drill.proto: unary Get, server-streaming Watch), made members by tandem/node's
// serveGrpc(), under open-loop load from grpc-js callers, while one of them fails.
//
// Usage: npm run drill:grpc [-- [--quick] [--only gateway,client,nginx] [--fault kill,stop,rolling,unavailable]
//                              [--rate N] [--no-build] [--keep-tmp]]
//   --quick   CI profile (under a minute): 1.5 s faults back to back on one set of processes per
//             setup, 0.5 s streams; nginx too when installed (measured, not judged: see below)
//   --rate N  unary calls per second (default 300); streams: 5 new Watch streams per second, each
//             40 messages 50 ms apart (2 s; 10 with --quick: a draining instance waits for them)
//
// Setups, one after the other (each gets the machine to itself):
//   gateway  a grpc-js client (one channel) → a tandem gateway (`protocol: grpc`, Get and Watch
//            listed as idempotent methods) → the instances, registered with the gateway
//   client   tandem/client's createGrpcClient() in the drill's process → the instances, members
//            from the same gateway's registry (the gateway itself carries no calls)
//   nginx    a grpc-js client → nginx grpc_pass with `grpc_next_upstream error timeout http_502
//            http_503 http_504 non_idempotent` → the same instances (still registered with a
//            tandem gateway, which carries no calls, so they drain exactly as in the other setups)
// Faults, after a warm-up, on one instance: in the full profile each fault on fresh processes;
// with --quick one set of processes per setup takes the four faults in turn (kill on i1, stop on
// i2, unavailable on i3, then the rolling deploy), each after the previous one's recovery window
// (nginx's figures there are not the full profile's: a server it took out stays out for 10 s,
// into the next fault; the exit status judges the tandem setups only, in either profile):
//   kill         SIGKILL, restarted on the same port after the fault window
//   stop         SIGSTOP for the fault window (4 s), then SIGCONT
//   unavailable  every call answered UNAVAILABLE (in trailers) for the fault window; health stays SERVING
//   rolling      every instance in turn: SIGTERM (serveGrpc drains: NOT_SERVING, GOAWAY, running
//                calls and streams finish, exit), restart, the next one after a pause
// Per setup and fault: unary calls, failed by status, p50/p99, p99 of calls sent during the fault,
// streams, streams failed before any message, streams cut after messages and how they ended
// (must be UNAVAILABLE), streams that hung (no end within 6 s of when they should have ended:
// the deadline ended them), how long callers were affected (from the fault to the end of the
// last failed or > 250 ms call) and when the faulted instance took calls again after the fault.
// Results: the table on stdout and bench/results/drill-grpc[-quick]-latest.{md,json}.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tandemGrpcConfig, nginxGrpcConfig } from './lib/grpc-configs.js';
import { drillPackage, grpc, statusName } from './lib/grpc-drill-service.js';
import { grpcLoad } from './lib/grpc-load.js';
import { createProcs, ensureTools, freePorts, runDrillMain, sleep, tail, versionOf, waitUntilAnswering, which } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill:grpc';
const SETUPS = ['gateway', 'client', 'nginx'];
const FAULTS = ['kill', 'stop', 'unavailable', 'rolling'];
const TANDEM_SETUPS = new Set(['gateway', 'client']);
const SLOW_MS = 250;

function die(msg) {
  console.error(`${TAG}: ${msg}`);
  process.exit(2);
}

function listArg(value, known, flag) {
  const list = String(value ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.filter((x) => !known.includes(x));
  if (!list.length || bad.length) die(`bad ${flag} "${value}" (known: ${known.join(', ')})`);
  return list;
}

function parseArgs(argv) {
  const opts = { quick: false, only: null, faults: FAULTS, rate: 300, build: true, keepTmp: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--keep-tmp') opts.keepTmp = true;
    else if (a === '--only') opts.only = listArg(argv[++i], SETUPS, '--only');
    else if (a === '--fault') opts.faults = listArg(argv[++i], FAULTS, '--fault');
    else if (a === '--rate') {
      opts.rate = Number(argv[++i]);
      if (!(opts.rate > 0 && opts.rate <= 3000)) die(`--rate needs a number from 1 to 3000, got ${argv[i]}`);
    } else if (a === '--help' || a === '-h') {
      console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 12).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else die(`unknown argument ${a} (known: --quick, --only, --fault, --rate N, --no-build, --keep-tmp)`);
  }
  opts.setups = SETUPS.filter((s) => !opts.only || opts.only.includes(s));
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
// Seconds: load before the fault, the fault window, load after it; rolling: pause between instances.
const P = opts.quick
  ? { warmS: 0.5, beforeS: 0.5, faultS: 1.5, afterS: 1, rollingGapS: 0.2 }
  : { warmS: 1, beforeS: 2, faultS: 4, afterS: 4, rollingGapS: 2 };
const STREAM = { rate: 5, ticks: opts.quick ? 10 : 40, intervalMs: 50, slackMs: 6000 };
const UNARY_TIMEOUT_MS = 5000;

const procs = createProcs({ tag: TAG, root });
let tmpRoot = null;
procs.installHandlers(() => { if (tmpRoot && !opts.keepTmp) rmSync(tmpRoot, { recursive: true, force: true }); });

// ---------------------------------------------------------------------------------------------
// Processes

/** The three instance slots of one run: port fixed, process and id change with each start. */
class Instances {
  constructor(dir, ports, registry) {
    Object.assign(this, { dir, ports, registry });
    this.slots = ports.map((port, i) => ({ port, gen: 0, id: null, proc: null, name: `i${i + 1}` }));
  }

  async start(i) {
    const s = this.slots[i];
    s.gen++;
    s.id = s.gen === 1 ? s.name : `${s.name}.g${s.gen}`;
    const args = [join(root, 'scripts', 'lib', 'grpc-drill-instance.js'), JSON.stringify({ port: s.port, id: s.id, registry: this.registry })];
    s.proc = procs.start(s.id, process.execPath, args, { dir: this.dir });
    const deadline = performance.now() + 15_000;
    while (performance.now() < deadline) {
      if (!procs.alive(s.proc)) throw new Error(`instance ${s.id} exited: ${tail(s.proc.errFile, 8)}`);
      if (readFileSync(s.proc.outFile, 'utf8').includes('"serving"')) {
        s.serveGrpc = readFileSync(s.proc.outFile, 'utf8').includes('"serveGrpc":true');
        return;
      }
      await sleep(25);
    }
    throw new Error(`instance ${s.id} not serving after 15 s`);
  }

  startAll() {
    return Promise.all(this.slots.map((_, i) => this.start(i)));
  }

  signal(i, sig) {
    procs.signalProc(this.slots[i].proc, sig);
  }

  async kill(i) {
    const p = this.slots[i].proc;
    procs.signalProc(p, 'SIGKILL');
    await Promise.race([p.exited, sleep(2000)]);
  }

  /** SIGTERM: the instance drains and exits; resolves with its exit code ('timeout' after 15 s). */
  async term(i) {
    const p = this.slots[i].proc;
    procs.signalProc(p, 'SIGTERM');
    const r = await Promise.race([p.exited, sleep(15_000).then(() => 'timeout')]);
    if (r === 'timeout') await procs.stop(p, { sig: 'SIGKILL' });
    return r === 'timeout' ? r : r.code ?? r.signal;
  }

  /** DrillControl.Set on the instance's own port (never through a proxy). */
  setUnavailable(i, unavailable) {
    const { DrillControl } = drillPackage();
    const c = new DrillControl(`127.0.0.1:${this.slots[i].port}`, grpc.credentials.createInsecure());
    return new Promise((resolve, reject) => {
      c.Set({ unavailable }, { deadline: Date.now() + 3000 }, (err) => {
        c.close();
        if (err) reject(new Error(`DrillControl.Set on ${this.slots[i].id}: ${err.message}`));
        else resolve();
      });
    });
  }

  stopAll() {
    return Promise.all(this.slots.map((s) => procs.stop(s.proc, { sig: 'SIGKILL' })));
  }
}

/**
 * The tandem gateway: in the path for the gateway setup; for the others only the registry the
 * instances register with (and tandem/client watches), with a plain service that carries nothing.
 */
function startGateway(dir, port, adminPort, inPath) {
  const file = join(dir, 'tandem.yaml');
  writeFileSync(file, inPath ? tandemGrpcConfig({ port, adminPort }) : registryOnlyConfig(port, adminPort));
  return procs.start('tandem', process.execPath, [join(root, 'bin', 'tandem.js'), 'gateway', '--config', file], { dir });
}

function registryOnlyConfig(port, adminPort) {
  return `listen: 127.0.0.1:${port}\nadmin: 127.0.0.1:${adminPort}\nlog: { level: warn }\nservices:\n  drill: {}\nroutes:\n  - prefix: /\n    service: drill\n`;
}

function startNginx(dir, port, endpoints) {
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, nginxGrpcConfig({ dir, port, endpoints }));
  const proc = procs.start('nginx', which('nginx'), ['-c', file, '-p', dir, '-e', join(dir, 'error.log')], { dir });
  proc.extraLog = join(dir, 'error.log');
  return proc;
}

// ---------------------------------------------------------------------------------------------
// Callers: { unary, watch, close }, the methods grpcLoad takes

function grpcJsCaller(port) {
  const { Drill } = drillPackage();
  const c = new Drill(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    unary: (req, o, cb) => c.Get(req, o, cb),
    watch: (req, o) => c.Watch(req, o),
    close: () => c.close(),
  };
}

let clientModule;
async function tandemClientCaller(adminUrl, now) {
  clientModule ??= await import(pathToFileURL(join(root, 'dist', 'src', 'client', 'index.js')).href);
  if (typeof clientModule.createGrpcClient !== 'function') return null;
  const { Drill } = drillPackage();
  // The client's endpoint state changes (ejected, back, draining…), on the drill's clock: what
  // explains failed calls the table alone does not.
  const transitions = [];
  const onTransition = (t) => transitions.push({ t: Math.round(now()), endpoint: t.endpoint, from: t.from, to: t.to, reason: t.reason });
  const c = clientModule.createGrpcClient('drill', Drill.service, { registry: adminUrl, onTransition });
  return {
    transitions,
    unary: (req, o, cb) => c.Get(req, o, cb),
    // Server streams through tandem/client: used when its Watch makes a grpc-js-like stream.
    watch: typeof c.Watch === 'function' ? (req, o) => c.Watch(req, o) : null,
    close: () => c.close(),
  };
}

/** Calls Get until every instance id in `ids` answered OK (all three in rotation), within `ms`. */
async function untilAllAnswer(caller, ids, ms) {
  const seen = new Set();
  const deadline = performance.now() + ms;
  let last = '';
  while (performance.now() < deadline) {
    const batch = Array.from({ length: 12 }, () => new Promise((resolve) => {
      caller.unary({ id: 'ready' }, { deadline: Date.now() + 2000 }, (err, reply) => {
        if (err) last = `${statusName(err.code)}: ${err.details}`;
        else seen.add(reply.instance);
        resolve();
      });
    }));
    await Promise.all(batch);
    if (ids.every((id) => seen.has(id))) return;
    await sleep(100);
  }
  throw new Error(`not every instance answered within ${ms / 1000} s (answered: ${[...seen].join(', ') || 'none'}; last error ${last || 'none'})`);
}

/** Whether the caller's Watch works (tandem/client may have unary methods only). */
async function watchWorks(caller) {
  if (!caller.watch) return false;
  return new Promise((resolve) => {
    let call;
    try {
      call = caller.watch({ id: 'probe', ticks: 1, intervalMs: 1 }, { deadline: Date.now() + 3000 });
    } catch {
      resolve(false);
      return;
    }
    call.on('data', () => {});
    call.on('error', () => resolve(false));
    call.on('status', (s) => resolve(s.code === grpc.status.OK));
  });
}

// ---------------------------------------------------------------------------------------------
// Faults: run beside the load on instance `seg.slot`; each notes its window (ms on the load's
// clock) in `seg`: faultAt when it hits, clearAt when it is over (the instance back or restarted)

const note = (ctx, seg, what) => seg.events.push({ t: Math.round(ctx.load.now()), what });

const RUN_FAULT = {
  async kill(ctx, seg) {
    const name = ctx.instances.slots[seg.slot].id;
    seg.faultAt = ctx.load.now();
    await ctx.instances.kill(seg.slot);
    note(ctx, seg, `SIGKILL ${name}`);
    await sleep(P.faultS * 1000 - (ctx.load.now() - seg.faultAt));
    await ctx.instances.start(seg.slot);
    seg.clearAt = ctx.load.now();
    note(ctx, seg, `${ctx.instances.slots[seg.slot].id} serving`);
  },
  async stop(ctx, seg) {
    const name = ctx.instances.slots[seg.slot].id;
    seg.faultAt = ctx.load.now();
    ctx.instances.signal(seg.slot, 'SIGSTOP');
    note(ctx, seg, `SIGSTOP ${name}`);
    await sleep(P.faultS * 1000);
    ctx.instances.signal(seg.slot, 'SIGCONT');
    seg.clearAt = ctx.load.now();
    note(ctx, seg, `SIGCONT ${name}`);
  },
  async unavailable(ctx, seg) {
    const name = ctx.instances.slots[seg.slot].id;
    seg.faultAt = ctx.load.now();
    await ctx.instances.setUnavailable(seg.slot, true);
    note(ctx, seg, `${name} answers UNAVAILABLE`);
    await sleep(P.faultS * 1000 - (ctx.load.now() - seg.faultAt));
    await ctx.instances.setUnavailable(seg.slot, false);
    seg.clearAt = ctx.load.now();
    note(ctx, seg, `${name} serves again`);
  },
  async rolling(ctx, seg) {
    seg.faultAt = ctx.load.now();
    for (let i = 0; i < 3; i++) {
      const old = ctx.instances.slots[i].id;
      note(ctx, seg, `SIGTERM ${old}`);
      const code = await ctx.instances.term(i);
      note(ctx, seg, `${old} exited (${code})`);
      if (code !== 0) seg.problems.push(`${old} exited with ${code} after SIGTERM`);
      await ctx.instances.start(i);
      note(ctx, seg, `${ctx.instances.slots[i].id} serving`);
      if (i < 2) await sleep(P.rollingGapS * 1000);
    }
    seg.clearAt = ctx.load.now();
    seg.slot = 2; // "back in rotation": the last one restarted
  },
};

// ---------------------------------------------------------------------------------------------
// One run: one setup, fresh processes, the faults in turn (one per run in the full profile)

const round1 = (n) => (n === null || n === undefined || !Number.isFinite(n) ? null : Math.round(n * 10) / 10);

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function countBy(items, key) {
  const out = {};
  for (const x of items) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}

async function runOne(setup, faults) {
  const dir = mkdtempSync(join(tmpRoot, `${setup}-${faults.join('-')}-`));
  chmodSync(dir, 0o755);
  const [p1, p2, p3, gwPort, adminPort, nginxPort] = await freePorts(6);
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const base = { setup, status: 'ok' };
  const instances = new Instances(dir, [p1, p2, p3], adminUrl);
  let gateway = null;
  let nginx = null;
  let caller = null;
  let results;
  try {
    gateway = startGateway(dir, gwPort, adminPort, setup === 'gateway');
    // The instances start beside the gateway: each registers once the registry answers.
    await Promise.all([
      waitUntilAnswering([[adminPort, '/readyz']], 20_000, () => (procs.alive(gateway) ? undefined : `gateway exited: ${tail(gateway.errFile, 10)}`)),
      instances.startAll(),
    ]);
    base.serveGrpc = instances.slots.every((s) => s.serveGrpc);
    if (setup === 'nginx') {
      nginx = startNginx(dir, nginxPort, instances.ports.map((p) => `127.0.0.1:${p}`));
      await sleep(300);
      if (!procs.alive(nginx)) throw new Error(`nginx exited: ${tail(nginx.errFile, 10)} ${tail(nginx.extraLog, 10)}`);
    }
    caller = setup === 'client' ? await tandemClientCaller(adminUrl, () => performance.now()) : grpcJsCaller(setup === 'nginx' ? nginxPort : gwPort);
    if (!caller) throw new Error('tandem/client has no createGrpcClient (build the branch with the gRPC client)');
    await untilAllAnswer(caller, instances.slots.map((s) => s.id), 15_000);
    const streams = await watchWorks(caller);
    base.streams = streams ? 'yes' : 'not supported by this caller';
    // Warm-up (discarded): JIT, connections, the balancer's latency estimates.
    const warm = grpcLoad({ unary: caller.unary, watch: null, rate: opts.rate, idPrefix: 'w', unaryTimeoutMs: 2000 });
    await sleep(P.warmS * 1000);
    await warm.stop();

    const load = grpcLoad({
      unary: caller.unary, watch: streams ? caller.watch : null, rate: opts.rate, idPrefix: 'm', unaryTimeoutMs: UNARY_TIMEOUT_MS,
      streamRate: STREAM.rate, streamTicks: STREAM.ticks, streamIntervalMs: STREAM.intervalMs, streamSlackMs: STREAM.slackMs,
    });
    const ctx = { load, instances };
    const segments = [];
    for (const [k, fault] of faults.entries()) {
      await sleep((k === 0 ? P.beforeS : P.afterS) * 1000);
      const seg = { fault, slot: k % 3, events: [], problems: [], faultAt: null, clearAt: null };
      segments.push(seg);
      await RUN_FAULT[fault](ctx, seg);
    }
    await sleep(P.afterS * 1000);
    const run = await load.stop();
    if (gateway && !procs.alive(gateway)) throw new Error(`the gateway died during the run: ${tail(gateway.errFile, 10)}`);
    if (nginx && !procs.alive(nginx)) throw new Error('nginx died during the run');
    results = segments.map((seg, k) => {
      const from = k === 0 ? -Infinity : seg.faultAt;
      const to = k + 1 < segments.length ? segments[k + 1].faultAt : Infinity;
      const r = { ...base, fault: seg.fault, ...analyse(run, seg, instances, from, to), events: seg.events };
      // On the load's clock (ms since its t0; negative: during start-up and warm-up).
      if (caller.transitions) r.transitions = caller.transitions.map((x) => ({ ...x, t: Math.round(x.t - load.state.t0), instance: instances.slots.find((sl) => x.endpoint.endsWith(`:${sl.port}`))?.name })).filter((x) => x.t >= from && x.t < to);
      if (seg.problems.length) r.problems = seg.problems;
      return r;
    });
  } catch (err) {
    const gatewayLog = gateway ? tail(gateway.errFile, 15) : undefined;
    results = faults.map((fault) => ({ ...base, fault, status: 'error', error: err.message, gatewayLog }));
  } finally {
    try { caller?.close(); } catch { /* closing a broken client */ }
    await procs.stop(nginx, { graceMs: 1000 });
    await instances.stopAll();
    await procs.stop(gateway, { graceMs: 1000 });
    if (!opts.keepTmp) rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

/**
 * The figures of one fault: unary calls scheduled in [from, to) and streams that ended in it
 * (a stream is cut, or hangs, when the fault hits it, whenever it started).
 */
function analyse(run, seg, instances, from, to) {
  const calls = run.calls.filter((c) => c.t >= from && c.t < to);
  const streams = run.streams.filter((s) => s.t + s.lat >= from && s.t + s.lat < to);
  const failed = calls.filter((c) => c.code !== grpc.status.OK);
  const lats = calls.map((c) => c.lat).sort((a, b) => a - b);
  const duringLats = calls.filter((c) => c.t >= seg.faultAt && c.t <= seg.clearAt).map((c) => c.lat).sort((a, b) => a - b);
  const bad = calls.filter((c) => c.t >= seg.faultAt && (c.code !== grpc.status.OK || c.lat > SLOW_MS));
  const affectedMs = bad.length ? Math.max(0, Math.max(...bad.map((c) => c.t + c.lat)) - seg.faultAt) : 0;
  const id = instances.slots[seg.slot].id;
  const back = calls.filter((c) => c.t >= seg.clearAt && c.code === grpc.status.OK && c.instance === id).map((c) => c.t + c.lat - seg.clearAt);
  const hung = (s) => s.code === grpc.status.DEADLINE_EXCEEDED || s.code === -1;
  const failedEarly = streams.filter((s) => s.code !== grpc.status.OK && s.messages === 0 && !hung(s));
  const cut = streams.filter((s) => s.code !== grpc.status.OK && s.messages > 0 && !hung(s));
  return {
    instance: seg.fault === 'rolling' ? 'all' : instances.slots[seg.slot].name,
    calls: calls.length,
    failed: failed.length,
    failedBy: countBy(failed, (c) => statusName(c.code)),
    failedDetails: [...new Set(failed.map((c) => `${statusName(c.code)}: ${c.details}`))].slice(0, 6),
    p50: round1(pct(lats, 50)),
    p99: round1(pct(lats, 99)),
    max: round1(lats[lats.length - 1]),
    p99DuringFault: round1(pct(duringLats, 99)),
    faultWindowMs: [Math.round(seg.faultAt), Math.round(seg.clearAt)],
    affectedMs: Math.round(affectedMs),
    backInRotationMs: back.length ? Math.round(Math.min(...back)) : null,
    perInstance: countBy(calls.filter((c) => c.code === grpc.status.OK), (c) => c.instance),
    streamsEnded: streams.length,
    streamsOk: streams.filter((s) => s.code === grpc.status.OK).length,
    streamsFailedBeforeMessages: failedEarly.length,
    streamsFailedBeforeMessagesBy: countBy(failedEarly, (s) => statusName(s.code)),
    streamsCut: cut.length,
    streamsCutBy: countBy(cut, (s) => statusName(s.code)),
    streamsCutDetails: [...new Set(cut.map((s) => `${statusName(s.code)}: ${s.details}`))].slice(0, 4),
    streamsHung: streams.filter(hung).length,
    streamsStalled: streams.filter((s) => s.maxGapMs > 1000).length,
    maxSendLagMs: round1(run.maxSendLagMs),
    hardStopped: run.hardStopped,
    timeline: timeline(calls),
  };
}

/** Per 500 ms of scheduled send time: calls, failed, p50 and max latency (the JSON's, to see when a fault hurt). */
function timeline(calls) {
  const buckets = new Map();
  for (const c of calls) {
    const b = Math.floor(c.t / 500) * 500;
    if (!buckets.has(b)) buckets.set(b, []);
    buckets.get(b).push(c);
  }
  return [...buckets].sort((x, y) => x[0] - y[0]).map(([t, cs]) => {
    const lats = cs.map((c) => c.lat).sort((x, y) => x - y);
    return { t, calls: cs.length, failed: cs.filter((c) => c.code !== grpc.status.OK).length, p50: round1(pct(lats, 50)), max: round1(lats[lats.length - 1]) };
  });
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n) => (n === null || n === undefined ? '—' : n >= 100 ? String(Math.round(n)) : n.toFixed(1));
const by = (o) => Object.entries(o ?? {}).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(', ');

function verdict(r) {
  if (!TANDEM_SETUPS.has(r.setup)) return '';
  const bad = [];
  if (r.failed > 0) bad.push('failed calls');
  if (r.streamsHung > 0) bad.push('hung streams');
  if (Object.keys(r.streamsCutBy).some((k) => k !== 'UNAVAILABLE')) bad.push('a cut stream not UNAVAILABLE');
  if (r.streamsFailedBeforeMessages > 0) bad.push('streams failed before a message');
  if (r.fault === 'stop' && r.p99DuringFault > SLOW_MS) bad.push(`p99 in the freeze > ${SLOW_MS} ms`);
  return bad.length ? `**${bad.join('; ')}**` : 'ok';
}

function markdownTable(results) {
  const lines = [
    '| Fault | Setup | Calls | Failed | Failed by status | p50 (ms) | p99 (ms) | p99 in fault (ms) | Streams ended | Failed before a message | Cut (how they ended) | Hung | Affected for (ms) | Back in rotation (ms) | Verdict |',
    '|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.status !== 'ok') {
      lines.push(`| ${r.fault} | ${r.setup} | **error** | | | | | | | | | | | | ${oneLine(r.error)} |`);
      continue;
    }
    const streams = r.streams === 'yes';
    lines.push(`| ${r.fault} | ${r.setup} | ${r.calls} | ${r.failed} | ${by(r.failedBy) || '—'} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.p99DuringFault)} | `
      + `${streams ? r.streamsEnded : 'n/a'} | ${streams ? r.streamsFailedBeforeMessages : '—'} | ${streams ? `${r.streamsCut}${r.streamsCut ? ` (${by(r.streamsCutBy)})` : ''}` : '—'} | `
      + `${streams ? r.streamsHung : '—'} | ${r.affectedMs} | ${r.backInRotationMs ?? 'never'} | ${verdict(r)} |`);
  }
  return lines.join('\n');
}

function oneLine(s) {
  return String(s ?? '').replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 200);
}

function buildMarkdown(meta, results) {
  const m = meta.machine;
  const out = [
    `# tandem gRPC drill — ${meta.date}`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores, Linux ${m.kernel}; Node ${m.node}; @grpc/grpc-js ${meta.versions.grpcJs ?? '?'}; nginx ${meta.versions.nginx ?? '—'}`
      + `${m.gitCommit ? `; tandem @ ${m.gitCommit}` : ''}; load average at start ${m.loadavg.join(' ')}.`,
    '',
    `Profile: ${meta.params.quick ? 'quick' : 'full'} — open-loop ${meta.params.rate} unary calls/s and ${STREAM.rate} Watch streams/s `
      + `(${STREAM.ticks} messages ${STREAM.intervalMs} ms apart); ${P.beforeS} s before the fault, a ${P.faultS} s fault window, ${P.afterS} s after; `
      + `unary deadline ${UNARY_TIMEOUT_MS / 1000} s, a stream hangs when not ended ${STREAM.slackMs / 1000} s after its last message was due. Total ${meta.totalSeconds} s.`,
    '',
    markdownTable(results),
    '',
    `Latencies from each call's scheduled send time. Largest send lag of the load generator: ${fmt(Math.max(0, ...results.map((r) => r.maxSendLagMs ?? 0)))} ms.`,
  ];
  const details = results.filter((r) => r.status === 'ok' && (r.failedDetails?.length || r.streamsCutDetails?.length));
  if (details.length) {
    out.push('', 'What callers were told:', '');
    for (const r of details) out.push(`- ${r.fault} / ${r.setup}: ${[...r.failedDetails, ...r.streamsCutDetails.map((d) => `stream ${d}`)].map(oneLine).join('; ')}`);
  }
  for (const r of results.filter((x) => x.status !== 'ok' && x.gatewayLog)) {
    out.push('', `### ${r.setup} / ${r.fault}: ${oneLine(r.error)}`, '', '```', r.gatewayLog, '```');
  }
  return `${out.join('\n')}\n`;
}

function machineInfo() {
  const g = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    kernel: os.release(),
    node: process.version,
    gitCommit: g.status === 0 ? g.stdout.trim() : null,
    loadavg: os.loadavg().map((n) => Math.round(n * 100) / 100),
  };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const startedAt = Date.now();
  if (opts.setups.includes('nginx') && ensureTools(['nginx'], TAG).length) {
    console.log(`${TAG}: nginx is not installed (apt-get install -y nginx); leaving it out`);
    opts.setups = opts.setups.filter((s) => s !== 'nginx');
  }
  if (opts.build) {
    const t = Date.now();
    const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8', timeout: 180_000 });
    console.log(`${TAG}: npm run build ${r.status === 0 ? 'ok' : `exited ${r.status}`} (${Date.now() - t} ms)`);
  }
  if (!existsSync(join(root, 'dist', 'src', 'node', 'index.js'))) die('run `npm run build` first (the gateway and serveGrpc run from dist/)');
  const versions = {
    nginx: which('nginx') ? versionOf(which('nginx'), ['-v'], /nginx\/(\S+)/) : null,
    grpcJs: JSON.parse(readFileSync(join(root, 'node_modules', '@grpc', 'grpc-js', 'package.json'), 'utf8')).version,
  };
  tmpRoot = mkdtempSync(join(os.tmpdir(), 'tandem-drill-grpc-'));
  chmodSync(tmpRoot, 0o755);
  const machine = machineInfo();
  console.log(`${TAG}: ${opts.quick ? 'quick' : 'full'} profile: ${opts.rate} calls/s + ${STREAM.rate} streams/s; fault window ${P.faultS} s; `
    + `setups ${opts.setups.join(', ')}; faults ${opts.faults.join(', ')}; load average ${machine.loadavg.join(' ')}`);
  const results = [];
  // Full profile: fresh processes for every fault; quick: every fault in turn on one set per setup.
  const plan = opts.quick ? opts.setups.map((setup) => [setup, opts.faults]) : opts.faults.flatMap((fault) => opts.setups.map((setup) => [setup, [fault]]));
  for (const [setup, faults] of plan) {
    const t = Date.now();
    const rows = await runOne(setup, faults);
    if (procs.isCleaningUp()) return new Promise(() => {});
    for (const r of rows) {
      r.seconds = Math.round((Date.now() - t) / 100) / 10;
      results.push(r);
      process.stdout.write(`${TAG}: ${r.fault.padEnd(11)} ${setup.padEnd(7)} `);
      if (r.status !== 'ok') console.log(`ERROR ${r.error}`);
      else {
        console.log(`calls ${r.calls}, failed ${r.failed}${r.failed ? ` [${by(r.failedBy)}]` : ''}, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, in fault ${fmt(r.p99DuringFault)} ms; `
          + (r.streams === 'yes' ? `streams ${r.streamsEnded}, failed early ${r.streamsFailedBeforeMessages}, cut ${r.streamsCut}${r.streamsCut ? ` [${by(r.streamsCutBy)}]` : ''}, hung ${r.streamsHung}; ` : 'no streams; ')
          + `affected ${r.affectedMs} ms, back ${r.backInRotationMs ?? 'never'} ms (run ${r.seconds} s)`);
      }
    }
  }
  results.sort((a, b) => FAULTS.indexOf(a.fault) - FAULTS.indexOf(b.fault) || SETUPS.indexOf(a.setup) - SETUPS.indexOf(b.setup));
  const meta = {
    date: new Date().toISOString(), machine, versions, totalSeconds: Math.round((Date.now() - startedAt) / 1000),
    params: { quick: opts.quick, rate: opts.rate, setups: opts.setups, faults: opts.faults, phases: P, stream: STREAM, unaryTimeoutMs: UNARY_TIMEOUT_MS },
    configs: { tandem: tandemGrpcConfig({ port: 8080, adminPort: 9901 }), nginx: nginxGrpcConfig({ dir: '$TMP', port: 8080, endpoints: ['127.0.0.1:7001', '127.0.0.1:7002', '127.0.0.1:7003'] }) },
  };
  const md = buildMarkdown(meta, results);
  console.log(`\n${md}`);
  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const base = opts.quick ? 'drill-grpc-quick-latest' : 'drill-grpc-latest';
  writeFileSync(join(outDir, `${base}.md`), md);
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify({ meta, results, markdown: md }, null, 2)}\n`);
  console.log(`${TAG}: wrote bench/results/${base}.{md,json} (${meta.totalSeconds} s total)`);
  const tandemRows = results.filter((r) => TANDEM_SETUPS.has(r.setup));
  const broken = results.some((r) => r.status !== 'ok');
  const violated = tandemRows.some((r) => r.status === 'ok' && (r.failed > 0 || r.streamsHung > 0 || Object.keys(r.streamsCutBy).some((k) => k !== 'UNAVAILABLE')));
  // Closed clients can keep the loop alive for a while (reconnect timers of a registry watch
  // whose gateway is gone): once runDrillMain has cleaned up, do not wait for them.
  setTimeout(() => process.exit(), 1500).unref();
  return broken || violated ? 1 : 0;
}

runDrillMain(main, { tag: TAG, procs, tmpDir: () => tmpRoot, keepTmp: () => opts.keepTmp });
