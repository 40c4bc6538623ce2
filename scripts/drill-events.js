#!/usr/bin/env node
// Reliable-events drill with real processes and real brokers, per adapter (NATS JetStream, RabbitMQ).
//
// Usage: npm run drill:events [-- [--only nats,rabbitmq] [--messages 10000] [--rate 400] [--no-build] [--json file]]
//
// Per adapter: a producer (this process) publishes N messages (ids drill-0 … drill-N-1) at a
// steady rate, each awaited until the broker confirms it (a publish that fails with the
// retryable TANDEM_ERR_PUBLISH_FAILED is repeated with the same id). A consumer process
// subscribes with a PostgreSQL inbox; its effect is a row in an effects table written in the
// inbox's transaction. Faults while publishing:
//   - the consumer process is SIGKILLed at 25 % and at 50 % of the messages and restarted at once;
//   - the broker "restarts" at 75 %: NATS — our own nats-server (on a free port, file store in
//     a temp dir) is stopped with SIGTERM and started again 1.5 s later; RabbitMQ — the shared
//     broker cannot be restarted, so every connection of the producer and the consumer is closed
//     from the server side (rabbitmqctl close_connection) instead.
// Verdict: lost = ids without an effect; duplicate effects = ids with more than one effect
// (must both be 0). Also reported: redeliveries, split into those whose handler ran again (the
// consumer died before its inbox transaction committed; attempt > 1 or the broker's redelivered
// flag) and those the inbox absorbed as duplicates (it died after the commit, before the ack);
// and publish retries. Results: the table on stdout, JSON in bench/results/drill-events-latest.json.
import { spawn, execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { sleep } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const PG = process.env.TANDEM_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const AMQP = process.env.TANDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS_SERVER = process.env.TANDEM_NATS_SERVER ?? '/usr/sbin/nats-server';
const RABBITMQCTL = process.env.TANDEM_RABBITMQCTL ?? 'rabbitmqctl';

/** Every process this drill started, killed if the drill itself exits early. */
const children = new Set();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

if (args[0] === '--consumer') await consumer(JSON.parse(args[1]));
else await main();

async function openBus(events, cfg, name) {
  if (cfg.adapter === 'nats') return events.NatsBus.connect({ servers: cfg.natsUrl, name, reconnectInitial: 50, reconnectMax: 500, publishTimeout: 30_000, ackWait: 5_000 });
  return events.RabbitMqBus.connect({ url: AMQP, name, reconnectInitial: 100, reconnectMax: 1_000, publishTimeout: 30_000 });
}

/** The consumer process: subscribe with a PostgreSQL inbox; the effect is a row written in the inbox's transaction. */
async function consumer(cfg) {
  const events = await import(join(root, 'dist/src/events/index.js'));
  const bus = await openBus(events, cfg, `${cfg.name}-consumer`);
  const inbox = await events.PostgresInbox.connect({ connectionString: PG, table: `${cfg.table}_inbox` });
  // The drill's own bookkeeping uses a pool of its own: a handler that waited for a connection
  // of the inbox's pool while holding one of its transactions could starve the pool.
  const notes = new (await import('pg')).default.Pool({ connectionString: PG, max: 2 });
  const counting = {
    async once(group, id, effect) {
      const r = await inbox.once(group, id, effect);
      if (r === 'duplicate') await notes.query(`INSERT INTO ${cfg.table}_absorbed (id) VALUES ($1)`, [id]);
      return r;
    },
  };
  await bus.subscribe(cfg.topic, 'drill', async (m, tx) => {
    if (m.attempt > 1 || m.redelivered) await notes.query(`INSERT INTO ${cfg.table}_redeliveries (id, attempt) VALUES ($1, $2)`, [m.id, m.attempt]);
    await tx.query(`INSERT INTO ${cfg.table}_effects (id) VALUES ($1)`, [m.id]);
  }, { inbox: counting, concurrency: 16, maxAttempts: 10, backoff: { initial: 50, max: 1000 } });
  process.stdout.write('ready\n');
  process.on('SIGTERM', async () => {
    await bus.close();
    await inbox.close();
    process.exit(0);
  });
}

function startConsumer(cfg) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--consumer', JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      if (String(d).includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`consumer exited early (${code})`)));
  });
}

/** SIGTERM (a graceful close), SIGKILL if it has not exited within 5 s. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

async function killHard(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/**
 * Starts nats-server; resolves with { proc, port } once it says it is ready, rejects with its
 * log when it exits first. Port -1: the server picks a free one itself (no race with other
 * processes for a port found free a moment before); a restart asks for the same port again.
 */
function startNats(port, dir) {
  const proc = spawn(NATS_SERVER, ['-js', '-sd', dir, '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  return new Promise((resolve, reject) => {
    let log = '';
    let listening = port;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`nats-server did not get ready in 10 s: ${log.slice(-500)}`));
    }, 10_000);
    proc.stderr.setEncoding('utf8').on('data', (d) => {
      log += d;
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
      if (m) listening = Number(m[1]);
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        proc.stderr.removeAllListeners('data').resume();
        resolve({ proc, port: listening });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}) before it was ready: ${log.slice(-500)}`));
    });
  });
}

async function closeRabbitConnections(namePart) {
  const run = promisify(execFile);
  const { stdout } = await run(RABBITMQCTL, ['list_connections', 'pid', 'client_properties', '-q']);
  const pids = stdout.split('\n').filter((l) => l.includes(namePart)).map((l) => l.split('\t')[0]).filter((p) => p.startsWith('<'));
  for (const pid of pids) await run(RABBITMQCTL, ['close_connection', pid, 'tandem drill: broker restart stand-in']);
  return pids.length;
}

async function drill(adapter, messages, rate, events, pg) {
  const id = randomBytes(3).toString('hex');
  const cfg = { adapter, name: `tandem-drill-${id}`, topic: `drill.${adapter}.${id}`, table: `tandem_drill_${id}` };
  let natsProc, natsDir;
  if (adapter === 'nats') {
    natsDir = mkdtempSync(join(os.tmpdir(), 'tandem-drill-nats-'));
    let port;
    ({ proc: natsProc, port } = await startNats(-1, natsDir));
    cfg.natsUrl = `nats://127.0.0.1:${port}`;
  }
  for (const t of ['effects', 'redeliveries', 'absorbed']) await pg.query(`CREATE TABLE ${cfg.table}_${t} (id text NOT NULL, attempt int)`);
  const log = (s) => console.log(`  [${adapter}] ${s}`);
  const bus = await openBus(events, cfg, `${cfg.name}-producer`);
  let child = await startConsumer(cfg);
  const faults = [];
  const t0 = Date.now();
  let publishRetries = 0;
  let confirmed = 0;
  const inflight = new Set();
  const publishOne = async (i) => {
    for (;;) {
      try {
        await bus.publish(cfg.topic, { i }, { id: `drill-${i}` });
        confirmed++;
        return;
      } catch (err) {
        if (err.code !== 'TANDEM_ERR_PUBLISH_FAILED') throw err;
        publishRetries++;
      }
    }
  };
  const fault = async (at, what, fn) => {
    const t = Date.now();
    await fn();
    faults.push({ at, what, ms: Date.now() - t });
    log(`${what} at message ${at} (${Date.now() - t} ms)`);
  };
  const interval = 1000 / rate;
  const pendingFaults = [
    [Math.floor(messages * 0.25), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.5), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.75), adapter === 'nats' ? 'nats-server SIGTERM, restart after 1.5 s' : 'all producer and consumer connections closed by the broker (rabbitmqctl close_connection)', async () => {
      if (adapter === 'nats') {
        const exited = new Promise((r) => natsProc.once('exit', r));
        natsProc.kill('SIGTERM');
        await exited;
        await sleep(1500);
        ({ proc: natsProc } = await startNats(Number(cfg.natsUrl.split(':').pop()), natsDir));
      } else {
        const n = await closeRabbitConnections(cfg.name);
        if (n < 2) throw new Error(`expected to close the producer's and the consumer's connections, closed ${n}`);
      }
    }],
  ];
  const faultRuns = [];
  for (let i = 0; i < messages; i++) {
    const due = t0 + i * interval;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    if (pendingFaults.length && i === pendingFaults[0][0]) {
      const [at, what, fn] = pendingFaults.shift();
      faultRuns.push(fault(at, what, fn)); // the producer keeps its pace while the fault happens
    }
    const p = publishOne(i).finally(() => inflight.delete(p));
    inflight.add(p);
  }
  await Promise.all(faultRuns);
  await Promise.all(inflight);
  const publishSeconds = (Date.now() - t0) / 1000;
  log(`${confirmed} confirmed in ${publishSeconds.toFixed(1)} s (${publishRetries} publish retries)`);
  const deadline = Date.now() + 90_000;
  let distinct = 0;
  while (Date.now() < deadline) {
    distinct = Number((await pg.query(`SELECT count(DISTINCT id) AS n FROM ${cfg.table}_effects`)).rows[0].n);
    if (distinct >= messages) break;
    await sleep(250);
  }
  await sleep(1000); // late duplicates would show up now
  const total = Number((await pg.query(`SELECT count(*) AS n FROM ${cfg.table}_effects`)).rows[0].n);
  distinct = Number((await pg.query(`SELECT count(DISTINCT id) AS n FROM ${cfg.table}_effects`)).rows[0].n);
  const redeliveries = Number((await pg.query(`SELECT count(*) AS n FROM ${cfg.table}_redeliveries`)).rows[0].n);
  const absorbed = Number((await pg.query(`SELECT count(*) AS n FROM ${cfg.table}_absorbed`)).rows[0].n);
  const seconds = (Date.now() - t0) / 1000;
  await stop(child);
  if (adapter === 'nats') await bus.deleteTopic(cfg.topic);
  else await bus.deleteTopic(cfg.topic, ['drill']);
  await bus.close();
  for (const t of ['effects', 'redeliveries', 'absorbed', 'inbox']) await pg.query(`DROP TABLE IF EXISTS ${cfg.table}_${t}`);
  if (natsProc) {
    natsProc.kill('SIGKILL');
    rmSync(natsDir, { recursive: true, force: true });
  }
  return { adapter, messages, rate, confirmed, lost: messages - distinct, duplicateEffects: total - distinct, redeliveries, inboxAbsorbed: absorbed, publishRetries, consumerKills: 2, brokerRestarts: 1, faults, publishSeconds, seconds };
}

async function main() {
  const messages = Number(opt('messages', '10000'));
  const rate = Number(opt('rate', '400'));
  const only = opt('only', 'nats,rabbitmq').split(',');
  if (!args.includes('--no-build')) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
    if (b.status !== 0) process.exit(1);
  }
  const events = await import(join(root, 'dist/src/events/index.js'));
  const pg = new (await import('pg')).default.Pool({ connectionString: PG, max: 2 });
  const results = [];
  for (const adapter of only) {
    console.log(`== ${adapter}: ${messages} messages at ${rate}/s; consumer SIGKILLed at 25 % and 50 %, ${adapter === 'nats' ? 'broker restart' : 'every connection closed by the broker'} at 75 %`);
    results.push(await drill(adapter, messages, rate, events, pg));
  }
  await pg.end();
  console.log('\n| adapter | messages | lost | duplicate effects | redeliveries (total) | … handler ran again (effect not yet committed) | … absorbed by the inbox | publish retries | time (s) |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) console.log(`| ${r.adapter} | ${r.messages} | ${r.lost} | ${r.duplicateEffects} | ${r.redeliveries + r.inboxAbsorbed} | ${r.redeliveries} | ${r.inboxAbsorbed} | ${r.publishRetries} | ${r.seconds.toFixed(1)} |`);
  const out = opt('json', join(root, 'bench/results/drill-events-latest.json'));
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, JSON.stringify({ when: new Date().toISOString(), node: process.version, results }, null, 2));
  const failed = results.filter((r) => r.lost !== 0 || r.duplicateEffects !== 0);
  if (failed.length) {
    console.error(`FAILED: ${failed.map((r) => `${r.adapter} lost ${r.lost}, duplicate effects ${r.duplicateEffects}`).join('; ')}`);
    process.exit(1);
  }
  process.exit(0);
}
