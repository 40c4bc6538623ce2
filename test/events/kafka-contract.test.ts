import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Admin } from '@platformatic/kafka';
import { KafkaBus } from '../../src/events/index.js';
import { startKafka, type KafkaCluster } from '../helpers/kafka.js';
import { runBusContract, uniqueTopic, waitFor } from './contract.js';

let kafka: KafkaCluster | undefined;
before(async () => {
  kafka = await startKafka();
});
after(async () => {
  await kafka?.stop();
});

runBusContract({
  name: 'Apache Kafka (a broker of its own, scripts/kafka.js)',
  open: () => KafkaBus.connect({ brokers: kafka!.bootstrap }),
  remove: async (bus, topic, groups) => (bus as KafkaBus).deleteTopic(topic, groups),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Kafka adapter', () => {
  let bus: KafkaBus;
  const topics: Array<[string, string[]]> = [];
  before(async () => {
    bus = await KafkaBus.connect({ brokers: kafka!.bootstrap });
  });
  after(async () => {
    for (const [t, g] of topics) await bus.deleteTopic(t, g);
    await bus.close();
  });

  // platformatic/kafka#326: the idempotent producer numbered concurrent sends alike and the
  // broker kept one of each pair (6 of 12 here); every publish resolved all the same.
  test('issue-326: concurrent publishes all land on the broker, each at an offset of its own', async () => {
    const topic = uniqueTopic('kafka');
    topics.push([topic, []]);
    await Promise.all(Array.from({ length: 60 }, (_, i) => bus.publish(topic, i)));
    const admin = new Admin({ clientId: 'test', bootstrapBrokers: kafka!.bootstrap });
    try {
      const ends = await admin.listOffsets({ topics: [{ name: bus.topicName(topic), partitions: Array.from({ length: 6 }, (_, partitionIndex) => ({ partitionIndex, timestamp: -1n })) }] });
      assert.equal(ends[0]!.partitions.reduce((n, p) => n + Number(p.offset), 0), 60);
    } finally {
      await admin.close();
    }
  });

  test('records with the same key are handled one after another in publish order; other keys run beside them', async () => {
    const topic = uniqueTopic('kafka');
    topics.push([topic, ['o']]);
    const seen = new Map<string, number[]>();
    let running = 0;
    let peak = 0;
    const sub = await bus.subscribe<{ key: string; n: number }>(topic, 'o', async (m) => {
      running++;
      peak = Math.max(peak, running);
      // Even numbers take longer: run side by side, each odd one would finish before its predecessor.
      await sleep(m.payload.n % 2 === 0 ? 15 : 1);
      seen.set(m.payload.key, [...(seen.get(m.payload.key) ?? []), m.payload.n]);
      running--;
    }, { concurrency: 8 });
    const keys = ['a', 'b', 'c', 'd'];
    await bus.publish(topic, { key: 'warm-up', n: 0 }); // the topic exists: the publishes below are sent in call order
    const sends: Array<Promise<unknown>> = [];
    for (let n = 0; n < 20; n++) for (const key of keys) sends.push(bus.publish(topic, { key, n }, { key }));
    await Promise.all(sends);
    await waitFor('81 handled', () => [...seen.values()].reduce((x, v) => x + v.length, 0) === 81);
    for (const key of keys) assert.deepEqual(seen.get(key), Array.from({ length: 20 }, (_, n) => n), `key ${key} in order`);
    assert.ok(peak > 1, `different keys ran concurrently (peak ${peak})`);
    await sub.close();
  });

  test('trace context and the message id travel in the record headers too', async () => {
    const topic = uniqueTopic('kafka');
    topics.push([topic, []]);
    const env = await bus.publish(topic, 'x', { tracestate: 'v=1' });
    const { Consumer, stringDeserializers } = await import('@platformatic/kafka');
    const consumer = new Consumer({ clientId: 'test', groupId: `raw-${topic}`, bootstrapBrokers: kafka!.bootstrap, deserializers: stringDeserializers });
    try {
      const stream = await consumer.consume({ topics: [bus.topicName(topic)], mode: 'earliest', autocommit: false });
      for await (const record of stream) {
        assert.equal(record.headers.get('traceparent'), env.trace.traceparent);
        assert.equal(record.headers.get('tracestate'), 'v=1');
        assert.equal(record.headers.get('tandem-id'), env.id);
        break;
      }
      await stream.close();
    } finally {
      await consumer.close(true);
    }
  });
});
