import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Bus, Message } from '../../src/events/index.js';
import { MemoryInbox } from '../../src/events/index.js';
import { waitFor as waitForState } from '../helpers/wait.js';

/** What the contract needs from an adapter under test. */
export interface ContractTarget {
  name: string;
  open(): Promise<Bus>;
  /** Removes what a topic's groups created on the broker (streams, queues). */
  remove(bus: Bus, topic: string, groups: string[]): Promise<void>;
}

export function uniqueTopic(prefix = 'contract'): string {
  return `${prefix}.${randomBytes(4).toString('hex')}`;
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  await waitForState(what, cond, { intervalMs: 20 });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The promises every Bus adapter keeps. Runs against memory, NATS JetStream and RabbitMQ
 * (test/events/*-contract.test.ts), each against a real broker.
 */
export function runBusContract(target: ContractTarget): void {
  describe(`Bus contract: ${target.name}`, () => {
    let bus: Bus;
    const created: Array<[string, string[]]> = [];
    const topicFor = (groups: string[]) => {
      const t = uniqueTopic();
      created.push([t, groups]);
      return t;
    };
    after(async () => {
      for (const [t, groups] of created) await target.remove(bus, t, groups).catch(() => {});
      await bus?.close();
    });

    test('publish resolves with the envelope; the subscriber gets payload, metadata and attempt 1', async () => {
      bus = await target.open();
      const topic = topicFor(['g1']);
      const got: Message[] = [];
      const sub = await bus.subscribe(topic, 'g1', (m) => void got.push(m));
      const env = await bus.publish(topic, { n: 1 }, { key: 'k1', headers: { 'x-tenant': 'a' } });
      assert.equal(env.topic, topic);
      assert.match(env.id, /^[0-9a-f-]{36}$/);
      assert.equal(env.correlationId, env.id);
      assert.match(env.trace.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      await waitFor('the delivery', () => got.length === 1);
      const m = got[0]!;
      assert.deepEqual(m.payload, { n: 1 });
      assert.equal(m.id, env.id);
      assert.equal(m.key, 'k1');
      assert.deepEqual(m.headers, { 'x-tenant': 'a' });
      assert.equal(m.time, env.time);
      assert.equal(m.attempt, 1);
      assert.equal(m.redelivered, false);
      const child = await bus.publish(topic, { n: 2 }, { causedBy: m });
      assert.equal(child.correlationId, env.id);
      assert.equal(child.causationId, env.id);
      assert.equal(child.trace.traceparent.slice(3, 35), env.trace.traceparent.slice(3, 35), 'same trace id');
      assert.notEqual(child.trace.traceparent, env.trace.traceparent, 'a new span');
      await waitFor('the second delivery', () => got.length === 2);
      await sub.close();
    });

    test('competing consumers share a group; every group gets every message', async () => {
      const topic = topicFor(['a', 'b']);
      const seenA = new Map<string, number>();
      const perSub = [0, 0];
      const seenB = new Map<string, number>();
      const subs = [
        await bus.subscribe(topic, 'a', async (m) => { seenA.set(m.id, (seenA.get(m.id) ?? 0) + 1); perSub[0]!++; await sleep(5); }, { concurrency: 2 }),
        await bus.subscribe(topic, 'a', async (m) => { seenA.set(m.id, (seenA.get(m.id) ?? 0) + 1); perSub[1]!++; await sleep(5); }, { concurrency: 2 }),
        await bus.subscribe(topic, 'b', (m) => void seenB.set(m.id, (seenB.get(m.id) ?? 0) + 1)),
      ];
      const ids = new Set<string>();
      for (let i = 0; i < 40; i++) ids.add((await bus.publish(topic, { i })).id);
      await waitFor('both groups to see all 40', () => seenA.size === 40 && seenB.size === 40);
      await sleep(200);
      assert.deepEqual(new Set(seenA.keys()), ids);
      assert.deepEqual(new Set(seenB.keys()), ids);
      assert.ok([...seenA.values()].every((n) => n === 1), 'each message once within group a');
      assert.ok([...seenB.values()].every((n) => n === 1), 'each message once within group b');
      assert.equal(perSub[0]! + perSub[1]!, 40);
      assert.ok(perSub[0]! > 0 && perSub[1]! > 0, `both competing subscribers got work: ${perSub.join(', ')}`);
      for (const s of subs) await s.close();
    });

    test('a failing handler is retried with growing backoff, attempt counted', async () => {
      const topic = topicFor(['r']);
      const tries: Array<{ attempt: number; at: number }> = [];
      const sub = await bus.subscribe(topic, 'r', (m) => {
        tries.push({ attempt: m.attempt, at: Date.now() });
        if (m.attempt < 3) throw new Error(`fail ${m.attempt}`);
      }, { maxAttempts: 5, backoff: { initial: 200, max: 1000 } });
      await bus.publish(topic, 'x');
      await waitFor('three tries', () => tries.length === 3);
      await sleep(300);
      assert.deepEqual(tries.map((t) => t.attempt), [1, 2, 3]);
      const gap1 = tries[1]!.at - tries[0]!.at;
      const gap2 = tries[2]!.at - tries[1]!.at;
      assert.ok(gap1 >= 90, `first retry after >= 100 ms (half of 200 jittered), was ${gap1}`);
      assert.ok(gap2 >= 190, `second retry after >= 200 ms (half of 400 jittered), was ${gap2}`);
      const s = (await bus.stats()).subscriptions[`${topic}/r`]!;
      assert.equal(s.retried, 2);
      assert.equal(s.acked, 1);
      assert.equal(s.delivered, 3);
      await sub.close();
    });

    test('after maxAttempts the message is dead-lettered with its error, listed, and replayed', async () => {
      const topic = topicFor(['d']);
      let healed = false;
      const attempts: number[] = [];
      const ok: string[] = [];
      const sub = await bus.subscribe(topic, 'd', (m) => {
        attempts.push(m.attempt);
        if (!healed) throw new TypeError('boom');
        ok.push(m.id);
      }, { maxAttempts: 2, backoff: { initial: 50, max: 50 } });
      const env = await bus.publish(topic, { order: 7 });
      const good = await bus.publish(topic, { order: 8 }, { id: `keep-${env.id}` });
      await waitFor('a dead letter', async () => (await bus.deadLetters(topic, 'd')).length === 2);
      const dead = await bus.deadLetters(topic, 'd');
      assert.deepEqual(dead.map((d) => d.envelope.id).sort(), [env.id, good.id].sort());
      const first = dead.find((d) => d.envelope.id === env.id)!;
      assert.deepEqual(first.envelope.payload, { order: 7 });
      assert.equal(first.group, 'd');
      assert.equal(first.error.message, 'boom');
      assert.equal(first.error.name, 'TypeError');
      assert.equal(first.attempts, 2);
      assert.ok(!Number.isNaN(Date.parse(first.failedAt)));
      assert.equal((await bus.stats()).subscriptions[`${topic}/d`]!.deadLettered, 2);
      healed = true;
      attempts.length = 0;
      assert.equal(await bus.replayDeadLetters(topic, 'd', { ids: [env.id] }), 1);
      await waitFor('the replayed message handled', () => ok.length === 1);
      assert.deepEqual(ok, [env.id]);
      assert.deepEqual(attempts, [1], 'attempts start again');
      const left = await bus.deadLetters(topic, 'd');
      assert.deepEqual(left.map((d) => d.envelope.id), [good.id]);
      assert.equal(await bus.replayDeadLetters(topic, 'd'), 1);
      await waitFor('the second replay handled', () => ok.length === 2);
      assert.equal((await bus.deadLetters(topic, 'd')).length, 0);
      await sub.close();
    });

    test('with an inbox a message published twice under the same id has its effect once', async () => {
      const topic = topicFor(['i']);
      const inbox = new MemoryInbox();
      const effects: string[] = [];
      const sub = await bus.subscribe(topic, 'i', async (m) => {
        await sleep(20);
        effects.push(m.id);
      }, { inbox, concurrency: 4 });
      await bus.publish(topic, 1, { id: 'order-1' });
      await bus.publish(topic, 1, { id: 'order-1' });
      await bus.publish(topic, 2, { id: 'order-2' });
      await waitFor('two effects', () => effects.length === 2);
      await sleep(300);
      assert.deepEqual(effects.sort(), ['order-1', 'order-2']);
      await sub.close();
    });

    test('concurrency bounds the handlers running at once', async () => {
      const topic = topicFor(['c']);
      let running = 0;
      let peak = 0;
      let done = 0;
      // The first handlers hold until three run at once, so the bound is surely reached however
      // slowly messages arrive; then each lingers a little, a chance for a fourth to slip in.
      let threeRan!: () => void;
      const three = new Promise<void>((resolve) => { threeRan = resolve; });
      const sub = await bus.subscribe(topic, 'c', async () => {
        running++;
        peak = Math.max(peak, running);
        if (running === 3) threeRan();
        await three;
        await sleep(20);
        running--;
        done++;
      }, { concurrency: 3 });
      await Promise.all(Array.from({ length: 12 }, (_, i) => bus.publish(topic, i)));
      await waitFor('12 handled', () => done === 12);
      assert.equal(peak, 3);
      await sub.close();
    });

    test('close waits for running handlers, and what they finished is not delivered again', async () => {
      const topic = topicFor(['s']);
      let finished = 0;
      let started = 0;
      const sub = await bus.subscribe(topic, 's', async () => {
        started++;
        await sleep(400);
        finished++;
      });
      await bus.publish(topic, 'slow');
      await waitFor('the handler to start', () => started === 1);
      await sub.close();
      assert.equal(finished, 1, 'close resolved only after the handler finished');
      const again: unknown[] = [];
      const sub2 = await bus.subscribe(topic, 's', (m) => void again.push(m.payload));
      await bus.publish(topic, 'next');
      await waitFor('the next message', () => again.length === 1);
      await sleep(300);
      assert.deepEqual(again, ['next']);
      await sub2.close();
    });

    test('stats: messages waiting for a group show as lag', async () => {
      const topic = topicFor(['l']);
      const sub = await bus.subscribe(topic, 'l', () => {});
      await sub.close();
      for (let i = 0; i < 3; i++) await bus.publish(topic, i);
      await waitFor('lag 3', async () => (await bus.stats()).subscriptions[`${topic}/l`]?.lag === 3);
      const got: unknown[] = [];
      const sub2 = await bus.subscribe(topic, 'l', (m) => void got.push(m.payload));
      await waitFor('the backlog delivered', () => got.length === 3);
      await waitFor('lag 0', async () => (await bus.stats()).subscriptions[`${topic}/l`]?.lag === 0);
      const s = await bus.stats();
      assert.ok(s.published[topic]! >= 3);
      await sub2.close();
    });

    test('bad names are refused with TANDEM_ERR_INVALID_ARGUMENT', async () => {
      await assert.rejects(bus.publish('no spaces', 1), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
      await assert.rejects(bus.subscribe('ok.topic', 'a.b', () => {}), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
    });
  });
}
