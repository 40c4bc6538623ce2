import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_HEALTH,
  EndpointHealth,
  type HealthStateKind,
  type HealthTransition,
} from '../src/upstream/health/state.js';
import { DEFAULT_PANIC, PanicThreshold } from '../src/upstream/health/panic.js';

/** Records every reported transition as "from>to:reason". */
function watch(health: EndpointHealth): string[] {
  const seen: string[] = [];
  health.onTransition((t) => seen.push(`${t.from.kind}>${t.to.kind}:${t.reason}`));
  return seen;
}

/** Reads the kind without letting an earlier assertion narrow it (transitions change it). */
function kindOf(h: EndpointHealth): HealthStateKind {
  return h.state.kind;
}

/** An EndpointHealth driven into `kind` (thresholds at their defaults, time 0). */
function inState(kind: HealthStateKind): EndpointHealth {
  const h = new EndpointHealth();
  switch (kind) {
    case 'probation':
      break;
    case 'healthy':
      h.checkPassed(0);
      h.checkPassed(0);
      break;
    case 'ejected':
      h.eject(0, 30_000, 1);
      break;
    case 'unhealthy':
      h.checkFailed(0);
      break;
    case 'draining':
      h.drain(0);
      break;
  }
  assert.equal(h.state.kind, kind);
  return h;
}

describe('EndpointHealth', () => {
  test('defaults: rise 2, fall 2 (the product default; test/defaults.test.ts ties it to the config)', () => {
    assert.deepEqual({ ...DEFAULT_HEALTH }, { healthyThreshold: 2, unhealthyThreshold: 2 });
    assert.ok(Object.isFrozen(DEFAULT_HEALTH));
  });

  test('a new endpoint is on probation, eligible, since the time given', () => {
    const h = new EndpointHealth({}, 500);
    assert.deepEqual(h.state, { kind: 'probation', since: 500, from: 'new', successes: 0 });
    assert.equal(h.eligible, true);
  });

  test('eligible is true exactly for probation and healthy', () => {
    const expected: Record<HealthStateKind, boolean> = {
      probation: true, healthy: true, ejected: false, unhealthy: false, draining: false,
    };
    for (const [kind, eligible] of Object.entries(expected)) {
      assert.equal(inState(kind as HealthStateKind).eligible, eligible, kind);
    }
  });

  test('probation → healthy after healthyThreshold passed checks', () => {
    const h = new EndpointHealth({ healthyThreshold: 3 });
    const seen = watch(h);
    assert.equal(h.checkPassed(10), false);
    assert.equal(h.checkPassed(20), false);
    assert.deepEqual(h.state, { kind: 'probation', since: 0, from: 'new', successes: 2 });
    assert.equal(h.checkPassed(30), true);
    assert.deepEqual(h.state, { kind: 'healthy', since: 30, checkFailures: 0 });
    assert.deepEqual(seen, ['probation>healthy:check-passed'], 'counter updates are not transitions');
  });

  test('successful requests count toward leaving probation, with checks alike', () => {
    const h = new EndpointHealth();
    const seen = watch(h);
    assert.equal(h.requestSucceeded(1), false);
    assert.equal(h.checkPassed(2), true);
    assert.equal(h.state.kind, 'healthy');
    assert.deepEqual(seen, ['probation>healthy:check-passed']);
    const h2 = new EndpointHealth();
    const seen2 = watch(h2);
    h2.requestSucceeded(1);
    h2.requestSucceeded(2);
    assert.deepEqual(seen2, ['probation>healthy:request-succeeded']);
  });

  test('requestSucceeded does nothing outside probation', () => {
    for (const kind of ['healthy', 'ejected', 'unhealthy', 'draining'] as const) {
      const h = inState(kind);
      const before = h.state;
      assert.equal(h.requestSucceeded(99), false, kind);
      assert.equal(h.state, before, `${kind}: same object, nothing allocated`);
    }
  });

  test('probation → unhealthy on a single failed check', () => {
    const h = new EndpointHealth({ unhealthyThreshold: 5 });
    const seen = watch(h);
    h.checkPassed(1);
    assert.equal(h.checkFailed(7), true);
    assert.deepEqual(h.state, { kind: 'unhealthy', since: 7, checkPasses: 0 });
    assert.deepEqual(seen, ['probation>unhealthy:check-failed']);
  });

  test('healthy → unhealthy after unhealthyThreshold consecutive failed checks', () => {
    const h = inState('healthy');
    const seen = watch(h);
    assert.equal(DEFAULT_HEALTH.unhealthyThreshold, 2);
    assert.equal(h.checkFailed(1), false);
    assert.deepEqual(h.state, { kind: 'healthy', since: 0, checkFailures: 1 });
    assert.equal(h.checkPassed(3), false, 'a pass resets the streak');
    assert.equal(h.state.kind === 'healthy' && h.state.checkFailures, 0);
    h.checkFailed(4);
    assert.equal(h.state.kind, 'healthy');
    assert.equal(h.checkFailed(5), true);
    assert.deepEqual(h.state, { kind: 'unhealthy', since: 5, checkPasses: 0 });
    assert.deepEqual(seen, ['healthy>unhealthy:check-failed']);
  });

  test('a passed check on a healthy endpoint with no failures allocates nothing', () => {
    const h = inState('healthy');
    const before = h.state;
    h.checkPassed(1);
    assert.equal(h.state, before);
  });

  test('unhealthy → probation after healthyThreshold passed checks; a failure resets', () => {
    const h = inState('unhealthy');
    const seen = watch(h);
    assert.equal(h.checkPassed(1), false);
    assert.equal(h.checkFailed(2), false);
    assert.deepEqual(h.state, { kind: 'unhealthy', since: 0, checkPasses: 0 });
    assert.equal(h.checkFailed(3), false, 'more failures change nothing');
    assert.equal(h.checkPassed(4), false);
    assert.equal(h.checkPassed(5), true);
    assert.deepEqual(h.state, { kind: 'probation', since: 5, from: 'unhealthy', successes: 0 });
    h.checkPassed(6);
    h.checkPassed(7);
    assert.equal(h.state.kind, 'healthy');
    assert.deepEqual(seen, ['unhealthy>probation:check-passed', 'probation>healthy:check-passed']);
  });

  test('eject takes probation and healthy endpoints out until now + duration', () => {
    for (const kind of ['probation', 'healthy'] as const) {
      const h = inState(kind);
      const seen = watch(h);
      assert.equal(h.eject(1_000, 30_000, 2), true, kind);
      assert.deepEqual(h.state, { kind: 'ejected', since: 1_000, until: 31_000, times: 2, checkFailures: 0 });
      assert.deepEqual(seen, [`${kind}>ejected:ejected`]);
    }
  });

  test('eject is ignored when already out or draining', () => {
    for (const kind of ['ejected', 'unhealthy', 'draining'] as const) {
      const h = inState(kind);
      const before = h.state;
      const seen = watch(h);
      assert.equal(h.eject(5, 60_000, 9), false, kind);
      assert.equal(h.state, before);
      assert.deepEqual(seen, []);
    }
  });

  test('expireEjection: too early is ignored; when due → probation from ejected', () => {
    const h = new EndpointHealth();
    h.eject(0, 30_000, 1);
    const seen = watch(h);
    assert.equal(h.expireEjection(29_999), false);
    assert.equal(h.state.kind, 'ejected');
    assert.equal(h.expireEjection(30_000), true);
    assert.deepEqual(h.state, { kind: 'probation', since: 30_000, from: 'ejected', successes: 0 });
    assert.equal(h.expireEjection(40_000), false, 'a second expiry is stale');
    assert.deepEqual(seen, ['ejected>probation:ejection-expired']);
  });

  test('expireEjection is ignored in every other state', () => {
    for (const kind of ['probation', 'healthy', 'unhealthy', 'draining'] as const) {
      const h = inState(kind);
      const before = h.state;
      assert.equal(h.expireEjection(1e9), false, kind);
      assert.equal(h.state, before);
    }
  });

  test('failing checks take an ejected endpoint to unhealthy; its ejection timer is then stale', () => {
    const h = new EndpointHealth({ unhealthyThreshold: 3 });
    h.eject(0, 30_000, 1);
    const seen = watch(h);
    h.checkFailed(1);
    h.checkPassed(2);
    h.checkFailed(3);
    h.checkFailed(4);
    assert.equal(h.state.kind, 'ejected', 'a pass reset the streak');
    assert.equal(h.checkFailed(5), true);
    assert.equal(kindOf(h), 'unhealthy');
    assert.equal(h.expireEjection(30_000), false);
    assert.equal(kindOf(h), 'unhealthy', 'only passing checks bring it back');
    assert.deepEqual(seen, ['ejected>unhealthy:check-failed']);
  });

  test('passed checks do not end an ejection early', () => {
    const h = new EndpointHealth();
    h.eject(0, 30_000, 1);
    for (let i = 0; i < 10; i++) assert.equal(h.checkPassed(i), false);
    assert.equal(h.state.kind, 'ejected');
  });

  test('drain works from every state and ignores everything but undrain', () => {
    for (const kind of ['probation', 'healthy', 'ejected', 'unhealthy'] as const) {
      const h = inState(kind);
      const seen = watch(h);
      assert.equal(h.drain(100), true, kind);
      assert.deepEqual(h.state, { kind: 'draining', since: 100 });
      const draining = h.state;
      assert.equal(h.drain(101), false);
      assert.equal(h.checkPassed(102), false);
      assert.equal(h.checkFailed(103), false);
      assert.equal(h.requestSucceeded(104), false);
      assert.equal(h.eject(105, 1_000, 1), false);
      assert.equal(h.expireEjection(1e9), false);
      assert.equal(h.state, draining, `${kind}: stale evidence ignored while draining`);
      assert.equal(h.undrain(200), true);
      assert.deepEqual(h.state, { kind: 'probation', since: 200, from: 'draining', successes: 0 });
      assert.deepEqual(seen, [`${kind}>draining:drained`, 'draining>probation:undrained']);
    }
  });

  test('undrain is ignored unless draining', () => {
    for (const kind of ['probation', 'healthy', 'ejected', 'unhealthy'] as const) {
      const h = inState(kind);
      const before = h.state;
      assert.equal(h.undrain(5), false, kind);
      assert.equal(h.state, before);
    }
  });

  test('listeners get from, to and reason, in subscription order; dispose stops them', () => {
    const h = new EndpointHealth();
    const a: HealthTransition[] = [];
    const order: string[] = [];
    const subA = h.onTransition((t) => {
      a.push(t);
      order.push('a');
    });
    const subB = h.onTransition(() => order.push('b'));
    const before = h.state;
    h.checkFailed(10);
    assert.equal(a.length, 1);
    assert.equal(a[0]!.from, before, 'from is the previous state object');
    assert.equal(a[0]!.to, h.state);
    assert.equal(a[0]!.reason, 'check-failed');
    assert.deepEqual(order, ['a', 'b']);
    subA.dispose();
    subA.dispose();
    h.drain(20);
    assert.equal(a.length, 1);
    assert.deepEqual(order, ['a', 'b', 'b']);
    subB.dispose();
    h.undrain(30);
    assert.deepEqual(order, ['a', 'b', 'b']);
  });

  test('a listener disposing during a report does not disturb that report', () => {
    const h = new EndpointHealth();
    const order: string[] = [];
    h.onTransition(() => {
      order.push('a');
      subB.dispose(); // runs only on a report, after subB is assigned
    });
    const subB = h.onTransition(() => order.push('b'));
    h.drain(1);
    assert.deepEqual(order, ['a', 'b'], 'b still hears the report under way');
    h.undrain(2);
    assert.deepEqual(order, ['a', 'b', 'a']);
  });

  test('a listener may trigger a further transition; both are reported in order', () => {
    const h = new EndpointHealth();
    const seen = watch(h);
    h.onTransition((t) => {
      if (t.to.kind === 'ejected') h.drain(t.to.since);
    });
    h.eject(5, 1_000, 1);
    assert.deepEqual(seen, ['probation>ejected:ejected', 'ejected>draining:drained']);
    assert.equal(h.state.kind, 'draining');
  });

  test('thresholds must be integers >= 1', () => {
    assert.throws(() => new EndpointHealth({ healthyThreshold: 0 }), /healthyThreshold/);
    assert.throws(() => new EndpointHealth({ unhealthyThreshold: 1.5 }), /unhealthyThreshold/);
    assert.throws(() => new EndpointHealth({ unhealthyThreshold: Number.NaN }), /unhealthyThreshold/);
    const h = new EndpointHealth({ healthyThreshold: undefined, unhealthyThreshold: 1 });
    assert.deepEqual({ ...h.options }, { healthyThreshold: 2, unhealthyThreshold: 1 });
    assert.ok(Object.isFrozen(h.options));
  });

  test('healthyThreshold 1: one success is enough at each step', () => {
    const h = new EndpointHealth({ healthyThreshold: 1, unhealthyThreshold: 1 });
    assert.equal(h.requestSucceeded(1), true);
    assert.equal(h.checkFailed(2), true);
    assert.equal(h.state.kind, 'unhealthy');
    assert.equal(h.checkPassed(3), true);
    assert.equal(h.state.kind, 'probation');
  });
});

interface Member {
  readonly id: string;
  readonly health: EndpointHealth;
}

function fleet(...kinds: HealthStateKind[]): Member[] {
  return kinds.map((kind, i) => ({ id: `m${i}`, health: inState(kind) }));
}

function ids(list: readonly Member[]): string[] {
  return list.map((m) => m.id);
}

describe('PanicThreshold', () => {
  test('default threshold is 50 % (Envoy)', () => {
    assert.equal(DEFAULT_PANIC.panicThreshold, 0.5);
    assert.ok(Object.isFrozen(DEFAULT_PANIC));
  });

  test('every member eligible: the members array itself, no panic', () => {
    const members = fleet('healthy', 'probation', 'healthy');
    const panic = new PanicThreshold<Member>();
    assert.equal(panic.select(members), members);
    assert.equal(panic.inPanic, false);
  });

  test('above the threshold: only the eligible members', () => {
    const members = fleet('healthy', 'ejected', 'healthy', 'unhealthy', 'probation');
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm2', 'm4']);
    assert.equal(panic.inPanic, false);
  });

  test('exactly at the threshold is not panic', () => {
    const members = fleet('healthy', 'ejected', 'healthy', 'unhealthy');
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm2']);
    assert.equal(panic.inPanic, false);
  });

  test('below the threshold: eligible and ejected members — not those failing their checks, never draining', () => {
    const members = fleet('ejected', 'healthy', 'draining', 'unhealthy', 'ejected');
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm1', 'm4']);
    assert.equal(panic.inPanic, true);
  });

  test('two of three failing their checks: panic, but traffic stays on the one that passes', () => {
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(fleet('unhealthy', 'healthy', 'unhealthy'))), ['m1']);
    assert.equal(panic.inPanic, true);
  });

  test('no member eligible or merely ejected: panic spreads over every non-draining member', () => {
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(fleet('unhealthy', 'unhealthy', 'draining'))), ['m0', 'm1']);
    assert.equal(panic.inPanic, true);
    // with an ejected member left, the ejected one is tried, not the failing ones
    assert.deepEqual(ids(panic.select(fleet('ejected', 'unhealthy', 'draining'))), ['m0']);
  });

  test('draining members are not counted: a half-drained fleet is not in panic', () => {
    const members = fleet('draining', 'draining', 'ejected', 'healthy');
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(ids(panic.select(members)), ['m3']);
    assert.equal(panic.inPanic, false);
  });

  test('zero members, or all draining: empty, not panic', () => {
    const panic = new PanicThreshold<Member>();
    assert.deepEqual(panic.select([]), []);
    assert.equal(panic.inPanic, false);
    assert.deepEqual(panic.select(fleet('draining', 'draining')), []);
    assert.equal(panic.inPanic, false);
  });

  test('threshold 0 disables panic: nothing eligible means no candidates', () => {
    const panic = new PanicThreshold<Member>({ panicThreshold: 0 });
    assert.deepEqual(panic.select(fleet('ejected', 'unhealthy')), []);
    assert.equal(panic.inPanic, false);
  });

  test('threshold 1: panic as soon as one member is out', () => {
    const panic = new PanicThreshold<Member>({ panicThreshold: 1 });
    assert.deepEqual(ids(panic.select(fleet('healthy', 'healthy', 'ejected'))), ['m0', 'm1', 'm2']);
    assert.equal(panic.inPanic, true);
  });

  test('no allocation when nothing changed: the previous array comes back', () => {
    const members = fleet('healthy', 'ejected', 'healthy', 'healthy');
    const panic = new PanicThreshold<Member>();
    const first = panic.select(members);
    assert.equal(panic.select(members), first);
    // A transition that does not change who is eligible (probation → healthy).
    members[0]!.health.drain(1);
    members[0]!.health.undrain(2);
    members[0]!.health.checkPassed(3);
    assert.equal(panic.select(members), first);
    assert.equal(panic.select([...members]), first, 'a new members array with the same answer');
  });

  test('recomputes after a transition that changes the answer', () => {
    const members = fleet('healthy', 'healthy', 'healthy', 'healthy');
    const panic = new PanicThreshold<Member>();
    assert.equal(panic.select(members), members);
    members[1]!.health.eject(0, 30_000, 1);
    const one = panic.select(members);
    assert.deepEqual(ids(one), ['m0', 'm2', 'm3']);
    members[2]!.health.checkFailed(0);
    members[2]!.health.checkFailed(0);
    members[2]!.health.checkFailed(0);
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm3']);
    assert.equal(panic.inPanic, false);
    members[3]!.health.drain(0);
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm1'], '1 of 3 eligible: panic, the ejected one back, the failing one not');
    assert.equal(panic.inPanic, true);
    members[1]!.health.expireEjection(30_000);
    assert.deepEqual(ids(panic.select(members)), ['m0', 'm1']);
    assert.equal(panic.inPanic, false);
  });

  test('threshold must be within [0, 1]', () => {
    assert.throws(() => new PanicThreshold({ panicThreshold: 1.5 }), /panicThreshold/);
    assert.throws(() => new PanicThreshold({ panicThreshold: -0.1 }), /panicThreshold/);
    assert.throws(() => new PanicThreshold({ panicThreshold: Number.NaN }), /panicThreshold/);
  });
});
