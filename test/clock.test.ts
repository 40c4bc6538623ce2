import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, realClock } from '../src/core/clock.js';
import { GUARD_MS } from './helpers/wait.js';

describe('FakeClock', () => {
  test('starts at 0, or at the time given', () => {
    assert.equal(new FakeClock().now(), 0);
    assert.equal(new FakeClock(12_345).now(), 12_345);
  });

  test('advance moves time and fires only the timers that fall due', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b'), 200);
    clock.setTimeout(() => fired.push('a'), 100);
    clock.setTimeout(() => fired.push('c'), 300);
    clock.advance(150);
    assert.deepEqual(fired, ['a']);
    assert.equal(clock.now(), 150);
    assert.equal(clock.pending, 2);
    clock.advance(50);
    assert.deepEqual(fired, ['a', 'b'], 'a timer due exactly at the target fires');
    clock.advance(1_000);
    assert.deepEqual(fired, ['a', 'b', 'c']);
    assert.equal(clock.now(), 1_200);
    assert.equal(clock.pending, 0);
  });

  test('each timer sees now() equal to its due time', () => {
    const clock = new FakeClock(1_000);
    const seen: number[] = [];
    clock.setTimeout(() => seen.push(clock.now()), 30);
    clock.setTimeout(() => seen.push(clock.now()), 10);
    clock.advance(100);
    assert.deepEqual(seen, [1_010, 1_030]);
  });

  test('timers due at the same time fire in scheduling order', () => {
    const clock = new FakeClock();
    const fired: number[] = [];
    for (let i = 0; i < 5; i++) clock.setTimeout(() => fired.push(i), 50);
    clock.setTimeout(() => fired.push(-1), 40);
    clock.advance(50);
    assert.deepEqual(fired, [-1, 0, 1, 2, 3, 4]);
  });

  test('timers scheduled by timers fire in the same advance when due within it', () => {
    const clock = new FakeClock();
    const fired: Array<[string, number]> = [];
    clock.setTimeout(() => {
      fired.push(['outer', clock.now()]);
      clock.setTimeout(() => fired.push(['inner', clock.now()]), 20);
      clock.setTimeout(() => fired.push(['late', clock.now()]), 500);
    }, 10);
    clock.setTimeout(() => fired.push(['other', clock.now()]), 25);
    clock.advance(100);
    assert.deepEqual(fired, [['outer', 10], ['other', 25], ['inner', 30]]);
    assert.equal(clock.pending, 1);
    clock.advance(410);
    assert.deepEqual(fired.at(-1), ['late', 510]);
  });

  test('clearTimeout cancels; clearing a fired or cleared timer is harmless', () => {
    const clock = new FakeClock();
    let fired = 0;
    const a = clock.setTimeout(() => fired++, 10);
    const b = clock.setTimeout(() => fired++, 20);
    clock.clearTimeout(b);
    clock.clearTimeout(b);
    clock.advance(30);
    assert.equal(fired, 1);
    clock.clearTimeout(a);
    assert.equal(clock.pending, 0);
  });

  test('a timer may clear a later one', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const later = clock.setTimeout(() => fired.push('later'), 20);
    clock.setTimeout(() => {
      fired.push('first');
      clock.clearTimeout(later);
    }, 10);
    clock.advance(100);
    assert.deepEqual(fired, ['first']);
  });

  test('delays below 1 ms count as 1 ms, so a timer re-arming with 0 cannot loop forever', () => {
    const clock = new FakeClock();
    let ticks = 0;
    const tick = (): void => {
      ticks++;
      clock.setTimeout(tick, 0);
    };
    clock.setTimeout(tick, 0);
    clock.advance(0);
    assert.equal(ticks, 0, 'nothing is due at the current time');
    clock.advance(5);
    assert.equal(ticks, 5);
    let nan = 0;
    clock.setTimeout(() => nan++, Number.NaN);
    clock.advance(1);
    assert.equal(nan, 1);
  });

  test('advance refuses to go backwards', () => {
    const clock = new FakeClock();
    assert.throws(() => clock.advance(-1), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
    assert.throws(() => clock.advance(Number.NaN), { code: 'TANDEM_ERR_INVALID_ARGUMENT' });
  });

  test('a throwing timer surfaces from advance; the rest stay scheduled', () => {
    const clock = new FakeClock();
    let after = 0;
    clock.setTimeout(() => {
      throw new Error('boom');
    }, 10);
    clock.setTimeout(() => after++, 20);
    assert.throws(() => clock.advance(50), /boom/);
    assert.equal(clock.now(), 10);
    assert.equal(clock.pending, 1);
    clock.advance(40);
    assert.equal(after, 1);
  });
});

describe('realClock', () => {
  test('now() is monotonic', () => {
    let last = realClock.now();
    for (let i = 0; i < 1_000; i++) {
      const now = realClock.now();
      assert.ok(now >= last);
      last = now;
    }
  });

  test('timers fire, can be cleared, and do not keep the process alive', async () => {
    // realClock's timers are unref'd: a ref'd one keeps this test's event loop alive meanwhile.
    const keepAlive = setTimeout(() => undefined, GUARD_MS);
    const start = realClock.now();
    const firedAt = await new Promise<number>((resolve) => {
      const handle = realClock.setTimeout(() => resolve(realClock.now()), 15);
      assert.equal((handle as unknown as NodeJS.Timeout).hasRef(), false);
    });
    assert.ok(firedAt - start >= 14, `fired after ${firedAt - start} ms`);

    let cancelled = false;
    const handle = realClock.setTimeout(() => {
      cancelled = true;
    }, 5);
    realClock.clearTimeout(handle);
    // Timers fire in due order: once a later one has fired, the cleared one would have too.
    await new Promise((resolve) => realClock.setTimeout(() => resolve(undefined), 10));
    assert.equal(cancelled, false);
    clearTimeout(keepAlive);
  });
});
