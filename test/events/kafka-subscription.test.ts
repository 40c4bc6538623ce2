import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { Backoff, createEnvelope } from '../../src/events/index.js';
import { encodeEnvelope } from '../../src/events/envelope.js';
import { EventMetrics } from '../../src/events/metrics.js';
import { HandlerRunner, resolveSubscribeOptions } from '../../src/events/runner.js';
import { KafkaSubscription, type KafkaSubscriptionHost } from '../../src/events/kafka-subscription.js';
import { isTandemError } from '../../src/core/errors.js';
import { waitFor } from '../helpers/wait.js';

/**
 * KafkaSubscription over a stand-in for @platformatic/kafka's consumer, for states a real
 * broker reaches only by chance: the consumer's 'error' event (a rejoin that failed for good),
 * and a partition taken away while the subscription waits for that partition's commit window.
 * (test/events/kafka-group-left.test.ts makes a real consumer stop heartbeating.)
 */
const MAIN = 'tandem.t';
const RETRY = 'tandem.t__retry.g';
const names = { topic: 't', group: 'g', groupId: 'tandem.t.g', main: MAIN, retry: RETRY, dlq: 'tandem.t__dlq.g' };

type Assignment = { topic: string; partitions: number[] };

/** A message stream fed by the test. */
class FakeStream extends Readable {
  constructor() {
    super({ objectMode: true, read() {} });
  }
  async close(): Promise<void> {
    this.push(null);
  }
}

/** The parts of the client's Consumer that the subscription and commitWithWindow use. */
class FakeConsumer extends EventEmitter {
  static made: FakeConsumer[] = [];
  readonly groupId: string;
  memberId: string | null = 'member';
  generationId = 1;
  closed = false;
  active = true;
  assignments: Assignment[] = [{ topic: MAIN, partitions: [0, 1] }, { topic: RETRY, partitions: [0, 1] }];
  readonly currentMetadata = { brokers: new Map([[1, { host: '127.0.0.1', port: 1 }]]) };
  readonly streams: FakeStream[] = [];
  constructor(options: { groupId: string }) {
    super();
    this.groupId = options.groupId;
    FakeConsumer.made.push(this);
  }
  isActive(): boolean {
    return this.active && !this.closed;
  }
  async consume(): Promise<FakeStream> {
    const s = new FakeStream();
    this.streams.push(s);
    return s;
  }
  async findGroupCoordinator(): Promise<number> {
    return 1;
  }
  close(_force: boolean, callback: (err?: Error | null) => void): void {
    this.closed = true;
    for (const s of this.streams) s.push(null);
    callback(null);
  }
  /** A record on the consumer's (last) stream. */
  deliver(partition: number, offset: number, key?: string): string {
    const envelope = createEnvelope('t', { partition, offset }, key === undefined ? {} : { key });
    this.streams.at(-1)!.push({ topic: MAIN, partition, offset: BigInt(offset), key, value: encodeEnvelope(envelope), headers: new Map() });
    return envelope.id;
  }
}

function subscription(handler: (id: string) => void | Promise<void>, concurrency: number) {
  FakeConsumer.made = [];
  const errors: unknown[] = [];
  const commits: unknown[] = [];
  const kafka = {
    Consumer: FakeConsumer,
    stringDeserializer: (b: unknown) => b,
    offsetCommitV8: { api: { async: async (...args: unknown[]) => void commits.push(args) } },
  };
  const host: KafkaSubscriptionHost = {
    kafka,
    consumerOptions: {},
    backoff: new Backoff(10, 50),
    onError: (err) => errors.push(err),
    sendUntil: async () => {},
    commitPool: { get: async () => ({}) },
    committed: async () => ({ offset: -1n, metadata: null }),
  };
  const options = resolveSubscribeOptions({ concurrency });
  const runner = new HandlerRunner('t', 'g', async (m) => handler(m.id), options, new EventMetrics().forSubscription('t', 'g'), (err) => errors.push(err)) as HandlerRunner<unknown, unknown>;
  const sub = new KafkaSubscription(host, names, runner, 1_000, () => {});
  return { sub, errors, commits };
}

test("a consumer that emits 'error' (its rejoin failed for good) is closed and replaced by a new one, with no uncaught exception", async () => {
  const handled: string[] = [];
  const { sub, errors } = subscription((id) => void handled.push(id), 4);
  await sub.start();
  const first = FakeConsumer.made[0]!;
  const a = first.deliver(0, 0);
  await waitFor('the first record handled', () => handled.includes(a));

  // What @platformatic/kafka 1.35 does when a heartbeat asked for a rejoin and every try failed.
  first.active = false;
  first.emit('error', new Error('rejoinGroup failed 11 times'));
  const second = await waitFor('a new consumer reading its stream', () => FakeConsumer.made[1]?.streams[0] && FakeConsumer.made[1]);
  assert.ok(first.closed, 'the old consumer is closed');
  const b = second.deliver(0, 1);
  await waitFor('a record of the new consumer handled', () => handled.includes(b));
  const left = errors.filter((e) => isTandemError(e) && e.code === 'TANDEM_ERR_CONSUMER_LEFT_GROUP');
  assert.equal(left.length, 1, 'reported once to onError');
  assert.match(String((left[0] as Error).message), /tandem\.t\.g left the group \(it could not rejoin its group\)/);
  await sub.close();
});

test('a partition taken away while the subscription waits for its commit window does not stall the other partitions', async () => {
  // concurrency 1: a partition runs at most 4 records past its oldest unfinished one.
  let release!: () => void;
  const blocked = new Promise<void>((r) => (release = r));
  const handled: string[] = [];
  let q0 = '';
  const { sub } = subscription(async (id) => {
    handled.push(id);
    if (id === q0) await blocked;
  }, 1);
  await sub.start();
  const c = FakeConsumer.made[0]!;
  q0 = c.deliver(1, 0); // partition 1's first record holds the only handler slot
  await waitFor('the blocking handler to start', () => handled.includes(q0));
  // Partition 0: one key, so 1-3 wait for 0 (not for a slot); 4 is 4 past 0, the oldest unfinished one.
  for (let i = 0; i <= 4; i++) c.deliver(0, i, 'k');
  await waitFor('partition 0 to fill its window', () => c.streams[0]!.readableLength === 0);
  // A rebalance gives partition 0 to another member.
  c.assignments = [{ topic: MAIN, partitions: [1] }, { topic: RETRY, partitions: [1] }];
  c.emit('consumer:group:join', { groupId: names.groupId, memberId: 'member', generationId: 2, isLeader: false, assignments: c.assignments });
  release();
  const q1 = c.deliver(1, 1);
  await waitFor('partition 1 to go on', () => handled.includes(q1));
  assert.deepEqual(handled, [q0, q1], 'the records of the partition taken away are left to its new owner');
  await sub.close();
});
