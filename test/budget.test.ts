import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/core/clock.js';
import { DEFAULT_RETRY_BUDGET, RetryBudget } from '../src/upstream/resilience/budget.js';

/** Withdraws until refused; returns how many went. */
function drain(budget: RetryBudget): number {
  let n = 0;
  while (budget.tryWithdraw()) n++;
  return n;
}

describe('RetryBudget', () => {
  test('defaults: 20 % of requests + 10/s over 10 s (Finagle)', () => {
    assert.deepEqual({ ...DEFAULT_RETRY_BUDGET }, { percent: 0.2, ttlMs: 10_000, minPerSecond: 10 });
    assert.ok(Object.isFrozen(DEFAULT_RETRY_BUDGET));
  });

  test('with no traffic only the floor is there: 10/s × 10 s = 100 retries', () => {
    const budget = new RetryBudget({}, new FakeClock());
    assert.equal(budget.available, 100);
    assert.equal(drain(budget), 100);
    assert.equal(budget.available, 0);
  });

  test('1000 requests over 10 s allow 20 % of them plus the floor: 300 retries', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({}, clock);
    for (let i = 0; i < 1_000; i++) {
      budget.recordRequest();
      clock.advance(9.99);
    }
    assert.ok(clock.now() < 10_000);
    assert.equal(budget.available, 300);
    assert.equal(drain(budget), 300);
  });

  test('exhaustion is counted, once per refusal', () => {
    const budget = new RetryBudget({ minPerSecond: 0 }, new FakeClock());
    for (let i = 0; i < 10; i++) budget.recordRequest();
    assert.equal(budget.exhausted, 0);
    assert.equal(budget.tryWithdraw(), true);
    assert.equal(budget.tryWithdraw(), true);
    assert.equal(budget.tryWithdraw(), false);
    assert.equal(budget.tryWithdraw(), false);
    assert.equal(budget.exhausted, 2);
  });

  test('retries interleaved with requests: about one retry per five requests beyond the floor', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ minPerSecond: 0 }, clock);
    let granted = 0;
    for (let i = 0; i < 1_000; i++) {
      budget.recordRequest();
      if (budget.tryWithdraw()) granted++; // every request wants a retry: the outage case
      clock.advance(5);
    }
    assert.equal(granted, 200);
    assert.equal(budget.exhausted, 800);
  });

  test('the window slides: after 10 s idle the budget is back to the floor', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({}, clock);
    for (let i = 0; i < 1_000; i++) budget.recordRequest();
    assert.equal(budget.available, 300);
    clock.advance(10_000);
    assert.equal(budget.available, 100);
  });

  test('deposits count for the whole window and drop out whole buckets at a time', () => {
    const clock = new FakeClock(500);
    const budget = new RetryBudget({ minPerSecond: 0 }, clock);
    for (let i = 0; i < 100; i++) budget.recordRequest(); // bucket [0 s, 1 s)
    clock.advance(1_000);
    for (let i = 0; i < 50; i++) budget.recordRequest(); // bucket [1 s, 2 s)
    assert.equal(budget.available, 30);
    clock.advance(8_499); // 9.999 s: both still in
    assert.equal(budget.available, 30);
    clock.advance(1); // 10 s: the first second's bucket is out
    assert.equal(budget.available, 10);
    clock.advance(1_000);
    assert.equal(budget.available, 0);
  });

  test('withdrawals expire with the window too: the floor refills', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({}, clock);
    assert.equal(drain(budget), 100);
    clock.advance(5_000);
    assert.equal(budget.available, 0, 'spent in the last 10 s');
    clock.advance(5_000);
    assert.equal(budget.available, 100);
    assert.equal(drain(budget), 100);
  });

  test('an overdrawn window recovers as its withdrawals age out', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ minPerSecond: 1 }, clock); // floor 10 per 10 s
    for (let i = 0; i < 100; i++) budget.recordRequest(); // +20 at t = 0
    clock.advance(5_000);
    assert.equal(drain(budget), 30); // 30 taken at t = 5 s
    clock.advance(5_000); // the deposits leave, the withdrawals stay: overdrawn
    assert.equal(budget.available, 0);
    assert.equal(budget.tryWithdraw(), false);
    clock.advance(5_000);
    assert.equal(budget.available, 10);
  });

  test('a long pause costs nothing: at most one pass over the buckets', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({}, clock);
    for (let i = 0; i < 1_000; i++) budget.recordRequest();
    clock.advance(365 * 24 * 3_600_000);
    assert.equal(budget.available, 100);
    budget.recordRequest();
    assert.equal(budget.available, 100, '0.2 of a retry rounds down');
  });

  test('percent 0 and no floor: never a retry', () => {
    const budget = new RetryBudget({ percent: 0, minPerSecond: 0 }, new FakeClock());
    for (let i = 0; i < 1_000; i++) budget.recordRequest();
    assert.equal(budget.tryWithdraw(), false);
    assert.equal(budget.exhausted, 1);
  });

  test('a shorter window scales the floor: 10/s over 2 s = 20', () => {
    const clock = new FakeClock();
    const budget = new RetryBudget({ ttlMs: 2_000 }, clock);
    assert.equal(budget.available, 20);
    drain(budget);
    clock.advance(2_000);
    assert.equal(budget.available, 20);
  });

  test('percentages add up exactly over many requests (no float drift)', () => {
    const budget = new RetryBudget({ percent: 0.1, minPerSecond: 0 }, new FakeClock());
    for (let i = 0; i < 10_000; i++) budget.recordRequest();
    assert.equal(budget.available, 1_000);
  });

  test('options are checked once, at construction', () => {
    const clock = new FakeClock();
    assert.throws(() => new RetryBudget({ percent: -0.1 }, clock), /percent/);
    assert.throws(() => new RetryBudget({ percent: Number.NaN }, clock), /percent/);
    assert.throws(() => new RetryBudget({ ttlMs: 500 }, clock), /ttlMs/);
    assert.throws(() => new RetryBudget({ ttlMs: 120_000 }, clock), /ttlMs/);
    assert.throws(() => new RetryBudget({ minPerSecond: -1 }, clock), /minPerSecond/);
    const budget = new RetryBudget({ percent: 0.5 }, clock);
    assert.deepEqual({ ...budget.options }, { percent: 0.5, ttlMs: 10_000, minPerSecond: 10 });
    assert.ok(Object.isFrozen(budget.options));
  });
});
