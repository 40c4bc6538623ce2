import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/core/clock.js';
import { CoarseTimers, type CoarseWait } from '../src/core/coarse-timers.js';

/** A wait that records when it expired. */
function waiter(clock: FakeClock, onExpire?: () => void): CoarseWait & { fired: number[] } {
  const fired: number[] = [];
  return { fired, expire() { fired.push(clock.now()); onExpire?.(); } };
}

test('a coarse wait fires no sooner than asked and at most one resolution later, whatever the phase of the tick', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  // A long wait keeps the tick running, so the waits below start at every phase of it.
  timers.start(waiter(clock), 1_000_000);
  for (const ms of [1000, 1001, 1250, 4000, 4321]) {
    for (let phase = 0; phase < 250; phase += 7) {
      clock.advance(phase);
      const w = waiter(clock);
      const started = clock.now();
      timers.start(w, ms);
      clock.advance(ms + 250);
      assert.equal(w.fired.length, 1, `a ${ms} ms wait started ${phase} ms into a tick fired once`);
      const waited = w.fired[0]! - started;
      assert.ok(waited >= ms && waited <= ms + 250, `a ${ms} ms wait started ${phase} ms into a tick fired after ${waited} ms`);
    }
  }
});

test('a wait that starts when no tick runs fires in time too, and the tick stops when nothing waits', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const w = waiter(clock);
  timers.start(w, 2000);
  clock.advance(1999);
  assert.deepEqual(w.fired, []);
  clock.advance(251);
  assert.equal(w.fired.length, 1);
  assert.ok(w.fired[0]! >= 2000 && w.fired[0]! <= 2250, `fired at ${w.fired[0]}`);
  assert.equal(timers.size, 0);
  assert.equal(clock.pending, 0, 'no tick is left scheduled');
  clock.advance(10_000);
  assert.equal(w.fired.length, 1, 'fired once');
});

test('a stopped wait never fires; a restarted one counts from its restart', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const stopped = waiter(clock);
  const restarted = waiter(clock);
  timers.start(stopped, 1000);
  timers.start(restarted, 1000);
  clock.advance(900);
  timers.stop(stopped);
  timers.stop(stopped); // twice: nothing
  timers.start(restarted, 1000);
  assert.equal(timers.size, 1);
  clock.advance(999);
  assert.deepEqual(restarted.fired, [], 'the first start no longer counts');
  clock.advance(5000);
  assert.deepEqual(stopped.fired, []);
  assert.equal(restarted.fired.length, 1);
  assert.ok(restarted.fired[0]! >= 1900 && restarted.fired[0]! <= 2150, `fired at ${restarted.fired[0]}`);
  assert.equal(clock.pending, 0);
});

test('a wait shorter than the coarse minimum gets a timer of its own, to the millisecond', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const short = waiter(clock);
  const stopped = waiter(clock);
  clock.advance(13);
  timers.start(short, 999);
  timers.start(stopped, 40);
  assert.equal(timers.size, 0, 'not on the shared tick');
  clock.advance(30);
  timers.stop(stopped);
  clock.advance(969);
  assert.deepEqual(short.fired, [1012]);
  assert.deepEqual(stopped.fired, []);
  // Restarting with a long wait moves it onto the tick.
  timers.start(short, 500);
  timers.start(short, 3000);
  clock.advance(600);
  assert.deepEqual(short.fired, [1012], 'the short timer was replaced');
  assert.equal(timers.size, 1);
  clock.advance(2700);
  assert.equal(short.fired.length, 2);
});

test('a wait may start, restart or stop waits (itself too) when it expires', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const other = waiter(clock);
  const later = waiter(clock);
  let again = true;
  const self: CoarseWait & { fired: number[] } = waiter(clock, () => {
    timers.stop(other);
    timers.start(later, 1000);
    if (again) {
      again = false;
      timers.start(self, 1000);
    }
  });
  timers.start(self, 1000);
  timers.start(other, 1000);
  clock.advance(1250);
  // Both fall due on the same tick: `self` (started first) goes first and stops `other`.
  assert.equal(self.fired.length, 1);
  assert.deepEqual(other.fired, []);
  clock.advance(1250);
  assert.equal(self.fired.length, 2, 'restarted from its own expiry');
  assert.equal(later.fired.length, 1);
  clock.advance(1250);
  assert.equal(later.fired.length, 2, 'started again by the second expiry');
  assert.equal(timers.size, 0);
  assert.equal(clock.pending, 0);
});

test('an expiry that throws: the waits due with it expire on the next tick, the one that threw does not come back', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const thrower = waiter(clock, () => { throw new Error('boom'); });
  const after = [waiter(clock), waiter(clock)];
  timers.start(thrower, 1000);
  for (const w of after) timers.start(w, 1000);
  assert.throws(() => clock.advance(1000), /boom/);
  assert.equal(thrower.fired.length, 1);
  assert.deepEqual(after.map((w) => w.fired.length), [0, 0], 'not in the tick that threw');
  assert.equal(timers.size, 2, 'both still pending');
  clock.advance(250);
  assert.deepEqual(after.map((w) => w.fired.length), [1, 1], 'on the next tick');
  assert.equal(thrower.fired.length, 1);
  assert.equal(timers.size, 0);
  assert.equal(clock.pending, 0);
});

test('a wait due in a tick and restarted by an earlier expiry, shorter than the coarse minimum, fires on its own timer', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const later = waiter(clock);
  const first = waiter(clock, () => timers.start(later, 40));
  timers.start(first, 1000);
  timers.start(later, 1000);
  const due = clock.now() + 1000;
  clock.advance(1000);
  assert.equal(first.fired.length, 1);
  assert.deepEqual(later.fired, [], 'restarted, so not expired with the tick');
  assert.equal(timers.size, 0, 'on a timer of its own, not on the tick');
  clock.advance(40);
  assert.deepEqual(later.fired, [due + 40]);
  clock.advance(5000);
  assert.equal(later.fired.length, 1);
});

test('size counts what is pending during an expiry too, and a wait stopped in the tick is neither counted nor fired', () => {
  const clock = new FakeClock();
  const timers = new CoarseTimers(clock, 250, 1000);
  const sizes: number[] = [];
  const third = waiter(clock);
  const second = waiter(clock, () => sizes.push(timers.size));
  const first = waiter(clock, () => {
    sizes.push(timers.size);
    timers.stop(third);
    timers.stop(third);
  });
  const pending = waiter(clock);
  for (const w of [first, second, third]) timers.start(w, 1000);
  timers.start(pending, 5000);
  clock.advance(1000);
  // The three due came off the list before the first expired: only `pending` is left.
  assert.deepEqual(sizes, [1, 1]);
  assert.deepEqual(third.fired, []);
  assert.equal(timers.size, 1);
});
