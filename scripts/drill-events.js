#!/usr/bin/env node
// Reliable-events drill with real processes and real brokers, per adapter (NATS JetStream, RabbitMQ, Kafka).
//
// Usage: npm run drill:events [-- [--quick] [--only nats,rabbitmq,kafka] [--messages 10000] [--rate 400] [--backlog 2000] [--rabbit private|shared] [--no-build] [--json file]]
//
// --quick (CI): the same faults on fewer messages — 1200 per adapter, at 400/s on NATS and
// RabbitMQ and 100/s on Kafka (its six faults need ≈ 12 s of publishing to land while messages
// flow) — unless --messages / --rate say otherwise. `--quick --only kafka` takes ≈ 60–80 s here.
//
// Per adapter: a producer (this process) publishes N messages (ids drill-0 … drill-N-1) at a
// steady rate, each awaited until the broker confirms it (a publish that fails with the
// retryable TANDEM_ERR_PUBLISH_FAILED is repeated with the same id). A consumer process
// subscribes with a PostgreSQL inbox; its effect is a row in an effects table written in the
// inbox's transaction. Faults while publishing:
//   - the consumer process is SIGKILLed at 25 % and at 50 % of the messages and restarted at once;
//   - the broker restarts at 75 %. Each adapter gets a broker of its own, never the shared one:
//     NATS — a nats-server on a free port with its file store in a temp dir; RabbitMQ — a private
//     RabbitMQ node (its own node name, AMQP and distribution ports, data, log and config in a
//     temp dir, no plugins, its own Erlang cookie; it registers with the machine's epmd but never
//     starts one). Each is stopped with SIGTERM (a graceful shutdown), kept down 1.5 s and started
//     again on the same port and data directory, so durable streams / quorum queues must survive.
//     So that the restart has something to keep, the consumer is paused (SIGSTOP) --backlog ms
//     (default 2000) before the broker stops and resumed (SIGCONT) once it is back: the
//     messages published meanwhile wait in the broker through its restart.
//     Only if a private RabbitMQ node cannot start (no rabbitmq-server, or it does not accept
//     AMQP within 60 s) does the drill fall back — saying why — to the shared broker at
//     127.0.0.1:5672 (TANDEM_AMQP_URL), which is never restarted: every connection of the
//     producer and the consumer is closed from the server side (rabbitmqctl close_connection)
//     instead. `--rabbit shared` chooses that fallback on purpose.
//   Kafka gets a three-node KRaft cluster of its own (scripts/kafka.js: replication factor 3,
//   min.insync.replicas 2) and its own faults: the consumer SIGKILLed at 20 % and 50 % and
//   restarted; a second consumer process added at 35 % and removed (SIGTERM, a graceful close)
//   at 85 %; at 60 % a broker that leads no partition of the topic is SIGKILLed and restarted
//   3 s later; at 75 % the leader of the topic's partition 0 is SIGKILLed and restarted 3 s later.
//   For each fault the drill reports how long the group took to recover: from the fault until
//   a message published 0.5 s after it began had its effect.
//   Every broker process the drill started is stopped at the end, and killed (by pid: the
//   processes it spawned and their descendants) on a failure, Ctrl-C or SIGTERM.
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
import { privateRabbit } from './lib/rabbit.js'; // killed on exit by that module

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
/** Temp dirs of the brokers this drill started, removed when it exits. */
const tempDirs = new Set();
/** Kafka clusters (scripts/kafka.js) this drill started: their JVMs are killed by pid on exit. */
const kafkaClusters = new Set();
function killEverythingSync() {
  for (const k of kafkaClusters) {
    for (const n of k.nodes) {
      const pid = k.pid(n.id);
      if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(k.dir, { recursive: true, force: true });
  }
  kafkaClusters.clear();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', killEverythingSync);

if (args[0] !== '--consumer') {
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) {
    process.on(sig, () => {
      console.error(`\ndrill:events: ${sig}; killing the consumer and the brokers it started`);
      process.exit(code); // the exit handler kills them
    });
  }
}

if (args[0] === '--consumer') await consumer(JSON.parse(args[1]));
else await main();

async function openBus(events, cfg, name) {
  if (cfg.adapter === 'kafka') return events.KafkaBus.connect({ brokers: cfg.kafkaBrokers, name, reconnectInitial: 100, reconnectMax: 1_000, publishTimeout: 30_000, sessionTimeout: 6_000, replicationFactor: 3, onError: (err) => console.error(`  [kafka] ${name}: ${describeError(err)}`) });
  if (cfg.adapter === 'nats') return events.NatsBus.connect({ servers: cfg.natsUrl, name, reconnectInitial: 50, reconnectMax: 500, publishTimeout: 30_000, ackWait: 5_000 });
  return events.RabbitMqBus.connect({ url: cfg.amqpUrl, name, reconnectInitial: 100, reconnectMax: 1_000, publishTimeout: 30_000 });
}

/** An error with what it wraps (the Kafka client nests the broker's answers in `errors` and `cause`). */
function describeError(err, depth = 0) {
  if (!err || depth > 3) return '';
  const inner = [...(err.errors ?? []), ...(err.cause ? [err.cause] : [])].map((e) => describeError(e, depth + 1)).filter(Boolean);
  return `${err.message}${inner.length ? ` [${[...new Set(inner)].join('; ')}]` : ''}`;
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
  const handler = async (m, tx) => {
    if (m.attempt > 1 || m.redelivered) await notes.query(`INSERT INTO ${cfg.table}_redeliveries (id, attempt) VALUES ($1, $2)`, [m.id, m.attempt]);
    await tx.query(`INSERT INTO ${cfg.table}_effects (id) VALUES ($1)`, [m.id]);
  };
  // A consumer that starts while a broker is down may not get into its group within
  // publishTimeout (Kafka: the group's coordinator is that broker until another takes over).
  // subscribe() then fails with a retryable error, and the process tries again, as a
  // supervisor restarting it would; said on stderr, so the drill's output shows it.
  for (let attempt = 1; ; attempt++) {
    try {
      await bus.subscribe(cfg.topic, 'drill', handler, { inbox: counting, concurrency: 16, maxAttempts: 10, backoff: { initial: 50, max: 1000 } });
      break;
    } catch (err) {
      if (err?.retryable !== true || attempt >= 3) throw err;
      console.error(`  [${cfg.adapter}] ${cfg.name}-consumer: subscribe failed (${describeError(err).slice(0, 300)}); trying again (${attempt + 1} of 3)`);
    }
  }
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

async function drill(adapter, messages, rate, events, pg, rabbitMode, backlogMs) {
  const id = randomBytes(3).toString('hex');
  const cfg = { adapter, name: `tandem-drill-${id}`, topic: `drill.${adapter}.${id}`, table: `tandem_drill_${id}` };
  const log = (s) => console.log(`  [${adapter}] ${s}`);
  let natsProc, natsDir, rabbit, broker, kafka;
  if (adapter === 'kafka') {
    const { startKafka } = await import('./kafka.js');
    const t = Date.now();
    kafka = await startKafka({ nodes: 3 });
    kafkaClusters.add(kafka);
    cfg.kafkaBrokers = kafka.bootstrap;
    broker = `private 3-node Kafka cluster (KRaft) on ${kafka.bootstrap.join(', ')}`;
    log(`${broker} ready after ${Date.now() - t} ms`);
  } else if (adapter === 'nats') {
    natsDir = mkdtempSync(join(os.tmpdir(), 'tandem-drill-nats-'));
    tempDirs.add(natsDir);
    let port;
    ({ proc: natsProc, port } = await startNats(-1, natsDir));
    cfg.natsUrl = `nats://127.0.0.1:${port}`;
    broker = `private nats-server on 127.0.0.1:${port}`;
  } else if (rabbitMode === 'private') {
    try {
      rabbit = await privateRabbit();
      const ms = await rabbit.start();
      broker = `private RabbitMQ node ${rabbit.node} on 127.0.0.1:${rabbit.port}`;
      log(`${broker} accepting AMQP after ${ms} ms (data in ${rabbit.dir})`);
      cfg.amqpUrl = rabbit.url;
    } catch (err) {
      await rabbit?.remove();
      rabbit = undefined;
      console.log(`  [${adapter}] WARNING: cannot start a private RabbitMQ node: ${err.message}`);
      console.log(`  [${adapter}] WARNING: falling back to the shared broker (${AMQP.replace(/\/\/[^@]*@/, '//')}), which is never restarted: its connections to the producer and the consumer are cut server-side instead of a broker restart`);
    }
  }
  if (adapter === 'rabbitmq' && !rabbit) {
    cfg.amqpUrl = AMQP;
    broker = `shared RabbitMQ (${AMQP.replace(/\/\/[^@]*@/, '//')}), connections cut instead of a restart`;
  }
  // A failed Kafka run keeps its cluster's dir: each node's server.log (group coordinator at
  // info: members joining, failing, leaving) and stdout.log.
  let keep = adapter === 'kafka';
  try {
    const result = await drillOn(adapter, messages, rate, events, pg, cfg, log, broker, { natsProc, natsDir, rabbit, kafka }, backlogMs);
    keep &&= result.lost !== 0 || result.duplicateEffects !== 0;
    return result;
  } finally {
    await rabbit?.remove();
    if (kafka) {
      await kafka.stop({ keep });
      kafkaClusters.delete(kafka);
      if (keep) log(`the brokers' logs are kept in ${kafka.dir} (node-*/server.log, node-*/stdout.log)`);
    }
  }
}

async function drillOn(adapter, messages, rate, events, pg, cfg, log, broker, brokers, backlogMs) {
  let { natsProc } = brokers;
  const { natsDir, rabbit, kafka } = brokers;
  for (const t of ['effects', 'redeliveries', 'absorbed']) await pg.query(`CREATE TABLE ${cfg.table}_${t} (id text NOT NULL, attempt int)`);
  const bus = await openBus(events, cfg, `${cfg.name}-producer`);
  let child = await startConsumer(cfg);
  const faults = [];
  const t0 = Date.now();
  let publishRetries = 0;
  let confirmed = 0;
  let heldAtStop = null;
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
  let published = 0;
  /** Kafka: from the fault until a message published 0.5 s after it began has its effect. */
  const recovery = async (t, index) => {
    while (published <= index && Date.now() - t < 120_000) await sleep(20);
    while (Date.now() - t < 120_000) {
      if ((await pg.query(`SELECT 1 FROM ${cfg.table}_effects WHERE id = $1`, [`drill-${index}`])).rowCount > 0) return Date.now() - t;
      await sleep(50);
    }
    return null;
  };
  const fault = async (at, what, fn) => {
    const t = Date.now();
    // No figure when the producer is done before the probe message would be sent.
    const probe = published + Math.ceil(rate / 2);
    const recovered = adapter === 'kafka' && probe < messages ? recovery(t, probe) : undefined;
    await fn();
    const entry = { at, what, ms: Date.now() - t };
    if (adapter === 'kafka') entry.recoveryMs = recovered ? await recovered : null;
    faults.push(entry);
    log(`${what} at message ${at} (${entry.ms} ms${entry.recoveryMs !== undefined ? `; the group handled new messages again after ${entry.recoveryMs} ms` : ''})${heldAtStop !== null && faults.length === 3 ? `; ${heldAtStop} confirmed messages without an effect yet at the fault` : ''}`);
  };
  const interval = 1000 / rate;
  let extra;
  /** Restarts a Kafka node `ms` after killing it: the broker that leads partition 0 of the topic, or one that leads none of it. */
  const kafkaKill = async (leader) => {
    const { Admin } = await import('@platformatic/kafka');
    const admin = new Admin({ clientId: 'drill', bootstrapBrokers: kafka.bootstrap });
    const name = `tandem.${cfg.topic}`;
    let node;
    try {
      const md = await admin.metadata({ topics: [name], forceUpdate: true });
      const leaders = md.topics.get(name).partitions.map((p) => p.leader);
      node = leader ? leaders[0] : kafka.nodes.map((n) => n.id).find((id) => !leaders.includes(id)) ?? kafka.nodes.map((n) => n.id).find((id) => id !== leaders[0]);
    } finally {
      await admin.close();
    }
    await kafka.kill(node, 'SIGKILL');
    await sleep(3_000);
    await kafka.restart(node);
    return node;
  };
  const kafkaFaults = () => [
    [Math.floor(messages * 0.2), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.35), 'a second consumer process joins the group', async () => { extra = startConsumer(cfg); await extra; }],
    [Math.floor(messages * 0.5), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.6), 'a broker leading no partition of the topic SIGKILLed, restarted after 3 s', async () => { await kafkaKill(false); }],
    [Math.floor(messages * 0.75), "the leader of the topic's partition 0 SIGKILLed, restarted after 3 s", async () => { await kafkaKill(true); }],
    [Math.floor(messages * 0.85), 'the second consumer leaves (SIGTERM: a graceful close)', async () => { await stop(await extra); }],
  ];
  const pendingFaults = adapter === 'kafka' ? kafkaFaults() : [
    [Math.floor(messages * 0.25), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.5), 'consumer SIGKILL + restart', async () => { await killHard(child); child = await startConsumer(cfg); }],
    [Math.floor(messages * 0.75), adapter === 'nats' ? 'nats-server SIGTERM, restart after 1.5 s' : rabbit ? 'RabbitMQ node SIGTERM, restart after 1.5 s (same port and data dir)' : 'all producer and consumer connections closed by the shared broker (rabbitmqctl close_connection; fallback, no restart)', async () => {
      // A consumer that keeps up leaves almost nothing in the broker to survive its restart, so
      // it is paused (SIGSTOP) `backlogMs` before the broker stops and resumed once the broker is
      // back: the messages published meanwhile must come through the restart from disk.
      const paused = child;
      if (backlogMs > 0) {
        paused.kill('SIGSTOP');
        await sleep(backlogMs);
      }
      try {
        // Messages the broker must keep through its restart: confirmed to the producer, without
        // an effect yet (queued, or delivered and not yet acked). A lower bound: an effect may
        // already exist for a message whose confirm has not reached the producer yet.
        const done = Number((await pg.query(`SELECT count(DISTINCT id) AS n FROM ${cfg.table}_effects`)).rows[0].n);
        heldAtStop = Math.max(0, confirmed - done);
        await brokerFault();
      } finally {
        if (backlogMs > 0) paused.kill('SIGCONT');
      }
    }],
  ];
  async function brokerFault() {
    if (adapter === 'nats') {
      const exited = new Promise((r) => natsProc.once('exit', r));
      natsProc.kill('SIGTERM');
      await exited;
      await sleep(1500);
      ({ proc: natsProc } = await startNats(Number(cfg.natsUrl.split(':').pop()), natsDir));
    } else if (rabbit) {
      const t = Date.now();
      await rabbit.stop();
      const down = Date.now() - t;
      await sleep(1500);
      const up = await rabbit.start();
      log(`RabbitMQ node stopped in ${down} ms, accepting AMQP again ${up} ms after its start`);
    } else {
      const n = await closeRabbitConnections(cfg.name);
      if (n < 2) throw new Error(`expected to close the producer's and the consumer's connections, closed ${n}`);
    }
  }
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
    published = i + 1;
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
  // Which fault each redelivery follows: by the message's index (drill-<i>) against the fault points.
  const phases = async (t) => (await pg.query(`SELECT width_bucket(substr(id, 7)::int, 0, $1::int, 4) AS q, count(*) AS n FROM ${cfg.table}_${t} GROUP BY q`, [messages])).rows
    .reduce((acc, r) => { acc[Math.min(4, Number(r.q)) - 1] += Number(r.n); return acc; }, [0, 0, 0, 0]);
  const redeliveriesByQuarter = { handlerRanAgain: await phases('redeliveries'), absorbed: await phases('absorbed') };
  const seconds = (Date.now() - t0) / 1000;
  const kafkaRecords = adapter === 'kafka' ? await kafkaDiagnose(kafka, cfg, log, distinct < messages) : undefined;
  await stop(child);
  if (extra) await stop(await extra);
  if (adapter === 'nats') await bus.deleteTopic(cfg.topic);
  else await bus.deleteTopic(cfg.topic, ['drill']);
  await bus.close();
  for (const t of ['effects', 'redeliveries', 'absorbed', 'inbox']) await pg.query(`DROP TABLE IF EXISTS ${cfg.table}_${t}`);
  if (natsProc) {
    natsProc.kill('SIGKILL');
    rmSync(natsDir, { recursive: true, force: true });
    tempDirs.delete(natsDir);
  }
  const restarted = adapter === 'nats' || Boolean(rabbit);
  return { adapter, broker, messages, rate, confirmed, lost: messages - distinct, duplicateEffects: total - distinct, redeliveries, inboxAbsorbed: absorbed, publishRetries, consumerKills: 2, brokerRestarts: adapter === 'kafka' ? 2 : restarted ? 1 : 0, connectionCuts: restarted || adapter === 'kafka' ? 0 : 1, kafkaRecords, backlogMs, heldAtStop, redeliveriesByQuarter, faults, publishSeconds, seconds };
}

/**
 * Records in the topic (more than the messages: the producer wrote copies) and, when messages
 * are missing, per partition the end offset and the group's committed offset, and the members.
 */
async function kafkaDiagnose(kafka, cfg, log, missing) {
  const { Admin } = await import('@platformatic/kafka');
  const admin = new Admin({ clientId: 'drill-diagnose', bootstrapBrokers: kafka.bootstrap });
  try {
    const name = `tandem.${cfg.topic}`;
    const idx = [0, 1, 2, 3, 4, 5];
    const [committed] = await admin.listConsumerGroupOffsets({ groups: [{ groupId: `tandem.${cfg.topic}.drill`, topics: [{ name, partitionIndexes: idx }] }] });
    const ends = await admin.listOffsets({ topics: [{ name, partitions: idx.map((partitionIndex) => ({ partitionIndex, timestamp: -1n })) }] });
    const records = ends[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
    log(`${records} records in the topic`);
    if (!missing) return records;
    log(`committed: ${committed.topics.flatMap((t) => t.partitions.map((p) => `${p.partitionIndex}:${p.committedOffset}`)).join(' ')}; ends: ${ends[0].partitions.map((p) => `${p.partitionIndex}:${p.offset}`).join(' ')}`);
    const groups = await admin.describeGroups({ groups: [`tandem.${cfg.topic}.drill`] });
    for (const [, g] of groups) log(`group ${g.state}: ${[...g.members.values()].map((m) => `${m.id.slice(-6)} ${JSON.stringify([...(m.assignments?.values() ?? [])])}`).join('; ')}`);
    return records;
  } catch (err) {
    log(`diagnosis failed: ${err.message}`);
    return undefined;
  } finally {
    await admin.close();
  }
}

async function main() {
  const quick = args.includes('--quick');
  const messages = Number(opt('messages', quick ? '1200' : '10000'));
  const rateFor = (adapter) => Number(opt('rate', quick && adapter === 'kafka' ? '100' : '400'));
  const only = opt('only', 'nats,rabbitmq,kafka').split(',');
  const rabbitMode = opt('rabbit', 'private');
  const backlogMs = Number(opt('backlog', '2000'));
  if (rabbitMode !== 'private' && rabbitMode !== 'shared') throw new Error(`--rabbit must be private or shared, not ${rabbitMode}`);
  if (!args.includes('--no-build')) {
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
    if (b.status !== 0) process.exit(1);
  }
  const events = await import(join(root, 'dist/src/events/index.js'));
  const pg = new (await import('pg')).default.Pool({ connectionString: PG, max: 2 });
  const results = [];
  for (const adapter of only) {
    const rate = rateFor(adapter);
    if (adapter === 'kafka') console.log(`== kafka: ${messages} messages at ${rate}/s; consumer SIGKILLed at 20 % and 50 %, a second consumer from 35 % to 85 %, a broker SIGKILLed at 60 % and the partition leader at 75 % (each restarted after 3 s)`);
    else console.log(`== ${adapter}: ${messages} messages at ${rate}/s; consumer SIGKILLed at 25 % and 50 %, broker restart at 75 %${backlogMs > 0 ? ` (consumer paused ${backlogMs} ms before it, until the broker is back)` : ''}`);
    results.push(await drill(adapter, messages, rate, events, pg, rabbitMode, backlogMs));
  }
  await pg.end();
  console.log('\n| adapter | messages | broker restarts | lost | duplicate effects | redeliveries (total) | … handler ran again (effect not yet committed) | … absorbed by the inbox | publish retries | broker fault incl. consumer pause (ms) | confirmed, not yet handled at the stop | time (s) |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of results) console.log(`| ${r.adapter} | ${r.messages} | ${r.brokerRestarts}${r.connectionCuts ? ' (connections cut instead)' : ''} | ${r.lost} | ${r.duplicateEffects} | ${r.redeliveries + r.inboxAbsorbed} | ${r.redeliveries} | ${r.inboxAbsorbed} | ${r.publishRetries} | ${r.adapter === 'kafka' ? '-' : r.faults[2]?.ms ?? '-'} | ${r.heldAtStop ?? '-'} | ${r.seconds.toFixed(1)} |`);
  for (const r of results.filter((x) => x.adapter === 'kafka')) console.log(`kafka faults: ${r.faults.map((f) => `${f.what} at ${f.at}: ${f.recoveryMs === null ? 'no probe (publishing had ended)' : `recovered after ${f.recoveryMs} ms`}`).join('; ')}`);
  for (const r of results) console.log(`${r.adapter}: ${r.broker}; redeliveries by the quarter of their message ids (0–25 %/25–50 %/50–75 %/75–100 %; the faults come as the producer reaches 25, 50 and 75 %): handler ran again ${r.redeliveriesByQuarter.handlerRanAgain.join('/')}, absorbed by the inbox ${r.redeliveriesByQuarter.absorbed.join('/')}`);
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
