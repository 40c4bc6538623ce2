// The dashboard's rules in isolation: when a service is degraded (and why), and the history
// ring behind the charts (issue 11, part C). The browser tests show the same end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERROR_RULE, gatewayHealth, serviceReasons, type ServiceFacts } from '../src/gateway/dashboard-health.js';
import { HISTORY_POINTS, HistoryRing } from '../src/gateway/dashboard-history.js';

const facts = (over: Partial<ServiceFacts>): ServiceFacts => ({ name: 'shop', states: new Map([['healthy', 3]]), eligible: 3, panic: false, recent: { count: 0, errors: 0 }, ...over });
const kinds = (f: ServiceFacts) => serviceReasons(f).map((r) => r.kind);

test('degraded: no instance, none eligible, panic, a high error rate — each said in words', () => {
  assert.deepEqual(kinds(facts({})), []);
  assert.deepEqual(serviceReasons(facts({ states: new Map(), eligible: 0 })), [{ kind: 'no-instance', service: 'shop', text: 'no instance: every request gets 503' }]);
  const dead = serviceReasons(facts({ states: new Map([['unhealthy', 2], ['ejected', 1]]), eligible: 0, panic: true }));
  assert.deepEqual(dead.map((r) => r.text), ['no eligible instance (1 ejected, 2 unhealthy)', 'in panic: traffic sent to instances out of rotation']);
  assert.deepEqual(serviceReasons(facts({ states: new Map([['draining', 1]]), eligible: 0 })).map((r) => r.text), ['no eligible instance (1 draining)']);
  const panic = serviceReasons(facts({ states: new Map([['healthy', 1], ['ejected', 3], ['draining', 2]]), eligible: 1, panic: true }));
  assert.deepEqual(panic.map((r) => r.text), ['in panic: 1 of 4 instances eligible, traffic spread over the ejected too']);
});

test(`the error rule: at least ${ERROR_RULE.share * 100} % failed of at least ${ERROR_RULE.minRequests} requests over ${ERROR_RULE.samples} samples`, () => {
  assert.deepEqual(kinds(facts({ recent: { count: 19, errors: 19 } })), [], 'too few requests to judge');
  assert.deepEqual(kinds(facts({ recent: { count: 20, errors: 1 } })), ['errors']);
  assert.deepEqual(kinds(facts({ recent: { count: 100, errors: 4 } })), []);
  assert.equal(serviceReasons(facts({ recent: { count: 240, errors: 30 } }))[0]!.text, '13 % of 240 requests failed (5xx or no answer) in the last 10 s');
  assert.equal(serviceReasons(facts({ recent: { count: 200, errors: 11 } }))[0]!.text, '5.5 % of 200 requests failed (5xx or no answer) in the last 10 s');
});

test('the gateway: draining wins over degraded; ok only without a reason', () => {
  assert.equal(gatewayHealth(false, []), 'ok');
  assert.equal(gatewayHealth(false, serviceReasons(facts({ states: new Map(), eligible: 0 }))), 'degraded');
  assert.equal(gatewayHealth(true, serviceReasons(facts({ states: new Map(), eligible: 0 }))), 'draining');
});

test('history: a ring of the last 300 points, oldest first; recent() sums the newest ones', () => {
  const ring = new HistoryRing();
  assert.deepEqual(ring.view('shop', 1000), { service: 'shop', intervalMs: 1000, t: [], rate: [], errorRate: [], p99Ms: [] });
  for (let i = 0; i < HISTORY_POINTS + 5; i++) ring.push(1_000_000 + i * 1000, 1, 10 * i, i, i === 7 ? null : 25);
  const view = ring.view('shop', 1000);
  assert.equal(view.t.length, HISTORY_POINTS);
  assert.equal(view.t[0], 1_000_000 + 5 * 1000, 'the 5 oldest were overwritten');
  assert.equal(view.t.at(-1), 1_000_000 + (HISTORY_POINTS + 4) * 1000);
  assert.equal(view.rate.at(-1), 10 * (HISTORY_POINTS + 4));
  assert.equal(view.errorRate.at(-1), 0.1);
  const n = HISTORY_POINTS + 4;
  let count = 0;
  for (let i = n - 9; i <= n; i++) count += 10 * i;
  assert.deepEqual(ring.recent(10), { count, errors: count / 10 });
  const young = new HistoryRing();
  const point = young.push(5000, 0.5, 10, 0, null);
  assert.deepEqual(point, { t: 5000, rate: 20, errorRate: 0, p99Ms: null });
  assert.deepEqual(young.push(6000, 1, 1, 0, 60_000).p99Ms, 10_000, 'past the last bucket: drawn at 10 s');
});
