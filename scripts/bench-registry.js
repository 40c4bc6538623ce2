#!/usr/bin/env node
// Registry scale benchmark: can one gateway's embedded registry hold 10 000 instances that
// heartbeat every second, on < 25% of one core, while a watcher sees a change in < 100 ms?
//
// Usage: npm run bench:registry [-- --instances N --workers W --window S --per-request --no-build]
//   defaults: 10 000 instances, 2 load-generator processes, a 20 s measured window.
//   --per-request: heartbeats as one HTTP request each (POST …/heartbeat on the instance's own
//   keep-alive connection) instead of the keep-alive stream, for comparison.
//
// What it does, honestly simulating independent instances:
// - starts `tandem gateway` (log level warn) and W generator processes (this script with
//   --worker), each simulating N/W instances;
// - every instance registers with its own POST (its own id, address, lease; 100 services of
//   N/100 instances), from its own loopback peer address (127.0.0.2 … 127.0.0.21, so the
//   per-peer limit is not lifted), asks a 3 s TTL (so a lost heartbeat shows as an expiry
//   within the window), then opens its own keep-alive connection (POST …/keepalive, one TCP
//   connection per instance) and writes one heartbeat a second, phases spread over the second;
// - once all are registered and beating, measures the gateway's CPU time (utime + stime from
//   /proc/<pid>/stat) over the window, and checks at the end that all N are still registered;
// - meanwhile a watcher (in this process) streams a 100-instance service's snapshots, and every
//   second an extra instance is registered or deregistered there: the latency is from sending
//   that request to the snapshot arriving at the watcher (so it includes the request itself).
// Bounded: everything is killed 60 s after the build, whatever happens.
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { freePorts } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};


/** The admin listener's secret (docs/security.md): the gateway and the workers inherit it. */
process.env.TANDEM_TOKEN ||= randomBytes(24).toString('base64url');
const auth = () => ({ authorization: `Bearer ${process.env.TANDEM_TOKEN}` });

async function main() {
  const instances = opt('instances', 10_000);
  const workers = opt('workers', 2);
  const windowS = opt('window', 20);
  const mode = args.includes('--per-request') ? 'request' : 'stream';
  const services = 100;
  if (!args.includes('--no-build')) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
    if (b.status !== 0) process.exit(1);
  }
  const dir = mkdtempSync(join(os.tmpdir(), 'tandem-bench-registry-'));
  const configFile = join(dir, 'gateway.json');
  const [adminPort] = await freePorts(1);
  writeFileSync(configFile, JSON.stringify({
    listen: '127.0.0.1:0', admin: `127.0.0.1:${adminPort}`, log: { level: 'warn' },
    services: { routed: {} }, routes: [{ prefix: '/', service: 'routed' }],
    registry: { maxInstances: Math.max(50_000, instances + 100) },
  }));
  const children = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('SIGINT', () => { cleanup(); process.exit(130); });
  process.on('SIGTERM', () => { cleanup(); process.exit(143); });
  process.on('uncaughtException', (e) => { console.error(e); cleanup(); process.exit(1); });
  process.on('unhandledRejection', (e) => { console.error(e); cleanup(); process.exit(1); });
  const hardStop = setTimeout(() => { console.error('bench-registry: 60 s limit reached; stopping'); cleanup(); process.exit(1); }, 60_000);

  // Fixed ports, so the gateway can log at warn: the registration burst is not log lines.
  const gw = spawn(process.execPath, [join(root, 'bin', 'tandem.js'), 'gateway', '--config', configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(gw);
  const admin = `127.0.0.1:${adminPort}`;
  const up = Date.now();
  for (;;) {
    if (gw.exitCode !== null) throw new Error(`gateway exited with ${gw.exitCode}`);
    try {
      await getJson(admin, '/registry/v1/services');
      break;
    } catch {
      if (Date.now() - up > 10_000) throw new Error('the gateway did not answer within 10 s');
      await sleep(50);
    }
  }
  gw.stdout.resume();
  console.log(`gateway pid ${gw.pid}, admin ${admin}; ${instances} instances in ${services} services from ${workers} generator processes`);

  const per = Math.ceil(instances / workers);
  const ready = [];
  for (let w = 0; w < workers; w++) {
    const count = Math.min(per, instances - w * per);
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--worker', JSON.stringify({ admin, from: w * per, count, services, mode })], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    ready.push(new Promise((resolve, reject) => {
      const rl = createInterface({ input: child.stdout });
      rl.on('line', (line) => {
        const l = JSON.parse(line);
        if (l.msg === 'beating') resolve({ child, ...l });
        if (l.msg === 'stats') child.stats = l;
      });
      child.once('exit', (code) => reject(new Error(`generator ${w} exited with ${code}`)));
    }));
  }
  const t0 = Date.now();
  const gens = await Promise.all(ready);
  const registerS = (Date.now() - t0) / 1000;
  const held = (await getJson(admin, '/registry/v1/services')).instances;
  console.log(`all registered and beating after ${registerS.toFixed(1)} s; the registry holds ${held}`);

  // Watcher on a 100-instance service; a probe instance joins and leaves every second.
  const watched = 'svc-0';
  const watcher = watch(admin, watched);
  await watcher.first;
  await sleep(2000); // let the registration burst settle
  const cpu0 = cpuOf(gw.pid);
  const gcpu0 = gens.map((g) => cpuOf(g.child.pid));
  const w0 = Date.now();
  const latencies = [];
  let lease;
  for (let i = 0; Date.now() - w0 < windowS * 1000; i++) {
    const started = performance.now();
    const seen = lease === undefined
      ? watcher.next((s) => s.instances.some((x) => x.id === 'probe'))
      : watcher.next((s) => !s.instances.some((x) => x.id === 'probe'));
    if (lease === undefined) {
      const r = await postJson(admin, '/registry/v1/instances', { service: watched, id: 'probe', address: '127.0.0.1:9' });
      lease = r.lease.id;
    } else {
      await call(admin, 'DELETE', `/registry/v1/leases/${lease}`);
      lease = undefined;
    }
    await seen;
    latencies.push(performance.now() - started);
    await sleep(1000 - ((Date.now() - w0) % 1000));
  }
  const elapsed = (Date.now() - w0) / 1000;
  const cpu1 = cpuOf(gw.pid);
  const gcpu1 = gens.map((g) => cpuOf(g.child.pid));
  const after = (await getJson(admin, '/registry/v1/services')).instances - (lease ? 1 : 0);
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  for (const g of gens) g.child.kill('SIGUSR2');
  await sleep(300);
  const beats = gens.reduce((n, g) => n + (g.child.stats?.beats ?? 0), 0);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  const gatewayCore = (cpu1 - cpu0) / elapsed;
  const result = {
    heartbeat: mode === 'stream' ? 'keep-alive stream (a chunk per beat)' : 'one HTTP request per beat',
    instances, services, workers, windowSeconds: Math.round(elapsed * 10) / 10,
    registeredAfterSeconds: registerS,
    stillRegisteredAtEnd: after,
    gatewayCpuShareOfOneCore: Math.round(gatewayCore * 1000) / 10,
    gatewayCpuMicrosPerHeartbeat: Math.round(((cpu1 - cpu0) * 1e6) / (instances * elapsed) * 10) / 10,
    generatorCpuShareOfOneCore: gcpu1.map((c, i) => Math.round(((c - gcpu0[i]) / elapsed) * 1000) / 10),
    heartbeatsSentTotal: beats,
    gatewayRssMiB: Math.round(rss),
    watchLatencyMs: { samples: latencies.length, p50: round(pct(0.5)), p90: round(pct(0.9)), max: round(latencies.at(-1)) },
    node: process.version,
    cpus: os.cpus().length,
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
  console.log(JSON.stringify(result, null, 2));
  const pass = gatewayCore < 0.25 && after === instances && result.watchLatencyMs.max < 100;
  console.log(`\n| instances | heartbeats/s | gateway CPU (% of one core) | CPU per heartbeat | gateway RSS | still registered | watch latency p50 / max |`);
  console.log(`|---|---|---|---|---|---|---|`);
  console.log(`| ${instances} | ${instances} | ${result.gatewayCpuShareOfOneCore} % | ${result.gatewayCpuMicrosPerHeartbeat} µs | ${result.gatewayRssMiB} MiB | ${after} | ${result.watchLatencyMs.p50} / ${result.watchLatencyMs.max} ms |`);
  console.log(`\ntargets (< 25 % of a core, all ${instances} kept, watch < 100 ms): ${pass ? 'met' : 'NOT met'}`);
  clearTimeout(hardStop);
  watcher.close();
  cleanup();
  process.exit(pass ? 0 : 1);
}

function round(x) {
  return Math.round(x * 10) / 10;
}

/** utime + stime of a process, in seconds. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100; // USER_HZ is 100 on Linux
}

function split(admin) {
  const i = admin.lastIndexOf(':');
  return { host: admin.slice(0, i), port: Number(admin.slice(i + 1)) };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function call(admin, method, path, body, { localAddress } = {}) {
  const { host, port } = split(admin);
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request({ host, port, method, path, agent: localAddress ? false : agent, localAddress, headers: { ...auth(), ...(method === 'GET' ? {} : { 'content-type': 'application/json', 'content-length': payload?.length ?? 0 }) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => (res.statusCode < 300 ? resolve(text ? JSON.parse(text) : undefined) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(payload);
  });
}
const getJson = (admin, path) => call(admin, 'GET', path);
const postJson = (admin, path, body, o) => call(admin, 'POST', path, body, o);

function watch(admin, service) {
  const { host, port } = split(admin);
  let latest;
  const waiters = new Set();
  let resolveFirst;
  const first = new Promise((r) => { resolveFirst = r; });
  const req = http.request({ host, port, path: `/registry/v1/services/${service}/watch`, agent: false, headers: auth() }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        latest = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        resolveFirst();
        for (const w of [...waiters]) w();
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return {
    first,
    next: (pred) => new Promise((resolve) => {
      const check = () => {
        if (latest && pred(latest)) {
          waiters.delete(check);
          resolve(latest);
        }
      };
      waiters.add(check);
    }),
    close: () => req.destroy(),
  };
}

/** A load generator: `count` independent instances, each with its own lease and connection. */
async function worker({ admin, from, count, services, mode }) {
  const { host, port } = split(admin);
  const peers = 20;
  const streams = [];
  let beats = 0;
  process.on('SIGUSR2', () => {
    process.stdout.write(`${JSON.stringify({ msg: 'stats', beats })}\n`);
  });
  // Like a real instance: register, open its own keep-alive connection, beat every second
  // (phase spread over the second). 64 instances start at a time.
  const startOne = async (i) => {
    const n = from + i;
    const localAddress = `127.0.0.${2 + (n % peers)}`;
    const r = await postJson(admin, '/registry/v1/instances', {
      service: `svc-${n % services}`, id: `inst-${n}`, address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}:8080`, ttl: 3000,
    }, { localAddress });
    if (mode === 'request') {
      // The comparison: one HTTP request per heartbeat, each instance on its own keep-alive connection.
      const own = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const path = `/registry/v1/leases/${r.lease.id}/heartbeat`;
      setTimeout(() => {
        setInterval(() => {
          const hb = http.request({ host, port, method: 'POST', path, agent: own, localAddress, headers: { ...auth(), 'content-type': 'application/json', 'content-length': 0 } }, (res) => res.resume());
          hb.on('error', (e) => { process.stderr.write(`heartbeat ${n}: ${e.message}\n`); });
          hb.end();
          beats++;
        }, 1000);
      }, Math.floor(Math.random() * 1000));
      return;
    }
    const req = http.request({ host, port, method: 'POST', path: `/registry/v1/leases/${r.lease.id}/keepalive`, agent: false, localAddress, headers: { ...auth(), 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' } });
    req.on('error', (e) => { process.stderr.write(`keepalive ${n}: ${e.message}\n`); });
    req.on('response', (res) => res.resume());
    req.flushHeaders();
    streams.push(req);
    setTimeout(() => {
      setInterval(() => { req.write('\n'); beats++; }, 1000);
    }, Math.floor(Math.random() * 1000));
  };
  let next = 0;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (next < count) await startOne(next++);
  }));
  await sleep(1100);
  process.stdout.write(`${JSON.stringify({ msg: 'beating', count })}\n`);
}

if (args[0] === '--worker') await worker(JSON.parse(args[1]));
else await main();
