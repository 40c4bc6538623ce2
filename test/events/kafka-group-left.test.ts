import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import { Admin, type Consumer } from '@platformatic/kafka';
import { KafkaBus, type Subscription } from '../../src/events/index.js';
import { isTandemError } from '../../src/core/errors.js';
import { startKafka, type KafkaCluster } from '../helpers/kafka.js';
import { guarded, waitFor } from '../helpers/wait.js';

/**
 * A consumer whose heartbeats fail for longer than the client retries leaves its group for
 * good: @platformatic/kafka 1.35 cancels the heartbeat timer on any failed heartbeat and, for a
 * failure other than a rebalance, "refreshes" the timer it has just cleared (consumer.js
 * `#heartbeat`), so no heartbeat is ever sent again. Its message stream goes on fetching, so
 * the subscription used to keep it: the group dropped the member, every commit was refused,
 * and the partitions stalled. The fault is the drill's: the group's coordinator SIGKILLed and
 * restarted. The subscription's topics have no replica on that broker, so its message stream
 * does not fail (a stream that fails was already replaced by a new member).
 */
const SESSION = 3_000;
let kafka: KafkaCluster;
let admin: Admin;
let bus: KafkaBus | undefined;
let sub: Subscription | undefined;

before(async () => {
  kafka = await startKafka(3);
  admin = new Admin({ clientId: 'group-left-test', bootstrapBrokers: kafka.bootstrap });
});
after(async () => {
  await sub?.close();
  await bus?.close();
  await admin?.close();
  await kafka?.stop();
});

/** The group's coordinator (a new cluster answers COORDINATOR_NOT_AVAILABLE until its offsets topic is ready). */
function coordinatorOf(groupId: string): Promise<number> {
  return waitFor(`the coordinator of ${groupId}`, async () => {
    const found = await admin.findCoordinator({ keyType: 0, keys: [groupId] }).catch(() => []);
    return found[0]?.nodeId;
  }, { intervalMs: 200 });
}

/** The group's committed offset of the topic's partition 0 and the partition's end. */
async function progress(groupId: string, topic: string): Promise<{ committed: bigint; end: bigint }> {
  const [group] = await admin.listConsumerGroupOffsets({ groups: [{ groupId, topics: [{ name: topic, partitionIndexes: [0] }] }] });
  const ends = await admin.listOffsets({ topics: [{ name: topic, partitions: [{ partitionIndex: 0, timestamp: -1n }] }] });
  return { committed: group?.topics[0]?.partitions[0]?.committedOffset ?? -1n, end: ends[0]?.partitions[0]?.offset ?? 0n };
}

test('a consumer that stopped heartbeating (its coordinator SIGKILLed and restarted) is replaced by a new member: what is published afterwards is handled and committed', async () => {
  const topic = `left.${randomBytes(3).toString('hex')}`;
  const group = 'g';
  const groupId = `tandem.${topic}.${group}`;
  const main = `tandem.${topic}`;
  const coordinator = await coordinatorOf(groupId);
  const others = kafka.nodes.map((n) => n.id).filter((id) => id !== coordinator);
  for (const name of [main, `tandem.${topic}__retry.${group}`, `tandem.${topic}__dlq.${group}`]) {
    await admin.createTopics({ topics: [name], assignments: [{ partition: 0, brokers: others }] });
  }

  // The subscription's consumers, as the client announces them: the first one's heartbeat is watched.
  const consumers: Consumer[] = [];
  const created = ({ type, instance }: { type: string; instance: Consumer }) => {
    if (type === 'consumer' && instance.groupId === groupId) consumers.push(instance);
  };
  const instances = dc.channel('plt:kafka:instances');
  instances.subscribe(created as (m: unknown) => void);
  const errors: unknown[] = [];
  const handled = new Map<string, number>();
  try {
    bus = await KafkaBus.connect({ brokers: kafka.bootstrap, sessionTimeout: SESSION, partitions: 1, replicationFactor: 2, reconnectInitial: 100, reconnectMax: 1_000, onError: (err) => errors.push(err) });
    sub = await bus.subscribe(topic, group, (m) => {
      handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
    }, { concurrency: 4 });
    const first = consumers[0];
    assert.ok(first, 'the subscription created a consumer');
    assert.equal(Number(first.coordinatorId), coordinator, 'the coordinator found beforehand is the consumer\'s');

    const ids: string[] = [];
    const publish = async (n: number) => {
      for (let i = 0; i < n; i++) ids.push((await bus!.publish(topic, { i })).id);
    };
    await publish(5);
    await waitFor('the first records handled', () => ids.every((id) => handled.has(id)));

    const gaveUp = once(first, 'consumer:heartbeat:error');
    await kafka.kill(coordinator, 'SIGKILL');
    await guarded(gaveUp, 'the first consumer\'s heartbeat to give up (its retries used up)');
    await kafka.restart(coordinator);

    await publish(20);
    await waitFor(() => `every record handled (${[...ids].filter((id) => handled.has(id)).length} of ${ids.length})`, () => ids.every((id) => handled.has(id)));
    let last = { committed: -1n, end: 0n };
    await waitFor(() => `the group to commit the whole partition (committed ${last.committed} of ${last.end})`, async () => {
      last = await progress(groupId, main);
      return last.committed === last.end;
    }, { intervalMs: 200 });
    assert.ok(consumers.length > 1, 'a new consumer joined the group');
    assert.ok(errors.some((e) => isTandemError(e) && e.code === 'TANDEM_ERR_CONSUMER_LEFT_GROUP'), 'onError was told that the consumer left its group');
  } finally {
    instances.unsubscribe(created as (m: unknown) => void);
  }
});
