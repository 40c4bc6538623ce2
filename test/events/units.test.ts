import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { Backoff, EVENTS_DEFAULTS, MemoryBus, registerEventMetrics, createEnvelope } from '../../src/events/index.js';
import { HandlerRunner, resolveSubscribeOptions, type Delivery } from '../../src/events/runner.js';
import { encodeEnvelope } from '../../src/events/envelope.js';
import { ROOT } from '../helpers/gateway.js';
import { waitFor } from './contract.js';

test('Backoff: doubles per attempt up to the cap, half of each delay jittered', () => {
  const low = new Backoff(100, 1000, () => 0);
  const high = new Backoff(100, 1000, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5, 10].map((a) => low.delay(a)), [50, 100, 200, 400, 500, 500]);
  assert.deepEqual([1, 2, 3, 4, 5, 10].map((a) => high.delay(a)), [100, 200, 400, 800, 1000, 1000]);
  assert.throws(() => new Backoff(0, 10), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
  assert.throws(() => new Backoff(100, 10), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
});

test('subscribe options are validated with the name of the bad value', () => {
  assert.throws(() => resolveSubscribeOptions({ concurrency: 0 }), { code: 'TANDEM_ERR_INVALID_ARGUMENT', message: /options\.concurrency: expected an integer from 1 to 10000, got 0/ });
  assert.throws(() => resolveSubscribeOptions({ maxAttempts: 1.5 }), /options\.maxAttempts: expected an integer from 1 to 1000, got 1\.5/);
  const d = resolveSubscribeOptions();
  assert.equal(d.concurrency, EVENTS_DEFAULTS.concurrency);
  assert.equal(d.maxAttempts, EVENTS_DEFAULTS.maxAttempts);
});

function fakeDelivery(body: Uint8Array, attempt: number): Delivery & { outcome: string[] } {
  const outcome: string[] = [];
  return {
    outcome,
    body,
    attempt,
    redelivered: attempt > 1,
    ack: () => void outcome.push('ack'),
    retry: (ms) => void outcome.push(`retry ${ms > 0 ? '>0' : '0'}`),
    deadLetter: async (error, attempts) => void outcome.push(`dead ${error.name ?? ''}: ${error.message.slice(0, 40)} after ${attempts}`),
  };
}

test('runner: a message past maxAttempts deliveries (its consumer kept dying) is dead-lettered without running the handler again', async () => {
  const counts = { delivered: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0 };
  let ran = 0;
  const runner = new HandlerRunner('t', 'g', () => void ran++, resolveSubscribeOptions({ maxAttempts: 3 }), counts, () => {});
  const body = encodeEnvelope(createEnvelope('t', 1));
  const poison = fakeDelivery(body, 4);
  await runner.run(poison);
  assert.equal(ran, 0);
  assert.match(poison.outcome[0]!, /^dead DeliveryLimit: delivery limit: 3 deliveries ended witho after 3$/);
  const last = fakeDelivery(body, 3);
  await runner.run(last);
  assert.equal(ran, 1, 'the third try still runs');
  assert.deepEqual(last.outcome, ['ack']);
  assert.deepEqual(counts, { delivered: 2, acked: 1, retried: 0, deadLettered: 1, redelivered: 2 });
});

test('runner: a body that is not an envelope is dead-lettered at once, not retried', async () => {
  const counts = { delivered: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0 };
  const runner = new HandlerRunner('t', 'g', () => {}, resolveSubscribeOptions(), counts, () => {});
  const d = fakeDelivery(Buffer.from('not json'), 1);
  await runner.run(d);
  assert.match(d.outcome[0]!, /^dead SyntaxError/);
  assert.equal(counts.deadLettered, 1);
});

test('registerEventMetrics exposes published, delivered, acked, retried, dead-lettered, redelivered and lag', async () => {
  const bus = new MemoryBus();
  const registry = new Registry();
  registerEventMetrics(registry, bus);
  await bus.subscribe('m.t', 'g', (m) => {
    if (m.payload === 'bad') throw new Error('no');
    if (m.payload === 'flaky' && m.attempt === 1) throw new Error('once');
  }, { maxAttempts: 2, backoff: { initial: 10, max: 10 } });
  await bus.publish('m.t', 'ok');
  await bus.publish('m.t', 'flaky');
  await bus.publish('m.t', 'bad');
  await waitFor('the dead letter', async () => (await bus.deadLetters('m.t', 'g')).length === 1);
  const text = await registry.metrics();
  const value = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1]);
  assert.equal(value('tandem_events_published_total'), 3);
  assert.equal(value('tandem_events_delivered_total'), 5);
  assert.equal(value('tandem_events_acked_total'), 2);
  assert.equal(value('tandem_events_retried_total'), 2);
  assert.equal(value('tandem_events_dead_lettered_total'), 1);
  assert.equal(value('tandem_events_consumer_lag'), 0);
  assert.match(text, /tandem_events_redelivered_total\{topic="m.t",group="g"\} 0/);
  await bus.close();
});

test('docs/events.md lists every events default with the value the code uses', () => {
  const doc = readFileSync(join(ROOT, 'docs/events.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Defaults'));
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').slice(1, -1).map((c) => c.trim());
    if (cells.length >= 2 && cells[0]!.startsWith('`')) rows.set(cells[0]!.replaceAll('`', ''), cells[1]!.replaceAll('`', ''));
  }
  for (const [key, value] of Object.entries(EVENTS_DEFAULTS)) assert.equal(rows.get(key), String(value), `docs/events.md: ${key}`);
  assert.equal(rows.size, Object.keys(EVENTS_DEFAULTS).length, 'no stale rows');
});
