import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type Clock, type TimerHandle } from '../src/core/clock.js';
import { EndpointHealth } from '../src/upstream/health/state.js';
import { DEFAULT_OUTLIER, OutlierDetector, type OutlierOptions } from '../src/upstream/health/outlier.js';

interface Member {
  readonly id: string;
  readonly health: EndpointHealth;
}

/** A detector over `count` fresh members; random 0.5 = no jitter unless given. */
function setup(count: number, options: Partial<OutlierOptions> = {}, random: () => number = () => 0.5) {
  const clock = new FakeClock();
  const members: Member[] = Array.from({ length: count }, (_, i) => ({ id: `m${i}`, health: new EndpointHealth() }));
  const detector = new OutlierDetector<Member>(options, clock, random);
  detector.setMembers(members);
  return { clock, members, detector };
}

function fail(detector: OutlierDetector<Member>, member: Member, times: number): boolean[] {
  return Array.from({ length: times }, () => detector.recordFailure(member));
}

/** Length of the current ejection of `member` (fails the test if it is not ejected). */
function ejectionLength(member: Member): number {
  const s = member.health.state;
  assert.equal(s.kind, 'ejected', `${member.id} should be ejected`);
  return s.kind === 'ejected' ? s.until - s.since : NaN;
}

describe('OutlierDetector', () => {
  test('defaults (Envoy: 5 in a row, 30 s × n up to 300 s), documented and frozen', () => {
    assert.deepEqual({ ...DEFAULT_OUTLIER }, {
      consecutiveFailures: 5,
      baseEjectionMs: 30_000,
      maxEjectionMs: 300_000,
      jitter: 0.1,
      maxEjectedShare: 0.5,
      decayMs: 300_000,
    });
    assert.ok(Object.isFrozen(DEFAULT_OUTLIER));
  });

  test('the fifth consecutive failure ejects for 30 s; then probation', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    const seen: string[] = [];
    m.health.onTransition((t) => seen.push(`${t.from.kind}>${t.to.kind}:${t.reason}@${clock.now()}`));
    clock.advance(1_000);
    assert.deepEqual(fail(detector, m, 5), [false, false, false, false, true]);
    assert.deepEqual(m.health.state, { kind: 'ejected', since: 1_000, until: 31_000, times: 1, checkFailures: 0 });
    assert.equal(detector.ejections, 1);
    assert.equal(clock.pending, 1);
    clock.advance(29_999);
    assert.equal(m.health.state.kind, 'ejected');
    clock.advance(1);
    assert.equal(m.health.state.kind, 'probation');
    assert.deepEqual(seen, ['probation>ejected:ejected@1000', 'ejected>probation:ejection-expired@31000']);
  });

  test('a success resets the run of failures', () => {
    const { members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 4);
    detector.recordSuccess(m);
    assert.deepEqual(fail(detector, m, 4), [false, false, false, false]);
    assert.equal(m.health.eligible, true);
    assert.equal(detector.recordFailure(m), true);
  });

  test('a new endpoint on probation gets the full count; successes bring it to healthy', () => {
    const { members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 4);
    assert.equal(m.health.state.kind, 'probation');
    detector.recordSuccess(m);
    detector.recordSuccess(m);
    assert.equal(m.health.state.kind, 'healthy');
  });

  test('back from ejection, one failure ejects again and the count keeps growing', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    clock.advance(30_000);
    assert.deepEqual(m.health.state.kind === 'probation' && m.health.state.from, 'ejected');
    assert.equal(detector.recordFailure(m), true);
    assert.equal(ejectionLength(m), 60_000);
    assert.equal(detector.timesEjected(m), 2);
  });

  test('back from ejection and proven healthy again, it gets the full count', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    clock.advance(30_000);
    detector.recordSuccess(m);
    detector.recordSuccess(m);
    assert.equal(m.health.state.kind, 'healthy');
    assert.deepEqual(fail(detector, m, 5), [false, false, false, false, true]);
    assert.equal(ejectionLength(m), 60_000, 'second ejection, no decay yet');
  });

  test('on probation after failing active checks, one failure ejects', () => {
    const { members, detector } = setup(4);
    const m = members[0]!;
    m.health.checkFailed(0);
    m.health.checkPassed(0);
    m.health.checkPassed(0);
    assert.deepEqual(m.health.state.kind === 'probation' && m.health.state.from, 'unhealthy');
    assert.equal(detector.recordFailure(m), true);
    assert.equal(ejectionLength(m), 30_000);
  });

  test('backoff grows 30 s, 60 s, 90 s … and is capped at 300 s', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    const lengths: number[] = [];
    for (let i = 0; i < 12; i++) {
      const length = ejectionLength(m);
      lengths.push(length);
      clock.advance(length);
      assert.equal(m.health.state.kind, 'probation');
      assert.equal(detector.recordFailure(m), true);
    }
    assert.deepEqual(lengths, [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300].map((s) => s * 1_000));
    assert.equal(detector.timesEjected(m), 13, 'the count keeps growing past the cap');
  });

  test('jitter stays within ±10 % and uses the injected random', () => {
    const lengths = new Set<number>();
    for (let r = 0; r < 1; r += 0.01) {
      const { members, detector } = setup(2, {}, () => r);
      fail(detector, members[0]!, 5);
      const length = ejectionLength(members[0]!);
      assert.ok(length >= 27_000 && length <= 33_000, `r=${r}: ${length} ms`);
      lengths.add(length);
    }
    assert.ok(lengths.size > 50, 'the random number spreads ejections');
    const low = setup(2, {}, () => 0);
    fail(low.detector, low.members[0]!, 5);
    assert.equal(ejectionLength(low.members[0]!), 27_000);
    const high = setup(2, {}, () => 0.999_999);
    fail(high.detector, high.members[0]!, 5);
    assert.equal(ejectionLength(high.members[0]!), 33_000);
  });

  test('jitter applies to capped ejections too', () => {
    const { clock, members, detector } = setup(2, { baseEjectionMs: 200_000 }, () => 0);
    const m = members[0]!;
    fail(detector, m, 5);
    assert.equal(ejectionLength(m), 180_000);
    clock.advance(180_000);
    detector.recordFailure(m);
    assert.equal(ejectionLength(m), 270_000, '300 s cap, −10 %');
  });

  test('at most half the members are ejected; the refused one is counted and tried again later', () => {
    const { clock, members, detector } = setup(4);
    const [a, b, c] = [members[0]!, members[1]!, members[2]!];
    fail(detector, a, 5);
    fail(detector, b, 5);
    assert.deepEqual(fail(detector, c, 5), [false, false, false, false, false]);
    assert.equal(c.health.state.kind, 'probation');
    assert.equal(detector.ejections, 2);
    assert.equal(detector.blocked, 1);
    assert.deepEqual(fail(detector, c, 4), [false, false, false, false], 'its run started over');
    clock.advance(30_000);
    assert.equal(detector.recordFailure(c), true, 'room again once an ejection ended');
  });

  test('the cap by fleet size: 1 → none, 2 → 1, 3 → 1, 5 → 2, 10 → 5', () => {
    for (const [size, allowed] of [[1, 0], [2, 1], [3, 1], [5, 2], [10, 5]] as const) {
      const { members, detector } = setup(size);
      for (const m of members) fail(detector, m, 5);
      assert.equal(detector.ejections, allowed, `${size} members`);
      assert.equal(members.filter((m) => m.health.state.kind === 'ejected').length, allowed);
    }
  });

  test('at least one ejection with two or more members, whatever the share', () => {
    const { members, detector } = setup(3, { maxEjectedShare: 0 });
    for (const m of members) fail(detector, m, 5);
    assert.equal(detector.ejections, 1);
  });

  test('draining members do not count toward the cap', () => {
    const { members, detector } = setup(4);
    members[0]!.health.drain(0);
    members[1]!.health.drain(0);
    fail(detector, members[2]!, 5);
    fail(detector, members[3]!, 5);
    assert.equal(detector.ejections, 1, 'two present members: one may go');
  });

  test('failures of endpoints that are out or draining are ignored', () => {
    const { clock, members, detector } = setup(4);
    const [ejected, unhealthy, draining] = [members[0]!, members[1]!, members[2]!];
    fail(detector, ejected, 5);
    unhealthy.health.checkFailed(0);
    draining.health.drain(0);
    for (const m of [ejected, unhealthy, draining]) {
      const before = m.health.state;
      assert.deepEqual(fail(detector, m, 10), Array(10).fill(false), m.id);
      assert.equal(m.health.state, before);
    }
    assert.equal(detector.ejections, 1);
    clock.advance(30_000);
    assert.equal(ejected.health.state.kind, 'probation', 'its ejection was not extended');
  });

  test('non-members are ignored', () => {
    const { members, detector } = setup(2);
    const stranger: Member = { id: 'x', health: new EndpointHealth() };
    assert.deepEqual(fail(detector, stranger, 10), Array(10).fill(false));
    detector.recordSuccess(stranger);
    assert.equal(stranger.health.state.kind, 'probation');
    assert.equal(detector.timesEjected(stranger), 0);
    assert.equal(members[0]!.health.state.kind, 'probation');
  });

  test('the ejection count decays one step per 300 s since the last ejection ended', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5); // 30 s
    clock.advance(30_000);
    detector.recordFailure(m); // 60 s
    clock.advance(60_000);
    detector.recordFailure(m); // 90 s
    clock.advance(90_000);
    detector.recordSuccess(m);
    detector.recordSuccess(m);
    assert.equal(m.health.state.kind, 'healthy');
    assert.equal(detector.timesEjected(m), 3);
    clock.advance(299_999);
    assert.equal(detector.timesEjected(m), 3);
    clock.advance(1);
    assert.equal(detector.timesEjected(m), 2);
    clock.advance(300_000);
    assert.equal(detector.timesEjected(m), 1);
    fail(detector, m, 5);
    assert.equal(ejectionLength(m), 60_000, 'ejected as for the second time');
  });

  test('an endpoint that misbehaved long ago starts fresh at 30 s', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    clock.advance(30_000);
    detector.recordFailure(m);
    clock.advance(60_000);
    detector.recordSuccess(m);
    detector.recordSuccess(m);
    clock.advance(3_600_000);
    assert.equal(detector.timesEjected(m), 0);
    fail(detector, m, 5);
    assert.equal(ejectionLength(m), 30_000);
  });

  test('the ejection ends even when the timer fires a little before it is due', () => {
    // Real timers and performance.now() round differently; a timer may run a fraction of a
    // millisecond early. This clock makes every timer do so.
    const fake = new FakeClock();
    const early: Clock = {
      now: () => fake.now(),
      setTimeout: (fn: () => void, ms: number): TimerHandle => fake.setTimeout(fn, ms - 0.5),
      clearTimeout: (h: TimerHandle) => fake.clearTimeout(h),
    };
    const members: Member[] = [{ id: 'a', health: new EndpointHealth() }, { id: 'b', health: new EndpointHealth() }];
    const detector = new OutlierDetector<Member>({}, early, () => 0.5);
    detector.setMembers(members);
    fail(detector, members[0]!, 5);
    fake.advance(29_999.5);
    assert.equal(members[0]!.health.state.kind, 'ejected', 'refused: not due yet');
    assert.equal(fake.pending, 1, 're-armed');
    fake.advance(1);
    assert.equal(members[0]!.health.state.kind, 'probation');
    assert.equal(fake.pending, 0);
  });

  test('a drained-while-ejected endpoint stays draining when its timer fires', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    m.health.drain(10);
    clock.advance(30_000);
    assert.equal(m.health.state.kind, 'draining');
    assert.equal(clock.pending, 0);
  });

  test('removing a member cancels its timer and forgets its history', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    assert.equal(clock.pending, 1);
    detector.setMembers(members.slice(1));
    assert.equal(clock.pending, 0);
    assert.equal(detector.timesEjected(m), 0);
    assert.equal(detector.recordFailure(m), false);
    detector.setMembers(members);
    assert.equal(m.health.state.kind, 'ejected', 'its health is its own; the caller decides');
  });

  test('setMembers keeps the history of members that stay', () => {
    const { clock, members, detector } = setup(4);
    const m = members[0]!;
    fail(detector, m, 5);
    detector.setMembers([...members, { id: 'new', health: new EndpointHealth() }]);
    assert.equal(clock.pending, 1);
    assert.equal(detector.timesEjected(m), 1);
  });

  test('close cancels every timer', () => {
    const { clock, members, detector } = setup(4);
    fail(detector, members[0]!, 5);
    fail(detector, members[1]!, 5);
    assert.equal(clock.pending, 2);
    detector.close();
    assert.equal(clock.pending, 0);
    assert.equal(detector.recordFailure(members[2]!), false);
  });

  test('options are checked once, at construction', () => {
    const clock = new FakeClock();
    assert.throws(() => new OutlierDetector({ consecutiveFailures: 0 }, clock), /consecutiveFailures/);
    assert.throws(() => new OutlierDetector({ baseEjectionMs: -1 }, clock), /baseEjectionMs/);
    assert.throws(() => new OutlierDetector({ maxEjectionMs: 10_000 }, clock), /maxEjectionMs/);
    assert.throws(() => new OutlierDetector({ jitter: 1 }, clock), /jitter/);
    assert.throws(() => new OutlierDetector({ maxEjectedShare: 2 }, clock), /maxEjectedShare/);
    assert.throws(() => new OutlierDetector({ decayMs: Infinity }, clock), /decayMs/);
    const detector = new OutlierDetector({ consecutiveFailures: 7 }, clock);
    assert.equal(detector.options.consecutiveFailures, 7);
    assert.equal(detector.options.baseEjectionMs, 30_000);
    assert.ok(Object.isFrozen(detector.options));
  });
});
