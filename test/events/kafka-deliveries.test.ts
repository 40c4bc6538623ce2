import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { KafkaBus } from '../../src/events/index.js';
import { EVENTS_DEFAULTS } from '../../src/events/defaults.js';
import { ROOT } from '../helpers/gateway.js';
import { followJsonLines, type JsonLines } from '../helpers/json-lines.js';
import { startKafka, type KafkaCluster } from '../helpers/kafka.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Kafka keeps no delivery count; the adapter keeps one in its commit metadata, written before a
 * handler runs. Real consumer processes, killed with SIGKILL mid-handler: a message that kills
 * its consumer every time is dead-lettered after maxAttempts deliveries (it does not loop for
 * ever), and a message whose consumer died once is handled once by the next, marked redelivered.
 */
const SESSION = 1_500;
/** One partition: the poison message and its neighbours are handled side by side by one consumer. */
const PARTITIONS = 1;
let kafka: KafkaCluster;
let bus: KafkaBus;
const children: ChildProcess[] = [];

interface Consumer {
  proc: ChildProcess;
  out: JsonLines;
  exited: Promise<unknown>;
}

async function startConsumer(topic: string, group: string, hang = false): Promise<Consumer> {
  const script = join(ROOT, 'dist', 'test', 'helpers', 'kafka-crasher.js');
  const proc = spawn(process.execPath, [script, JSON.stringify({ brokers: kafka.bootstrap, topic, group, sessionTimeout: SESSION, hang, partitions: PARTITIONS })], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const exited = new Promise((r) => proc.once('exit', r));
  const out = followJsonLines(proc, exited, 'the consumer process');
  await out.waitFor((l) => l.event === 'ready');
  return { proc, out, exited };
}

async function kill(c: Consumer): Promise<void> {
  if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await c.exited;
}

/** Starts a consumer after each one that died, until the group's dead-letter topic has a record; at most `deaths` deaths. */
async function untilDeadLettered(topic: string, group: string, consumers: Consumer[], deaths: number): Promise<void> {
  for (;;) {
    const current = consumers.at(-1)!;
    const outcome = await Promise.race([current.exited.then(() => 'died' as const), waitFor('the dead letter', async () => (await bus.deadLetters(topic, group)).length > 0 || undefined).then(() => 'dead-lettered' as const)]);
    if (outcome === 'dead-lettered') return;
    assert.ok(consumers.length <= deaths, `a consumer process died on the poison message ${consumers.length} times: at most ${deaths}`);
    consumers.push(await startConsumer(topic, group));
  }
}

const linesOf = (cs: Consumer[], event: string, id: string) => cs.flatMap((c) => c.out.lines.filter((l) => l.event === event && l.id === id));

describe('Kafka: a delivery count that survives consumer crashes', () => {
  before(async () => {
    kafka = await startKafka();
    bus = await KafkaBus.connect({ brokers: kafka.bootstrap, partitions: PARTITIONS });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await bus?.close();
    await kafka?.stop();
  });

  test('a message that kills its consumer every time is dead-lettered after maxAttempts deliveries; its neighbours are not', async () => {
    const topic = `deliveries.poison.${randomBytes(3).toString('hex')}`;
    const group = 'poison';
    const limit = EVENTS_DEFAULTS.maxAttempts;
    const consumers: Consumer[] = [await startConsumer(topic, group)];
    // Neighbours in the same partition, before and after it, run beside it and die with its consumer.
    const neighbours: string[] = [];
    for (let i = 0; i < 4; i++) neighbours.push((await bus.publish(topic, { crash: false })).id);
    const poison = await bus.publish(topic, { crash: true });
    for (let i = 0; i < 4; i++) neighbours.push((await bus.publish(topic, { crash: false })).id);
    // Each consumer dies on it; the next one takes the partition over once the dead one's session ended.
    await untilDeadLettered(topic, group, consumers, limit);
    const started = linesOf(consumers, 'started', poison.id);
    assert.equal(started.length, limit, 'the handler ran maxAttempts times');
    assert.deepEqual(started.map((l) => l.attempt), Array.from({ length: limit }, (_, i) => i + 1));
    assert.deepEqual(started.map((l) => l.redelivered), [false, ...Array.from({ length: limit - 1 }, () => true)]);
    const [dead] = await bus.deadLetters(topic, group);
    assert.equal(dead?.envelope.id, poison.id);
    assert.equal(dead?.error.name, 'DeliveryLimit');
    assert.match(dead?.error.message ?? '', new RegExp(`delivery limit: ${limit} deliveries ended without an outcome`));
    assert.equal(dead?.attempts, limit);
    // The neighbours: each handled, none dead-lettered. Once the first crash made them suspects,
    // each runs alone, so the later crashes do not count against them.
    const last = consumers.at(-1)!;
    for (const id of neighbours) await waitFor(`neighbour ${id} handled`, () => linesOf(consumers, 'handled', id).length > 0 || undefined);
    assert.deepEqual((await bus.deadLetters(topic, group)).map((d) => d.envelope.id), [poison.id], 'only the poison message is dead-lettered');
    // The partition goes on: the next message is handled by the consumer that dead-lettered the poison one.
    const next = await bus.publish(topic, { crash: false });
    const handled = await last.out.waitFor((l) => l.event === 'handled' && l.id === next.id);
    assert.equal(handled.redelivered, false);
    await kill(last);
  });

  test('past a new owner\'s first 4 × concurrency records a handler starts without waiting for a commit; a poison message there is still dead-lettered, after at most maxAttempts + 1 runs, and nothing is lost', async () => {
    const topic = `deliveries.later.${randomBytes(3).toString('hex')}`;
    const group = 'later';
    const limit = EVENTS_DEFAULTS.maxAttempts;
    const consumers: Consumer[] = [await startConsumer(topic, group)];
    // Past the careful window of the consumer that has the partition.
    const early: string[] = [];
    for (let i = 0; i < 4 * EVENTS_DEFAULTS.concurrency + 8; i++) early.push((await bus.publish(topic, { crash: false })).id);
    for (const id of early) await waitFor(`${id} handled`, () => linesOf(consumers, 'handled', id).length > 0 || undefined);
    const poison = await bus.publish(topic, { crash: true });
    await untilDeadLettered(topic, group, consumers, limit + 1);
    const runs = linesOf(consumers, 'started', poison.id).length;
    assert.ok(runs === limit || runs === limit + 1, `the handler ran ${runs} times (maxAttempts ${limit}, one more when the first start's commit was lost with its consumer)`);
    const [dead] = await bus.deadLetters(topic, group);
    assert.equal(dead?.envelope.id, poison.id);
    assert.equal(dead?.error.name, 'DeliveryLimit');
    // Nothing lost. (At least once: a record whose outcome had not been committed when its
    // consumer died on the poison message comes again; the inbox makes that harmless.)
    for (const id of early) assert.ok(linesOf(consumers, 'handled', id).length >= 1, `${id} handled`);
    await kill(consumers.at(-1)!);
  });

  test('a message whose consumer was SIGKILLed mid-handler is handled once by the next, marked redelivered', async () => {
    const topic = `deliveries.once.${randomBytes(3).toString('hex')}`;
    const group = 'once';
    const doomed = await startConsumer(topic, group, true);
    const m = await bus.publish(topic, { crash: false }, { key: 'k' });
    const first = await doomed.out.waitFor((l) => l.event === 'started' && l.id === m.id);
    assert.equal(first.attempt, 1);
    assert.equal(first.redelivered, false);
    await kill(doomed);
    const next = await startConsumer(topic, group);
    const handled = await next.out.waitFor((l) => l.event === 'handled' && l.id === m.id);
    assert.equal(handled.attempt, 2);
    assert.equal(handled.redelivered, true);
    assert.equal(handled.redeliveredCount, 1, 'counted in the redelivered metric');
    // A later message of the same partition handled means the first was committed: it does not come again.
    const later = await bus.publish(topic, { crash: false }, { key: 'k' });
    const laterHandled = await next.out.waitFor((l) => l.event === 'handled' && l.id === later.id);
    assert.equal(laterHandled.redelivered, false);
    assert.equal(linesOf([doomed, next], 'handled', m.id).length, 1, 'handled once');
    assert.equal(linesOf([next], 'started', m.id).length, 1);
    await kill(next);
  });
});
