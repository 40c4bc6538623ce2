import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { RabbitMqBus, MemoryInbox, type Message } from '../../src/events/index.js';
import { closeRabbitConnections } from '../helpers/rabbitmq.js';
import { uniqueTopic, waitFor } from './contract.js';

const url = process.env.TANDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Kills the client's TCP socket: the connection is lost as in a network cut or broker crash. */
function cutSocket(bus: RabbitMqBus): void {
  // amqplib's ChannelModel at run time; its Connection's socket.
  (bus.connection as unknown as { connection: { stream: Socket } }).connection.stream.destroy(new Error('test: connection cut'));
}

test('RabbitMQ connection closed by the broker: the bus reconnects, resubscribes, and a publish during the cut is confirmed after', async () => {
  const name = `tandem-test-${randomBytes(4).toString('hex')}`;
  const bus = await RabbitMqBus.connect({ url, name, reconnectInitial: 300, reconnectMax: 600, publishTimeout: 15_000 });
  const topic = uniqueTopic('outage');
  const effects = new Map<number, number>();
  const sub = await bus.subscribe<number>(topic, 'g', (m: Message<number>) => void effects.set(m.payload, (effects.get(m.payload) ?? 0) + 1), { inbox: new MemoryInbox() });
  for (let i = 0; i < 20; i++) await bus.publish(topic, i);
  await waitFor('the first 20', () => effects.size === 20);
  assert.equal(await closeRabbitConnections(name), 1, 'the broker closed our connection');
  await waitFor('the bus to notice', () => bus.connection === undefined);
  const during = bus.publish(topic, 20);
  for (let i = 21; i < 40; i++) await bus.publish(topic, i);
  await during;
  await waitFor('all 40 after the reconnect', () => effects.size === 40);
  assert.ok([...effects.values()].every((n) => n === 1), 'each effect once');
  await sub.close();
  await bus.deleteTopic(topic, ['g']);
  await bus.close();
});

test('RabbitMQ socket cut longer than publishTimeout: the publish fails with a retryable TANDEM_ERR_PUBLISH_FAILED', async () => {
  const bus = await RabbitMqBus.connect({ url, publishTimeout: 600, reconnectInitial: 2_000, reconnectMax: 2_000 });
  const topic = uniqueTopic('outage');
  cutSocket(bus);
  await waitFor('the bus to notice', () => bus.connection === undefined);
  const t0 = Date.now();
  await assert.rejects(bus.publish(topic, 'down'), (err: { code: string; retryable: boolean }) => {
    assert.equal(err.code, 'TANDEM_ERR_PUBLISH_FAILED');
    assert.equal(err.retryable, true);
    return true;
  });
  // Failed at publishTimeout (600 ms), not held until the reconnect (2 s): the bus is still
  // disconnected when the publish fails.
  assert.equal(bus.connection, undefined, 'the publish waited for the reconnect');
  assert.ok(Date.now() - t0 >= 500, 'failed before publishTimeout');
  await waitFor('the reconnect', () => bus.connection !== undefined);
  await bus.publish(topic, 'up again');
  await bus.close();
});

test('RabbitMQ: a consumer whose connection dies mid-handler has its message redelivered to the group (attempt 2, redelivered)', async () => {
  const topic = uniqueTopic('crash');
  const dying = await RabbitMqBus.connect({ url, reconnectInitial: 60_000, reconnectMax: 60_000, drainTimeout: 100 });
  const healthy = await RabbitMqBus.connect({ url });
  let stuck = 0;
  await dying.subscribe(topic, 'g', () => {
    stuck++;
    return new Promise<void>(() => {});
  });
  const got: Message[] = [];
  await dying.publish(topic, 'job');
  await waitFor('the dying consumer to take it', () => stuck === 1);
  await healthy.subscribe(topic, 'g', (m) => void got.push(m));
  cutSocket(dying);
  await waitFor('the redelivery', () => got.length === 1);
  assert.equal(got[0]!.payload, 'job');
  assert.equal(got[0]!.attempt, 2);
  assert.equal(got[0]!.redelivered, true);
  await waitFor('the redelivery counted', async () => (await healthy.stats()).subscriptions[`${topic}/g`]?.redelivered === 1);
  await healthy.deleteTopic(topic, ['g']);
  await healthy.close();
  await dying.close();
});
