// A private RabbitMQ node for drills (scripts/drill-events.js, the shop's drill): one that a
// drill may stop, kill and start again, never the machine's shared broker.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePorts, sleep } from './procs.js';

// The server script itself, not the /usr/sbin wrapper: that one switches to the rabbitmq user
// (su), which could read neither our temp dir nor our cookie.
const RABBITMQ_SERVER = process.env.TANDEM_RABBITMQ_SERVER ?? '/usr/lib/rabbitmq/bin/rabbitmq-server';

/** Every private node's temp dir → the pid of its rabbitmq-server script while it runs (the node is its child). */
const nodes = new Map();
// A drill that exits early (an error, Ctrl-C) would leave the Erlang VM running: kill each
// node's tree and remove its dir.
process.on('exit', () => {
  for (const [dir, pid] of nodes) {
    if (pid) killTree(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  nodes.clear();
});

/**
 * A private RabbitMQ node: its own node name, AMQP and distribution ports on 127.0.0.1, and
 * data (mnesia, quorum logs), logs, config, plugins file and Erlang cookie (HOME) in a temp dir.
 * The machine's /etc/rabbitmq/rabbitmq-env.conf (which names the shared node) is replaced by one
 * of our own. `-start_epmd false`: it registers with the machine's epmd and never starts one, so
 * nothing outlives it. stop() and start() keep the port, node name and data dir: a restart.
 */
export async function privateRabbit() {
  const rand = randomBytes(3).toString('hex');
  const dir = mkdtempSync(join(os.tmpdir(), 'tandem-drill-rabbit-'));
  nodes.set(dir, null);
  const [port, distPort] = await freePorts(2);
  const node = `tandem-drill-${rand}@localhost`;
  const home = join(dir, 'home');
  mkdirSync(home);
  mkdirSync(join(dir, 'mnesia'));
  mkdirSync(join(dir, 'log'));
  const cookie = join(home, '.erlang.cookie');
  writeFileSync(cookie, randomBytes(16).toString('hex').toUpperCase(), { mode: 0o400 });
  writeFileSync(join(dir, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
  writeFileSync(join(dir, 'rabbitmq.conf'), `listeners.tcp.1 = 127.0.0.1:${port}\nloopback_users.guest = true\n`);
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('RABBITMQ_') || k === 'NOTIFY_SOCKET' || k === 'ERL_FLAGS') delete env[k];
  Object.assign(env, {
    HOME: home,
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    RABBITMQ_NODENAME: node,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
    ERL_EPMD_ADDRESS: '127.0.0.1',
  });
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const outFile = join(dir, 'server.out');
  let proc = null;
  const amqplib = (await import('amqplib')).default;

  async function start(timeoutMs = 60_000) {
    const fd = openSync(outFile, 'a');
    // Not detached: the node stays in the drill's process group, so a test that kills the
    // drill's group (it hung) takes the node with it.
    const child = spawn(RABBITMQ_SERVER, [], { cwd: dir, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    let exited = null;
    const gone = new Promise((resolve) => {
      child.once('exit', (code, signal) => { exited = `exited (${code ?? signal})`; resolve(); });
      child.once('error', (err) => { exited = `could not be started (${err.message})`; resolve(); });
    });
    nodes.set(dir, child.pid);
    proc = { child, gone };
    const t = Date.now();
    for (;;) {
      if (exited) {
        let tail = '';
        try { tail = readFileSync(outFile, 'utf8').trim().split('\n').slice(-5).join(' | '); } catch { /* none */ }
        throw new Error(`${RABBITMQ_SERVER} ${exited}${tail ? `; its last output: ${tail}` : ''}`);
      }
      if (Date.now() - t > timeoutMs) {
        await stop();
        throw new Error(`node ${node} did not accept AMQP on 127.0.0.1:${port} within ${timeoutMs / 1000} s`);
      }
      try {
        const c = await amqplib.connect(url, { timeout: 2_000 });
        await c.close();
        return Date.now() - t;
      } catch {
        await sleep(200);
      }
    }
  }

  /** SIGTERM to the script (it stops the node gracefully and waits for it); SIGKILL to its tree after 30 s. */
  async function stop() {
    if (!proc) return;
    const { child, gone } = proc;
    proc = null;
    if (child.exitCode === null && child.signalCode === null && child.pid) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => killTree(child.pid, 'SIGKILL'), 30_000);
      await gone;
      clearTimeout(timer);
    }
    nodes.set(dir, null);
  }

  /** SIGKILL to the script and the node (a crash: no graceful shutdown); resolves once the script exited. */
  async function kill() {
    if (!proc) return;
    const { child, gone } = proc;
    proc = null;
    if (child.pid) killTree(child.pid, 'SIGKILL');
    await gone;
    nodes.set(dir, null);
  }

  async function remove() {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    nodes.delete(dir);
  }

  return { url, port, node, dir, start, stop, kill, remove };
}

/** `pid` and all its descendants (from /proc), signalled together: only ever the tree of a process the caller spawned. */
export function killTree(pid, sig) {
  const kids = new Map();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(e));
    } catch { /* exited meanwhile */ }
  }
  const tree = [];
  const walk = (p) => {
    tree.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(pid);
  for (const p of tree) {
    try { process.kill(p, sig); } catch { /* gone */ }
  }
}
