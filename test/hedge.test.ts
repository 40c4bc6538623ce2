import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/core/clock.js';
import { DEFAULT_LATENCY_TRACKER, LatencyTracker, type LatencyTrackerOptions } from '../src/upstream/resilience/latency.js';
import { DEFAULT_HEDGE, HedgePolicy, type HedgeOptions } from '../src/upstream/resilience/hedge.js';
import { DueQueue } from '../src/upstream/resilience/due-queue.js';

function setup(trackerOptions: Partial<LatencyTrackerOptions> = {}, hedgeOptions: Partial<HedgeOptions> = {}) {
  const clock = new FakeClock();
  const latency = new LatencyTracker(trackerOptions, clock);
  const hedge = new HedgePolicy(latency, hedgeOptions);
  return { clock, latency, hedge };
}

/** Records 1, 2, … n ms (in a scrambled order, so sorting is exercised). */
function recordRange(latency: LatencyTracker, n: number, offset = 0): void {
  for (let i = 0; i < n; i++) latency.record(offset + ((i * 37) % n) + 1);
}

describe('LatencyTracker', () => {
  test('defaults: 1024 samples, 30 s window, 50 samples minimum, 100 ms refresh', () => {
    assert.deepEqual({ ...DEFAULT_LATENCY_TRACKER }, { capacity: 1024, windowMs: 30_000, minSamples: 50, refreshMs: 100 });
    assert.ok(Object.isFrozen(DEFAULT_LATENCY_TRACKER));
  });

  test('no percentile before minSamples samples', () => {
    const { clock, latency } = setup();
    assert.equal(latency.percentile(0.5), undefined);
    recordRange(latency, 49);
    clock.advance(100);
    assert.equal(latency.percentile(0.95), undefined);
    assert.equal(latency.samples, 49);
    latency.record(50);
    clock.advance(100);
    assert.equal(latency.percentile(0.95), 48);
  });

  test('nearest-rank percentiles over the samples', () => {
    const { latency } = setup();
    recordRange(latency, 100);
    assert.equal(latency.percentile(0.5), 50);
    assert.equal(latency.percentile(0.95), 95);
    assert.equal(latency.percentile(0.99), 99);
    assert.equal(latency.percentile(1), 100);
    assert.equal(latency.percentile(0), 1);
  });

  test('answers are cached for refreshMs of clock time', () => {
    const { clock, latency } = setup();
    recordRange(latency, 100);
    assert.equal(latency.percentile(0.95), 95);
    recordRange(latency, 100, 1_000);
    clock.advance(99);
    assert.equal(latency.percentile(0.95), 95, 'still the cached sort');
    clock.advance(1);
    assert.equal(latency.percentile(0.95), 1_090);
  });

  test('only the last `capacity` samples count', () => {
    const { clock, latency } = setup({ capacity: 100, minSamples: 10 });
    recordRange(latency, 100);
    recordRange(latency, 100, 500);
    clock.advance(100);
    assert.equal(latency.samples, 100);
    assert.equal(latency.percentile(0), 501);
    assert.equal(latency.percentile(0.95), 595);
  });

  test('samples older than windowMs are ignored', () => {
    const { clock, latency } = setup();
    recordRange(latency, 100); // at t = 0
    clock.advance(20_000);
    recordRange(latency, 60, 1_000); // at t = 20 s
    assert.equal(latency.samples, 160);
    clock.advance(10_000); // t = 30 s: the first batch is exactly at the edge, still in
    assert.equal(latency.samples, 160);
    clock.advance(100); // past the refresh interval; the first batch is now too old
    assert.equal(latency.samples, 60);
    assert.equal(latency.percentile(0.5), 1_030);
    clock.advance(20_000);
    assert.equal(latency.percentile(0.5), undefined, 'all too old');
  });

  test('a caller may pass the time it already read', () => {
    const { clock, latency } = setup({ minSamples: 1 });
    latency.record(7, -40_000);
    latency.record(9, clock.now());
    assert.equal(latency.samples, 1);
    assert.equal(latency.percentile(0.5), 9);
  });

  test('negative and NaN samples are dropped', () => {
    const { latency } = setup({ minSamples: 1 });
    latency.record(-5);
    latency.record(Number.NaN);
    latency.record(3);
    assert.equal(latency.samples, 1);
    assert.equal(latency.percentile(1), 3);
  });

  test('options are checked once, at construction', () => {
    const clock = new FakeClock();
    assert.throws(() => new LatencyTracker({ capacity: 0 }, clock), /capacity/);
    assert.throws(() => new LatencyTracker({ capacity: 10, minSamples: 20 }, clock), /minSamples/);
    assert.throws(() => new LatencyTracker({ windowMs: 0 }, clock), /windowMs/);
    assert.throws(() => new LatencyTracker({ refreshMs: -1 }, clock), /refreshMs/);
  });
});

describe('HedgePolicy', () => {
  test('defaults: p95, at least 10 ms, GET/HEAD/OPTIONS', () => {
    assert.deepEqual({ ...DEFAULT_HEDGE, methods: [...DEFAULT_HEDGE.methods] }, {
      minDelayMs: 10,
      percentile: 0.95,
      methods: ['GET', 'HEAD', 'OPTIONS'],
    });
    assert.ok(Object.isFrozen(DEFAULT_HEDGE));
    assert.ok(Object.isFrozen(DEFAULT_HEDGE.methods));
  });

  test('no hedge before minSamples', () => {
    const { clock, latency, hedge } = setup();
    assert.equal(hedge.delayFor('GET'), undefined);
    for (let i = 0; i < 49; i++) latency.record(100);
    clock.advance(100);
    assert.equal(hedge.delayFor('GET'), undefined);
    latency.record(100);
    clock.advance(100);
    assert.equal(hedge.delayFor('GET'), 100);
  });

  test('only GET, HEAD and OPTIONS hedge by default; never POST or PATCH', () => {
    const { latency, hedge } = setup();
    recordRange(latency, 100, 100);
    for (const method of ['GET', 'HEAD', 'OPTIONS']) assert.equal(hedge.delayFor(method), 195, method);
    for (const method of ['POST', 'PATCH', 'PUT', 'DELETE', 'CONNECT', 'TRACE', 'get', 'PROPFIND']) {
      assert.equal(hedge.delayFor(method), undefined, method);
    }
  });

  test('the delay tracks the p95 of recent samples', () => {
    const { clock, latency, hedge } = setup({ capacity: 200 });
    recordRange(latency, 200, 0);
    assert.equal(hedge.delayFor('GET'), 190);
    recordRange(latency, 200, 300); // the service slowed down
    clock.advance(100);
    assert.equal(hedge.delayFor('GET'), 490);
    recordRange(latency, 200, 20); // and recovered
    clock.advance(100);
    assert.equal(hedge.delayFor('GET'), 210);
  });

  test('never sooner than minDelayMs', () => {
    const { clock, latency, hedge } = setup();
    for (let i = 0; i < 100; i++) latency.record(2);
    assert.equal(hedge.delayFor('GET'), 10);
    const custom = new HedgePolicy(latency, { minDelayMs: 25 });
    assert.equal(custom.delayFor('HEAD'), 25);
    for (let i = 0; i < 1_000; i++) latency.record(40);
    clock.advance(100);
    assert.equal(custom.delayFor('HEAD'), 40);
  });

  test('another percentile and method list may be chosen', () => {
    const { latency } = setup();
    recordRange(latency, 100);
    const hedge = new HedgePolicy(latency, { percentile: 0.5, methods: ['GET', 'PUT'] });
    assert.equal(hedge.delayFor('PUT'), 50);
    assert.equal(hedge.delayFor('HEAD'), undefined);
  });

  test('options are checked once: only idempotent methods may hedge', () => {
    const { latency } = setup();
    assert.throws(() => new HedgePolicy(latency, { methods: ['GET', 'POST'] }), /POST/);
    assert.throws(() => new HedgePolicy(latency, { percentile: 1 }), /percentile/);
    assert.throws(() => new HedgePolicy(latency, { minDelayMs: -1 }), /minDelayMs/);
    const methods = ['GET'];
    const hedge = new HedgePolicy(latency, { methods });
    methods.push('DELETE');
    assert.deepEqual(hedge.options.methods, ['GET'], 'the options were copied');
    assert.ok(Object.isFrozen(hedge.options));
  });
});

describe('DueQueue', () => {
  function queue() {
    const clock = new FakeClock();
    const fired: string[] = [];
    const q = new DueQueue<string>(clock, (item) => fired.push(`${item}@${clock.now()}`));
    return { clock, fired, q };
  }

  test('fires each entry at its time, in the order added, on one timer', () => {
    const { clock, fired, q } = queue();
    q.add('a', 10);
    q.add('b', 15);
    q.add('c', 15);
    assert.equal(clock.pending, 1, 'one timer for the whole queue');
    clock.advance(9);
    assert.deepEqual(fired, []);
    clock.advance(1);
    assert.deepEqual(fired, ['a@10']);
    clock.advance(10);
    assert.deepEqual(fired, ['a@10', 'b@15', 'c@15']);
    assert.equal(q.size, 0);
    assert.equal(clock.pending, 0, 'no timer while empty');
  });

  test('a cancelled entry never fires; spent and unknown tickets are ignored', () => {
    const { clock, fired, q } = queue();
    const a = q.add('a', 10);
    const b = q.add('b', 20);
    q.cancel(a);
    clock.advance(30);
    assert.deepEqual(fired, ['b@20']);
    q.cancel(b);
    q.cancel(12345);
    const c = q.add('c', 40);
    assert.equal(c, 2, 'tickets keep counting after the queue emptied');
    clock.advance(10);
    assert.deepEqual(fired, ['b@20', 'c@40']);
  });

  test('an entry due earlier than one ahead of it waits for that one (the documented lateness)', () => {
    const { clock, fired, q } = queue();
    q.add('late', 50);
    q.add('early', 20);
    clock.advance(49);
    assert.deepEqual(fired, []);
    clock.advance(1);
    assert.deepEqual(fired, ['late@50', 'early@50']);
  });

  test('clear drops every entry and the timer', () => {
    const { clock, fired, q } = queue();
    const a = q.add('a', 10);
    q.clear();
    assert.equal(clock.pending, 0);
    q.cancel(a);
    clock.advance(100);
    assert.deepEqual(fired, []);
  });

  test('many entries: the fired prefix is dropped, tickets stay valid', () => {
    const { clock, fired, q } = queue();
    const tickets: number[] = [];
    for (let i = 0; i < 3000; i++) tickets.push(q.add(`e${i}`, i < 2000 ? 1 : 100));
    clock.advance(1);
    assert.equal(fired.length, 2000);
    q.cancel(tickets[2500]!);
    clock.advance(99);
    assert.equal(fired.length, 2999);
    assert.ok(!fired.includes('e2500@100'));
  });
});
