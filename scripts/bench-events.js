#!/usr/bin/env node
// Events benchmark: tandem's adapters against the bare client library doing the same work in
// the same run, on this machine's brokers (NATS 127.0.0.1:4222, RabbitMQ 127.0.0.1:5672) and a
// Kafka broker of its own (scripts/kafka.js: Apache Kafka 4.1, one KRaft node, stopped at the end).
//
// Usage: npm run bench:events [-- [--messages 10000] [--window 64] [--concurrency 16]
//          [--rate 1000] [--latency-messages 3000] [--rounds 2] [--only nats,rabbitmq,kafka,memory] [--no-build]]
//
// The work, identical for both: publish messages (≈ 100-byte JSON payload), each awaited until
// the broker confirms it, while one consumer in the same process takes them with `concurrency`
// unacked at most, parses the JSON and acks each. Throughput: N messages with `window`
// publishes in flight; msgs/s = N / (first publish → last handled). Latency: messages published
// on a fixed schedule at `rate`/s (open loop); end-to-end = publish call → handler, p50 and p99. Bare NATS: js.publish with msgID + consumer.consume() on a durable pull
// consumer, file storage, the same connection options as tandem's (noAsyncTraces). Bare RabbitMQ: confirm-channel publish to a durable quorum queue +
// consume with prefetch. Bare Kafka (@platformatic/kafka): a producer with acks=all but NOT
// idempotent (its idempotent producer loses concurrent sends, platformatic/kafka#326, so bare
// code with `window` sends in flight cannot use it; tandem's adapter keeps one request in flight
// and batches instead), a consumer stream with the client's autocommit (every 100 ms) and
// `concurrency` handlers at most; 6 partitions like tandem's topics. Rounds alternate
// bare/tandem; the best round of each is reported.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const N_THROUGHPUT = Number(opt('messages', '10000'));
const RATE = Number(opt('rate', '1000'));
const N_LATENCY = Number(opt('latency-messages', '3000'));
let N = N_THROUGHPUT;
const WINDOW = Number(opt('window', '64'));
const CONC = Number(opt('concurrency', '16'));
const ROUNDS = Number(opt('rounds', '2'));
const ONLY = opt('only', 'nats,rabbitmq,kafka,memory').split(',');
const AMQP = process.env.TANDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const NATS = process.env.TANDEM_NATS_URL ?? 'nats://127.0.0.1:4222';

const payload = (i) => ({ i, t: performance.now(), order: 'ord-0000000000', customer: 'cust-00000', total: 1234.5 });

let cpuAtStart;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Drives one run: `publish(i)` resolves on confirm; `consumed` resolves when N messages were
 * consumed. Throughput mode: `WINDOW` publishes in flight, as fast as confirms come back.
 * Latency mode: one publish every 1/RATE s on a fixed schedule (open loop), so the latency is
 * the system's, not a queue the benchmark built up.
 */
async function drive(publish, consumed) {
  const t0 = performance.now();
  cpuAtStart = process.cpuUsage();
  if (mode === 'latency') {
    const all = [];
    for (let i = 0; i < N; i++) {
      const wait = t0 + (i * 1000) / RATE - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      all.push(publish(i));
    }
    await Promise.all(all);
    await consumed;
    return (performance.now() - t0) / 1000;
  }
  let next = 0;
  const worker = async () => {
    while (next < N) await publish(next++);
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  await consumed;
  const seconds = (performance.now() - t0) / 1000;
  return seconds;
}

function collector() {
  const lat = [];
  let resolve;
  const consumed = new Promise((r) => (resolve = r));
  return {
    consumed,
    record(t) {
      lat.push(performance.now() - t);
      if (lat.length === N) resolve();
    },
    summary(seconds) {
      const s = lat.slice().sort((a, b) => a - b);
      const cpu = process.cpuUsage(cpuAtStart);
      return { msgsPerSec: Math.round(N / seconds), p50ms: +percentile(s, 50).toFixed(2), p99ms: +percentile(s, 99).toFixed(2), cpuUsPerMsg: +((cpu.user + cpu.system) / N).toFixed(1) };
    },
  };
}

async function bareNats() {
  const { connect } = await import('@nats-io/transport-node');
  const jsMod = await import('@nats-io/jetstream');
  const nc = await connect({ servers: NATS, noAsyncTraces: true }); // the connection options tandem uses
  const jsm = await jsMod.jetstreamManager(nc);
  const js = jsMod.jetstream(nc);
  const id = randomBytes(3).toString('hex');
  const stream = `BENCH_BARE_${id}`;
  const subject = `bench.bare.${id}`;
  await jsm.streams.add({ name: stream, subjects: [subject], storage: jsMod.StorageType.File, duplicate_window: 120e9 });
  await jsm.consumers.add(stream, { durable_name: 'bench', ack_policy: jsMod.AckPolicy.Explicit, deliver_policy: jsMod.DeliverPolicy.New, max_ack_pending: 10_000 });
  const c = collector();
  const consumer = await js.consumers.get(stream, 'bench');
  const messages = await consumer.consume({ max_messages: CONC });
  let inflight = 0;
  const waiters = [];
  void (async () => {
    for await (const m of messages) {
      while (inflight >= CONC) await new Promise((r) => waiters.push(r));
      inflight++;
      void (async () => {
        const p = JSON.parse(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).toString('utf8'));
        c.record(p.t);
        m.ack();
        inflight--;
        waiters.shift()?.();
      })();
    }
  })();
  const seconds = await drive((i) => js.publish(subject, JSON.stringify(payload(i)), { msgID: `bare-${id}-${i}` }), c.consumed);
  messages.stop();
  await jsm.streams.delete(stream);
  await nc.close();
  return c.summary(seconds);
}

async function bareRabbit() {
  const amqp = await import('amqplib');
  const conn = await amqp.connect(AMQP);
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  const queue = `bench.bare.${randomBytes(3).toString('hex')}`;
  await pub.assertExchange('bench.bare', 'direct', { durable: true });
  await sub.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await sub.bindQueue(queue, 'bench.bare', queue);
  await sub.prefetch(CONC);
  const c = collector();
  await sub.consume(queue, (m) => {
    if (m === null) return; // cancelled when the queue is deleted
    const p = JSON.parse(m.content.toString('utf8'));
    c.record(p.t);
    sub.ack(m);
  });
  const seconds = await drive((i) => new Promise((resolve, reject) => {
    pub.publish('bench.bare', queue, Buffer.from(JSON.stringify(payload(i))), { persistent: true, messageId: `${queue}-${i}` }, (err) => (err ? reject(err) : resolve()));
  }), c.consumed);
  await sub.deleteQueue(queue);
  await conn.close();
  return c.summary(seconds);
}

let kafkaCluster;
// The broker's JVM must not outlive a failed run: killed by pid, its temp dir removed.
process.on('exit', () => {
  if (!kafkaCluster) return;
  for (const n of kafkaCluster.nodes) {
    try { process.kill(kafkaCluster.pid(n.id), 'SIGKILL'); } catch { /* gone */ }
  }
  rmSync(kafkaCluster.dir, { recursive: true, force: true });
});
async function kafkaBrokers() {
  if (!kafkaCluster) {
    const { startKafka } = await import('./kafka.js');
    kafkaCluster = await startKafka();
  }
  return kafkaCluster.bootstrap;
}

async function bareKafka() {
  const { Producer, Consumer, Admin, ProduceAcks } = await import('@platformatic/kafka');
  const base = { clientId: 'bench-bare', bootstrapBrokers: await kafkaBrokers() };
  const topic = `bench.bare.${randomBytes(3).toString('hex')}`;
  const admin = new Admin(base);
  await admin.createTopics({ topics: [topic], partitions: 6, replicas: -1 });
  const producer = new Producer({ ...base, acks: ProduceAcks.ALL });
  const consumer = new Consumer({ ...base, groupId: `${topic}.bench`, maxWaitTime: 500 });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: 100 });
  const c = collector();
  let inflight = 0;
  const waiters = [];
  void (async () => {
    for await (const m of stream) {
      while (inflight >= CONC) await new Promise((r) => waiters.push(r));
      inflight++;
      void (async () => {
        const p = JSON.parse(m.value.toString('utf8'));
        c.record(p.t);
        inflight--;
        waiters.shift()?.();
      })();
    }
  })();
  const seconds = await drive((i) => producer.send({ messages: [{ topic, value: Buffer.from(JSON.stringify(payload(i))) }] }), c.consumed);
  await stream.close();
  await new Promise((r) => consumer.close(true, r));
  await producer.close();
  await admin.deleteTopics({ topics: [topic] });
  await admin.close();
  return c.summary(seconds);
}

async function openBus(events, adapter) {
  if (adapter === 'nats') return events.NatsBus.connect({ servers: NATS });
  if (adapter === 'rabbitmq') return events.RabbitMqBus.connect({ url: AMQP });
  if (adapter === 'kafka') return events.KafkaBus.connect({ brokers: await kafkaBrokers() });
  return new events.MemoryBus();
}

async function tandem(events, adapter) {
  const bus = await openBus(events, adapter);
  const topic = `bench.${randomBytes(3).toString('hex')}`;
  const c = collector();
  const sub = await bus.subscribe(topic, 'bench', (m) => c.record(m.payload.t), { concurrency: CONC });
  const seconds = await drive((i) => bus.publish(topic, payload(i)), c.consumed);
  await sub.close();
  if (adapter === 'nats') await bus.deleteTopic(topic);
  if (adapter === 'rabbitmq' || adapter === 'kafka') await bus.deleteTopic(topic, ['bench']);
  await bus.close();
  return c.summary(seconds);
}

const best = (runs) => runs.reduce((a, b) => (b.msgsPerSec > a.msgsPerSec ? b : a));
const bestLatency = (runs) => runs.reduce((a, b) => (b.p99ms < a.p99ms ? b : a));
let mode = 'throughput';

if (!args.includes('--no-build')) {
  const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (b.status !== 0) process.exit(1);
}
const events = await import(join(root, 'dist/src/events/index.js'));
const rows = [];
for (const adapter of ONLY) {
  const runs = { tandem: { throughput: [], latency: [] }, bare: { throughput: [], latency: [] } };
  for (const m of ['throughput', 'latency']) {
    mode = m;
    N = m === 'throughput' ? N_THROUGHPUT : N_LATENCY;
    for (let r = 0; r < ROUNDS; r++) {
      if (adapter === 'nats') runs.bare[m].push(await bareNats());
      if (adapter === 'rabbitmq') runs.bare[m].push(await bareRabbit());
      if (adapter === 'kafka') runs.bare[m].push(await bareKafka());
      runs.tandem[m].push(await tandem(events, adapter));
    }
  }
  const pick = (side) => (runs[side].throughput.length ? { msgsPerSec: best(runs[side].throughput).msgsPerSec, cpuUsPerMsg: Math.min(...runs[side].throughput.map((r) => r.cpuUsPerMsg)), p50ms: bestLatency(runs[side].latency).p50ms, p99ms: bestLatency(runs[side].latency).p99ms } : undefined);
  const row = { adapter, tandem: pick('tandem'), bare: pick('bare'), runs };
  row.ratio = row.bare ? +(row.tandem.msgsPerSec / row.bare.msgsPerSec).toFixed(2) : undefined;
  rows.push(row);
  console.log(`${adapter}: tandem ${JSON.stringify(row.tandem)}${row.bare ? `  bare ${JSON.stringify(row.bare)}  ratio ${row.ratio}` : ''}`);
}
console.log(`\nthroughput: ${N_THROUGHPUT} messages, ${WINDOW} publishes in flight, consumer concurrency ${CONC}; latency: ${N_LATENCY} messages at ${RATE}/s; best of ${ROUNDS}, node ${process.version}`);
console.log('| adapter | tandem msgs/s | bare msgs/s | ratio | tandem / bare CPU µs per msg (this process) | tandem p50 / p99 ms | bare p50 / p99 ms |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  console.log(`| ${r.adapter} | ${r.tandem.msgsPerSec} | ${r.bare?.msgsPerSec ?? '—'} | ${r.ratio ?? '—'} | ${r.tandem.cpuUsPerMsg} / ${r.bare?.cpuUsPerMsg ?? '—'} | ${r.tandem.p50ms} / ${r.tandem.p99ms} | ${r.bare ? `${r.bare.p50ms} / ${r.bare.p99ms}` : '—'} |`);
}
await kafkaCluster?.stop();
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/bench-events-latest.json'), JSON.stringify({ when: new Date().toISOString(), node: process.version, messages: N_THROUGHPUT, window: WINDOW, concurrency: CONC, rate: RATE, latencyMessages: N_LATENCY, rows }, null, 2));
process.exit(0);
