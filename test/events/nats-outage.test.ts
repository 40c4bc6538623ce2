import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { NatsBus, MemoryInbox, type Message } from '../../src/events/index.js';
import { startNatsServer } from '../helpers/nats-server.js';
import { uniqueTopic, waitFor } from './contract.js';

const server = await startNatsServer();
after(() => server.destroy());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('NATS restarted: a publish during the outage waits and is confirmed after; the consumer resubscribes; nothing lost', async () => {
  const bus = await NatsBus.connect({ servers: server.url, publishTimeout: 20_000, reconnectInitial: 50, reconnectMax: 300 });
  const topic = uniqueTopic('outage');
  const effects = new Map<number, number>();
  const sub = await bus.subscribe<number>(topic, 'g', (m: Message<number>) => void effects.set(m.payload, (effects.get(m.payload) ?? 0) + 1), { inbox: new MemoryInbox() });
  for (let i = 0; i < 20; i++) await bus.publish(topic, i);
  await waitFor('the first 20', () => effects.size === 20);
  await server.stop();
  const started = Date.now();
  const during = bus.publish(topic, 20);
  let settled = false;
  void during.finally(() => (settled = true)).catch(() => {});
  // A negative check: a second with the broker down (stopped above, for real) and no answer.
  await sleep(1_000);
  assert.equal(settled, false, 'the publish waits while the broker is down');
  await server.start();
  await during;
  assert.ok(Date.now() - started >= 1_000);
  for (let i = 21; i < 40; i++) await bus.publish(topic, i);
  await waitFor('all 40 after the restart', () => effects.size === 40);
  assert.ok([...effects.values()].every((n) => n === 1), 'each effect once');
  await sub.close();
  await bus.deleteTopic(topic);
  await bus.close();
});

test('NATS down longer than publishTimeout: the publish fails with a retryable TANDEM_ERR_PUBLISH_FAILED', async () => {
  const bus = await NatsBus.connect({ servers: server.url, publishTimeout: 800, reconnectMax: 200 });
  const topic = uniqueTopic('outage');
  await bus.publish(topic, 'up');
  await server.stop();
  const t0 = Date.now();
  await assert.rejects(bus.publish(topic, 'down'), (err: { code: string; retryable: boolean }) => {
    assert.equal(err.code, 'TANDEM_ERR_PUBLISH_FAILED');
    assert.equal(err.retryable, true);
    return true;
  });
  // Not before publishTimeout: timed from before the publish, a bound load cannot break.
  const took = Date.now() - t0;
  assert.ok(took >= 700, `failed after publishTimeout, took ${took} ms`);
  await server.start();
  await bus.publish(topic, 'up again');
  await bus.deleteTopic(topic);
  await bus.close();
});

test('NATS: a consumer that dies mid-handler has its message redelivered to the group (attempt 2, redelivered)', async () => {
  const topic = uniqueTopic('crash');
  const dying = await NatsBus.connect({ servers: server.url, ackWait: 1_000, drainTimeout: 100 });
  const healthy = await NatsBus.connect({ servers: server.url, ackWait: 1_000 });
  let stuck = 0;
  await dying.subscribe(topic, 'g', () => {
    stuck++;
    return new Promise<void>(() => {}); // never finishes: the process "dies" below
  });
  await dying.publish(topic, 'job');
  await waitFor('the dying consumer to take it', () => stuck === 1);
  const got: Message[] = [];
  const sub = await healthy.subscribe(topic, 'g', (m) => void got.push(m));
  await dying.connection.close(); // gone without an ack
  await waitFor('the redelivery', () => got.length === 1);
  assert.equal(got[0]!.payload, 'job');
  assert.equal(got[0]!.attempt, 2);
  assert.equal(got[0]!.redelivered, true);
  assert.equal((await healthy.stats()).subscriptions[`${topic}/g`]!.redelivered, 1);
  await sub.close();
  await healthy.deleteTopic(topic);
  await healthy.close();
  await dying.close();
});
