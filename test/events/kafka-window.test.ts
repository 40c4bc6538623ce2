import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEnvelope } from '../../src/events/index.js';
import { encodeEnvelope } from '../../src/events/envelope.js';
import { PartitionProgress } from '../../src/events/kafka-offsets.js';
import { decodeWindow, encodeWindow, WINDOW_MAX_CHARS } from '../../src/events/kafka-window.js';
import { HandlerRunner, resolveSubscribeOptions } from '../../src/events/runner.js';

test('delivery window: started counts and done records round-trip relative to the committed offset', () => {
  const s = encodeWindow(100n, [[100n, 2], [103n, 0], [105n, 1], [99n, 4]]);
  assert.equal(s, 'tk1;0.2,5.1,3.0');
  assert.deepEqual([...decodeWindow(100n, s)], [[100n, 2], [105n, 1], [103n, 0]]);
  // Another client's metadata, or none, is an empty window.
  assert.equal(decodeWindow(100n, 'something else').size, 0);
  assert.equal(decodeWindow(100n, null).size, 0);
  assert.equal(decodeWindow(-1n, s).size, 0);
});

test('delivery window: longer than the broker takes, started records are kept before done ones', () => {
  const entries: Array<[bigint, number]> = [];
  for (let i = 0n; i < 2000n; i++) entries.push([i, i % 2n === 0n ? 0 : 3]);
  const s = encodeWindow(0n, entries);
  assert.ok(s.length <= WINDOW_MAX_CHARS);
  const w = decodeWindow(0n, s);
  assert.ok([...w.values()].every((n) => n === 3), 'only started records fit');
  assert.equal(w.get(1n), 3);
});

test('PartitionProgress: the next owner sees what the previous one started and finished', () => {
  const a = new PartitionProgress('t', 0);
  for (const o of [10n, 11n, 12n, 13n]) a.take(o);
  assert.equal(a.start(10n), 1);
  assert.equal(a.start(11n), 1);
  a.finish(11n); // done past the commit point (10 has no outcome)
  assert.equal(a.commitPoint, 10n);
  const metadata = a.window(a.commitPoint);
  // a dies; b takes the partition over at the committed offset 10
  const b = new PartitionProgress('t', 0, decodeWindow(10n, metadata));
  for (const o of [10n, 11n, 12n]) b.take(o);
  assert.equal(b.start(10n), 2, 'started once before: the second delivery');
  assert.equal(b.wasDone(11n), true, 'had its outcome: skipped');
  assert.equal(b.wasDone(12n), false);
  assert.equal(b.start(12n), 1, 'taken but never started: a first delivery');
  // b has not taken 13 yet; had a started it, b's commits would keep its count.
  b.finish(11n);
  b.finish(10n);
  assert.equal(b.commitPoint, 12n);
  assert.equal(b.window(b.commitPoint), 'tk1;0.1');
});

test('PartitionProgress: counts of records the new owner has not reached yet stay in its commits', () => {
  const b = new PartitionProgress('t', 0, new Map([[20n, 3]]));
  b.take(18n);
  b.start(18n);
  assert.equal(b.window(18n), 'tk1;0.1,2.3');
  b.finish(18n);
  assert.equal(b.window(b.commitPoint), 'tk1;1.3');
});

test('runner: begin() holds the slot, decides attempt and redelivered, and false leaves the message alone', async () => {
  const counts = { delivered: 0, acked: 0, retried: 0, deadLettered: 0, redelivered: 0 };
  const seen: Array<[number, boolean]> = [];
  const runner = new HandlerRunner<unknown, undefined>('t', 'g', (m) => void seen.push([m.attempt, m.redelivered]), resolveSubscribeOptions({ concurrency: 1 }), counts, () => {});
  const body = encodeEnvelope(createEnvelope('t', 1));
  const outcome: string[] = [];
  let starts = 1;
  let release!: (ours: boolean) => void;
  const d = {
    body,
    get attempt() { return starts; },
    get redelivered() { return starts > 1; },
    begin: () => {
      starts = 2;
      return new Promise<boolean>((r) => (release = r));
    },
    ack: () => void outcome.push('ack'),
    retry: () => void outcome.push('retry'),
    deadLetter: async () => void outcome.push('dead'),
  };
  const running = runner.run(d);
  assert.equal(runner.hasSlot, false, 'the slot is held while the start is recorded');
  release(true);
  await running;
  assert.deepEqual(seen, [[2, true]]);
  assert.deepEqual(outcome, ['ack']);
  assert.equal(counts.redelivered, 1);
  const lost = runner.run({ ...d, begin: () => false });
  await lost;
  assert.deepEqual(outcome, ['ack'], 'not ours: no outcome');
  assert.equal(counts.delivered, 1, 'nor counted as delivered');
});
