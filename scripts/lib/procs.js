// Child-process and tooling helpers for the drill (same approach as scripts/bench.js: every child
// is its own process group, output goes to files in a temp dir, everything is killed on exit).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function createProcs({ tag, root }) {
  const children = new Set();
  let cleaningUp = false;

  const alive = (proc) => proc.child.exitCode === null && proc.child.signalCode === null && !proc.spawnError;

  function signalProc(proc, sig) {
    if (!proc?.child.pid) return;
    try {
      process.kill(-proc.child.pid, sig);
    } catch {
      try { process.kill(proc.child.pid, sig); } catch { /* already gone */ }
    }
  }

  function killAllSync(sig) {
    for (const p of children) if (alive(p)) signalProc(p, sig);
  }

  /** Spawn a long-running child with stdout/stderr appended to files in `dir`. */
  function start(name, cmd, args, { dir, cwd = root, env = process.env } = {}) {
    if (cleaningUp) throw new Error('shutting down');
    const outFile = join(dir, `${name}.stdout.log`);
    const errFile = join(dir, `${name}.stderr.log`);
    const outFd = openSync(outFile, 'a');
    const errFd = openSync(errFile, 'a');
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', outFd, errFd], detached: true });
    closeSync(outFd);
    closeSync(errFd);
    const proc = { name, cmd, args, child, outFile, errFile, spawnError: null };
    proc.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', (err) => { proc.spawnError = err; resolve({ code: null, signal: null, error: err }); });
    });
    children.add(proc);
    return proc;
  }

  /** Signal (SIGTERM by default), wait up to graceMs, then SIGKILL the whole group. */
  async function stop(proc, { graceMs = 3000, sig = 'SIGTERM' } = {}) {
    if (!proc) return;
    if (alive(proc)) {
      if (sig !== 'SIGKILL') signalProc(proc, 'SIGCONT'); // a stopped process cannot act on SIGTERM
      signalProc(proc, sig);
      if (await exitedWithin(proc, graceMs) === 'timeout') {
        signalProc(proc, 'SIGKILL');
        await exitedWithin(proc, 1000);
      }
    }
    try { process.kill(-proc.child.pid, 'SIGKILL'); } catch { /* group gone */ }
    children.delete(proc);
  }

  function onFatal(code, why, cleanup) {
    if (cleaningUp) return;
    cleaningUp = true;
    if (why) console.error(`\n${tag}: ${why}; stopping all children`);
    killAllSync('SIGCONT');
    killAllSync('SIGTERM');
    setTimeout(() => {
      killAllSync('SIGKILL');
      try { cleanup?.(); } catch { /* ignore */ }
      process.exit(code);
    }, 500);
  }

  function installHandlers(cleanup) {
    process.on('SIGINT', () => onFatal(130, 'interrupted', cleanup));
    process.on('SIGTERM', () => onFatal(143, 'terminated', cleanup));
    process.on('SIGHUP', () => onFatal(129, 'hangup', cleanup));
    process.on('uncaughtException', (e) => { console.error(e); onFatal(1, 'uncaught exception', cleanup); });
    process.on('unhandledRejection', (e) => { console.error(e); onFatal(1, 'unhandled rejection', cleanup); });
    process.on('exit', () => { killAllSync('SIGCONT'); killAllSync('SIGKILL'); });
  }

  return { alive, signalProc, killAllSync, start, stop, installHandlers, fatal: onFatal, isCleaningUp: () => cleaningUp, children };
}

/** Resolves 'exited', or 'timeout' after `ms` — its timer cleared, so that it keeps no process alive. */
async function exitedWithin(proc, ms) {
  let timer;
  const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), ms); });
  try {
    return await Promise.race([proc.exited.then(() => 'exited'), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `n` distinct free ports on 127.0.0.1, for a server told its port (a broker, etcd, a proxy):
 * held together while picked, then released for it. They are taken below the kernel's
 * ephemeral range (ip_local_port_range), which it never hands out for a port-0 listener or an
 * outgoing connection's local end: a port found free there stays free until its server binds
 * it, however many connections the tests open meanwhile. (A port from listen(0), released, was
 * once taken as a connection's local port in the second before a Kafka broker bound it.) Where
 * that range leaves no room, ports come from listen(0).
 */
export async function freePorts(n) {
  const servers = [];
  const low = PORT_FLOOR;
  const high = ephemeralFloor();
  try {
    for (let tries = 0; servers.length < n; tries++) {
      const port = high - low > 1000 && tries < 200 ? low + Math.floor(Math.random() * (high - low)) : 0;
      const s = await listening(port);
      if (s !== undefined) servers.push(s);
      else if (port === 0) throw new Error('freePorts: no port free on 127.0.0.1');
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** Ports below this are left to well-known services (RabbitMQ's 15672 and 25672 among them, below it too). */
const PORT_FLOOR = 26000;

/** The first port of the kernel's ephemeral range (32768 when it cannot be read). */
function ephemeralFloor() {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

/** A server listening on `port` of 127.0.0.1, or undefined when the port is taken. */
function listening(port) {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', (err) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(undefined) : reject(err)));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve(s));
  });
}

/** One request to 127.0.0.1 without keep-alive; resolves {status, body} (status 0 on error). */
export function httpRequest(port, path = '/', { method = 'GET', headers = {}, timeoutMs = 1000 } = {}) {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/**
 * Polls until every [port, path] check on 127.0.0.1 answers 200. `died()` returns why the
 * process being waited for is gone (then this fails at once), or undefined while it runs.
 */
export async function waitUntilAnswering(checks, timeoutMs, died = () => undefined) {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const gone = died();
    if (gone !== undefined) throw new Error(gone);
    let ok = true;
    for (const [port, path] of checks) {
      const { status } = await httpRequest(port, path);
      if (status !== 200) {
        ok = false;
        last = `GET http://127.0.0.1:${port}${path} -> ${status || 'connection failed'}`;
        break;
      }
    }
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`not ready after ${timeoutMs / 1000}s (${last})`);
}

export function which(bin) {
  const r = spawnSync('which', [bin], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin']) {
    if (existsSync(join(dir, bin))) return join(dir, bin);
  }
  return null;
}

/**
 * Installs missing tools with apt-get when root; returns the ones still missing. `packages`
 * names the Debian package of a tool whose name is not its package's (`{ nft: 'nftables' }`).
 */
export function ensureTools(tools, tag, packages = {}) {
  const missing = tools.filter((t) => !which(t));
  if (missing.length === 0) return [];
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return missing;
  const names = missing.map((t) => packages[t] ?? t).join(' ');
  console.log(`${tag}: installing missing tools: ${names}`);
  spawnSync('sh', ['-c', `apt-get update && apt-get install -y ${names}`], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeout: 300_000,
  });
  return tools.filter((t) => !which(t));
}

export function versionOf(cmd, args, re) {
  try {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
    const m = re.exec(`${r.stdout ?? ''}\n${r.stderr ?? ''}`);
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

export function tail(file, lines = 25) {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text ? text.split('\n').slice(-lines).join('\n') : '';
  } catch {
    return '';
  }
}

/**
 * A positive number from environment variable `name` (a trailing "s" allowed: "5s"), or `dflt`
 * when unset; anything else calls `fail` with a message naming the variable.
 */
export function positiveEnv(name, dflt, fail) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(String(raw).replace(/s$/, ''));
  if (!Number.isFinite(n) || n <= 0) fail(`${name} must be a positive number, got ${raw}`);
  return n;
}

/**
 * Runs a drill's `main()` (resolving to its exit code) and then stops every child and removes
 * the drill's temp dir — unless `keepTmp()` says keep it. `tmpDir()` is read at the end: drills
 * make it once they start.
 */
export function runDrillMain(main, { tag, procs, tmpDir, keepTmp }) {
  main()
    .then((code) => {
      procs.killAllSync('SIGKILL');
      const dir = tmpDir();
      if (dir && !keepTmp()) rmSync(dir, { recursive: true, force: true });
      else if (dir) console.log(`${tag}: kept ${dir}`);
      process.exitCode = code;
    })
    .catch((e) => {
      console.error(e);
      procs.killAllSync('SIGKILL');
      process.exit(1);
    });
}
