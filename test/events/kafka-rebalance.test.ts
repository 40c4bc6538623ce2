import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { PoolClient } from 'pg';
import { KafkaBus, PostgresInbox, type Subscription } from '../../src/events/index.js';
import { ROOT } from '../helpers/gateway.js';
import { startKafka, type KafkaCluster } from '../helpers/kafka.js';
import { GUARD_MS, waitFor } from '../helpers/wait.js';

/**
 * Partition rebalances with the PostgreSQL inbox: a consumer joining the group, one leaving it
 * (close), one SIGKILLed. Every message must have its effect (a row written in the inbox's
 * transaction) exactly once, and the rebalance must really have moved work between consumers.
 */
const table = `tandem_kafka_rebalance_${randomBytes(4).toString('hex')}`;
const SESSION = 3_000;
let kafka: KafkaCluster;
let admin: PostgresInbox<PoolClient>;
const buses: KafkaBus[] = [];
const children: ChildProcess[] = [];

async function bus(): Promise<KafkaBus> {
  const b = await KafkaBus.connect({ brokers: kafka.bootstrap, sessionTimeout: SESSION });
  buses.push(b);
  return b;
}

async function subscribe(b: KafkaBus, topic: string, who: string): Promise<Subscription> {
  const inbox = await PostgresInbox.connect<PoolClient>({ table: `${table}_inbox` });
  const sub = await b.subscribe(topic, 'rebalance', async (m, tx) => {
    await tx.query(`INSERT INTO ${table}_effects (id, who) VALUES ($1, $2)`, [m.id, who]);
  }, { inbox, concurrency: 4 });
  const close = sub.close.bind(sub);
  return Object.assign(sub, { close: async () => { await close(); await inbox.close(); } });
}

function startChild(topic: string, who: string): Promise<ChildProcess> {
  const script = join(ROOT, 'dist', 'test', 'helpers', 'kafka-consumer.js');
  const child = spawn(process.execPath, [script, JSON.stringify({ brokers: kafka.bootstrap, topic, group: 'rebalance', table, who, sessionTimeout: SESSION })], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the consumer process did not get ready')), GUARD_MS);
    child.stdout!.on('data', (d) => {
      if (String(d).includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`the consumer process exited early (${code})`)));
  });
}

async function effects(): Promise<Map<string, string[]>> {
  const rows = (await admin.pool.query(`SELECT id, who FROM ${table}_effects`)).rows as Array<{ id: string; who: string }>;
  const by = new Map<string, string[]>();
  for (const r of rows) by.set(r.id, [...(by.get(r.id) ?? []), r.who]);
  return by;
}

async function handledBy(who: string): Promise<number> {
  return Number(((await admin.pool.query(`SELECT count(*) AS n FROM ${table}_effects WHERE who = $1`, [who])).rows[0] as { n: string }).n);
}

/** Every id once: none missing, none twice. */
async function assertOnce(ids: string[]): Promise<void> {
  const mine = new Set(ids);
  const ours = async () => new Map([...(await effects())].filter(([id]) => mine.has(id)));
  let have = 0;
  await waitFor(() => `all ${ids.length} effects (have ${have})`, async () => (have = (await ours()).size) >= ids.length);
  const by = await ours();
  assert.deepEqual(ids.filter((id) => !by.has(id)), [], 'lost');
  assert.deepEqual([...by].filter(([, w]) => w.length > 1), [], 'duplicate effects');
}

describe('Kafka: partition rebalances lose nothing and, with the inbox, cause no duplicate effects', () => {
  before(async () => {
    kafka = await startKafka();
    admin = await PostgresInbox.connect<PoolClient>({ table: `${table}_inbox` });
    await admin.pool.query(`CREATE TABLE ${table}_effects (id text NOT NULL, who text NOT NULL)`);
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const b of buses) await b.close();
    await admin?.pool.query(`DROP TABLE IF EXISTS ${table}_effects; DROP TABLE IF EXISTS ${table}_inbox`);
    await admin?.close();
    await kafka?.stop();
  });

  test('a consumer joins, then the first one leaves (close) while messages flow', async () => {
    const topic = `rebalance.join.${randomBytes(3).toString('hex')}`;
    const producer = await bus();
    const first = await subscribe(await bus(), topic, 'first');
    const ids: string[] = [];
    let second: Subscription | undefined;
    for (let i = 0; i < 240; i++) {
      ids.push((await producer.publish(topic, { i })).id);
      if (i === 60) second = await subscribe(await bus(), topic, 'second');
      // the second consumer must have taken over partitions before the first leaves
      if (i === 160) {
        await waitFor('the second consumer to handle messages', async () => (await handledBy('second')) > 0);
        await first.close();
      }
    }
    await assertOnce(ids);
    assert.ok((await handledBy('first')) > 0, 'the first consumer handled messages');
    assert.ok((await handledBy('second')) > 0, 'the second consumer handled messages');
    await second!.close();
  });

  test('a consumer process is SIGKILLed: its partitions go to the other after the session timeout', async () => {
    const topic = `rebalance.kill.${randomBytes(3).toString('hex')}`;
    const producer = await bus();
    const child = await startChild(topic, 'killed');
    const survivor = await subscribe(await bus(), topic, 'survivor');
    const ids: string[] = [];
    for (let i = 0; i < 120; i++) ids.push((await producer.publish(topic, { i })).id);
    await waitFor('the doomed process to handle messages', async () => (await handledBy('killed')) > 0);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    const before = await handledBy('survivor');
    for (let i = 120; i < 240; i++) ids.push((await producer.publish(topic, { i })).id);
    await assertOnce(ids);
    assert.ok((await handledBy('survivor')) > before, 'the survivor took over');
    await survivor.close();
  });
});
