// The drill's own brokers, registry and database (examples/shop/drill.js): started for flags
// given without a URL (--nats, --kafka, --rabbitmq, --etcd) and for --postgres, so that the drill
// may kill them — never the machine's shared ones. Each is stopped and removed by `cleanups`.
/* global fetch */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Starts what `flags` ask of the drill's own; resolves with the flags naming them, the broker
 * and the registry as { what, kill(), start() } (undefined when not the drill's own) and the
 * database ({ url, pool, drop() }).
 */
export async function privateBackends(flags, cleanups) {
  let broker;
  if (flags.nats === true) {
    const nats = await startNats();
    cleanups.push(() => nats.destroy());
    flags = { ...flags, nats: nats.url };
    broker = { what: 'the NATS server', kill: () => nats.stop('SIGKILL'), start: () => nats.start() };
  } else if (flags.kafka === true) {
    const { startKafka } = await import('../../scripts/kafka.js').catch(() => {
      throw new Error('--kafka without brokers starts a broker with scripts/kafka.js, which only a clone of tandem has: give --kafka=host:port');
    });
    const kafka = await startKafka();
    cleanups.push(() => kafka.stop());
    flags = { ...flags, kafka: kafka.bootstrap.join(',') };
    broker = { what: 'the Kafka broker', kill: () => kafka.kill(1), start: () => kafka.restart(1) };
  } else if (flags.rabbitmq === true) {
    const { privateRabbit } = await import('../../scripts/lib/rabbit.js').catch(() => {
      throw new Error('--rabbitmq without a URL starts a node with scripts/lib/rabbit.js, which only a clone of tandem has: give --rabbitmq=amqp://…');
    });
    const rabbit = await privateRabbit();
    cleanups.push(() => rabbit.remove());
    await rabbit.start();
    flags = { ...flags, rabbitmq: rabbit.url };
    broker = { what: 'the RabbitMQ node', kill: () => rabbit.kill(), start: () => rabbit.start() };
  }
  let registry;
  if (flags.etcd === true) {
    const etcd = await startEtcd();
    cleanups.push(() => etcd.destroy());
    flags = { ...flags, etcd: etcd.endpoint };
    registry = { what: 'etcd', kill: () => etcd.stop('SIGKILL'), start: () => etcd.start() };
  }
  let db;
  if (flags.postgres !== undefined) {
    db = await privateDatabase(flags.postgres === true ? 'postgres://postgres@127.0.0.1:5432/postgres' : flags.postgres);
    cleanups.push(() => db.drop());
    flags = { ...flags, postgres: db.url };
  }
  return { flags, broker, registry, db };
}

/** A nats-server of the drill's own: JetStream in a temp dir, a free port; restartable on the same port. */
async function startNats() {
  const dir = mkdtempSync(join(tmpdir(), 'shop-drill-nats-'));
  const bin = process.env.NATS_SERVER ?? 'nats-server';
  let proc;
  let port = -1;
  const start = () => new Promise((resolve, reject) => {
    proc = spawn(bin, ['-js', '-sd', dir, '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    proc.on('error', (err) => reject(new Error(`cannot run ${bin} (set NATS_SERVER to its path): ${err.message}`)));
    proc.stderr.setEncoding('utf8').on('data', (d) => {
      log += d;
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
      if (m) port = Number(m[1]);
      if (log.includes('Server is ready')) resolve();
    });
    proc.once('exit', (code) => reject(new Error(`nats-server exited (${code}): ${log.slice(-300)}`)));
  });
  await start();
  const stop = (signal = 'SIGTERM') => {
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    return exited;
  };
  return { url: `nats://127.0.0.1:${port}`, start, stop, destroy: async () => { await stop('SIGKILL'); rmSync(dir, { recursive: true, force: true }); } };
}

/** A database of the drill's own on the server of `url`, dropped at the end. */
async function privateDatabase(url) {
  const { default: pg } = await import('pg');
  const name = `shop_drill_${process.pid}`;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  await admin.query(`CREATE DATABASE ${name}`);
  const own = new URL(url);
  own.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: own.href, max: 2 });
  return {
    url: own.href,
    pool,
    async drop() {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** A free port on 127.0.0.1 (released at once: etcd binds it next). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A one-member etcd of the drill's own: data in a temp dir, free ports; restartable on its data. */
async function startEtcd() {
  const dir = mkdtempSync(join(tmpdir(), 'shop-drill-etcd-'));
  const bin = process.env.ETCD ?? 'etcd';
  const [client, peer] = [await freePort(), await freePort()];
  const endpoint = `127.0.0.1:${client}`;
  let proc;
  const start = async () => {
    let log = '';
    proc = spawn(bin, ['--name', 'shop', '--data-dir', join(dir, 'data'),
      '--listen-client-urls', `http://${endpoint}`, '--advertise-client-urls', `http://${endpoint}`,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', `shop=http://127.0.0.1:${peer}`, '--log-level', 'error'], { stdio: ['ignore', 'ignore', 'pipe'] });
    proc.stderr.setEncoding('utf8').on('data', (d) => { log = (log + d).slice(-2000); });
    const failed = new Promise((resolve, reject) => {
      proc.once('error', (err) => reject(new Error(`cannot run ${bin} (set ETCD to its path): ${err.message}`)));
      proc.once('exit', (code) => reject(new Error(`etcd exited (${code}): ${log.slice(-300)}`)));
    });
    failed.catch(() => {}); // read below, while waiting for /health
    for (const deadline = Date.now() + 20_000; Date.now() < deadline;) {
      const healthy = await Promise.race([failed, fetch(`http://${endpoint}/health`).then((r) => r.ok, () => false)]);
      if (healthy) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`etcd on ${endpoint} not healthy within 20 s: ${log.slice(-300)}`);
  };
  await start();
  const stop = (signal = 'SIGTERM') => {
    if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    return exited;
  };
  return { endpoint, start, stop, destroy: async () => { await stop('SIGKILL'); rmSync(dir, { recursive: true, force: true }); } };
}
