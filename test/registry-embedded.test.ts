import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, type TimerHandle } from '../src/core/clock.js';
import { EmbeddedRegistry, type RegistryChange } from '../src/discovery/embedded.js';
import { StaticRegistry } from '../src/discovery/static.js';
import { isTandemError } from '../src/core/errors.js';
import { waitFor } from './helpers/wait.js';

const reg = (id: string, extra: Record<string, unknown> = {}) => ({ service: 'shop', id, address: `127.0.0.1:${7000 + Number(id.replace(/\D/g, '') || 0)}`, ...extra });

test('a lease expires exactly ttl after its last heartbeat, not before (FakeClock)', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 3000 });
  const lease = r.registerNow(reg('a1'));
  clock.advance(2000);
  r.heartbeatNow(lease.id); // now due at 5000
  clock.advance(2999);
  assert.equal(r.size, 1, 'renewed: still there at 4999');
  clock.advance(2);
  assert.equal(r.size, 0, 'gone just after 5000');
  assert.throws(() => r.heartbeatNow(lease.id), (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_LEASE_NOT_FOUND');
});

test('heartbeats arm no timer: one sweep timer for any number of leases', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 10_000 });
  const leases = Array.from({ length: 500 }, (_, i) => r.registerNow(reg(`i${i}`)));
  assert.equal(clock.pending, 1);
  for (let s = 0; s < 30; s++) {
    clock.advance(1000);
    for (const l of leases) r.heartbeatNow(l.id);
  }
  assert.equal(r.size, 500, 'renewed every second: none expired in 30 s');
  assert.ok(clock.pending <= 1);
  clock.advance(10_001);
  assert.equal(r.size, 0);
  assert.equal(clock.pending, 0, 'nothing left to sweep: no timer');
});

test('a registration with a shorter TTL re-arms the sweep earlier', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 10_000 });
  r.registerNow(reg('a1'));
  r.registerNow(reg('a2', { ttl: 1000 }));
  clock.advance(1001);
  assert.deepEqual(r.snapshotNow('shop').instances.map((i) => i.id), ['a1']);
});

test('subscribers see every change synchronously, before the call returns', () => {
  const r = new EmbeddedRegistry({ clock: new FakeClock() });
  const changes: RegistryChange[] = [];
  r.subscribe((c) => changes.push(c));
  const lease = r.registerNow(reg('a1'));
  assert.equal(changes.length, 1);
  r.setStateNow(lease.id, 'draining');
  assert.equal(changes.at(-1)!.kind, 'state');
  assert.equal(changes.at(-1)!.instance.state, 'draining');
  r.setStateNow(lease.id, 'draining');
  assert.equal(changes.length, 2, 'no change, no event');
  r.deregisterNow(lease.id);
  assert.deepEqual(changes.map((c) => c.kind), ['registered', 'state', 'deregistered']);
  assert.ok(changes[0]!.revision < changes[1]!.revision && changes[1]!.revision < changes[2]!.revision);
});

test('limits: instances per peer and in all → 429; an id held by a live lease → 409 and counts once', () => {
  const r = new EmbeddedRegistry({ clock: new FakeClock(), maxInstancesPerPeer: 3, maxInstances: 5 });
  for (let i = 0; i < 3; i++) r.registerNow(reg(`p${i}`), { peer: '10.0.0.1' });
  assert.throws(() => r.registerNow(reg('p0'), { peer: '10.0.0.9' }), (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_REGISTRY_CONFLICT' && e.status === 409);
  assert.throws(() => r.registerNow(reg('p9'), { peer: '10.0.0.1' }), (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_REGISTRY_LIMIT' && e.status === 429);
  r.registerNow(reg('q1'), { peer: '10.0.0.2' });
  r.registerNow(reg('q2'), { peer: '10.0.0.2' });
  assert.throws(() => r.registerNow(reg('q3'), { peer: '10.0.0.3' }), (e: unknown) => isTandemError(e) && e.status === 429 && /maxInstances\b/.test(e.message));
  assert.equal(r.size, 5);
});

test('an id whose lease is past its TTL (not yet swept) can be registered again at once', () => {
  // A clock whose timers never fire: the sweep is late (an event loop busy elsewhere).
  let now = 0;
  const clock = { now: () => now, setTimeout: () => ({}) as TimerHandle, clearTimeout: () => {} };
  const r = new EmbeddedRegistry({ clock, ttl: 1000 });
  const changes: string[] = [];
  const causes: Array<string | undefined> = [];
  r.subscribe((c) => { changes.push(`${c.kind} ${c.instance.address}`); causes.push(c.cause); });
  r.registerNow({ service: 'svc', id: 'same', address: '127.0.0.1:7001' });
  now += 1000;
  const fresh = r.registerNow({ service: 'svc', id: 'same', address: '127.0.0.1:7002' });
  assert.deepEqual(r.snapshotNow('svc').instances.map((i) => i.address), ['127.0.0.1:7002']);
  assert.deepEqual(changes, ['registered 127.0.0.1:7001', 'expired 127.0.0.1:7001', 'registered 127.0.0.1:7002']);
  assert.equal(causes.at(1), 'lease-expired');
  assert.equal(fresh.instance.address, '127.0.0.1:7002');
});

test('the per-peer count goes down when instances leave', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, maxInstancesPerPeer: 2, ttl: 1000 });
  const a = r.registerNow(reg('a1'), { peer: 'p' });
  r.registerNow(reg('a2'), { peer: 'p' });
  r.deregisterNow(a.id);
  r.registerNow(reg('a3'), { peer: 'p' });
  clock.advance(1001);
  r.registerNow(reg('a4'), { peer: 'p' });
  r.registerNow(reg('a5'), { peer: 'p' });
  assert.equal(r.size, 2);
});

test('metadata larger than maxMetadataSize → 413 naming the limit', () => {
  const r = new EmbeddedRegistry({ clock: new FakeClock(), maxMetadataSize: 100 });
  assert.throws(() => r.registerNow(reg('a1', { metadata: { blob: 'x'.repeat(200) } })), (e: unknown) => isTandemError(e) && e.status === 413 && /maxMetadataSize/.test(e.message));
  assert.throws(() => r.registerNow(reg('a1', { metadata: { n: 1 } })), (e: unknown) => isTandemError(e) && e.status === 400 && /metadata\.n/.test(e.message));
  assert.equal(r.size, 0);
});

test('an unknown field is refused with a hint', () => {
  const r = new EmbeddedRegistry({ clock: new FakeClock() });
  assert.throws(() => r.registerNow(reg('a1', { wieght: 2 })), (e: unknown) => isTandemError(e) && /wieght: unknown field — did you mean weight\?/.test(e.message));
});

test('keepAlive (in process) renews on the clock and reports the loss when the lease is removed', async () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 1000 });
  const lease = r.registerNow(reg('a1'));
  const ka = r.keepAlive(lease.id, { interval: 300 });
  clock.advance(5000);
  assert.equal(r.size, 1);
  r.deregisterNow(lease.id);
  assert.deepEqual(await ka.lost, { kind: 'expired' });
  clock.advance(5000);
  assert.equal(clock.pending, 0, 'the keep-alive stopped its timer');
});

test('expireNow (a broken keep-alive stream) removes the instance at once', () => {
  const r = new EmbeddedRegistry({ clock: new FakeClock() });
  const lease = r.registerNow(reg('a1'));
  assert.equal(r.expireNow(lease.id), true);
  assert.equal(r.size, 0);
  assert.equal(r.expireNow(lease.id), false);
});

test('a departure says why: drained, deregistered, connection lost, lease expired (issue 11)', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 1000 });
  const left: string[] = [];
  r.subscribe((c) => { if (c.kind !== 'registered' && c.kind !== 'state') left.push(`${c.instance.id} ${c.kind} ${c.cause}`); });
  const drained = r.registerNow(reg('a1'));
  r.setStateNow(drained.id, 'draining');
  r.deregisterNow(drained.id);
  r.deregisterNow(r.registerNow(reg('a2')).id);
  r.expireNow(r.registerNow(reg('a3')).id);
  r.registerNow(reg('a4'));
  clock.advance(1001);
  assert.deepEqual(left, ['a1 deregistered drained', 'a2 deregistered deregistered', 'a3 expired connection-lost', 'a4 expired lease-expired']);
});

test('static registry: the config endpoints, read-only', async () => {
  const s = new StaticRegistry({ shop: [{ host: '127.0.0.1', port: 7001, weight: 2 }] });
  const snap = await s.snapshot('shop');
  assert.deepEqual(snap.instances.map((i) => [i.address, i.weight, i.state]), [['127.0.0.1:7001', 2, 'ready']]);
  await assert.rejects(s.register({ service: 'shop', id: 'x', address: '127.0.0.1:1' }), (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_REGISTRY_READ_ONLY');
  const ac = new AbortController();
  const seen: number[] = [];
  const done = (async () => { for await (const x of s.watch('shop', { signal: ac.signal })) seen.push(x.instances.length); })();
  await waitFor('the first snapshot', () => seen.length === 1);
  ac.abort();
  await done;
  assert.deepEqual(seen, [1]);
});

test('a registration retried with its retryKey (the first answer lost) gets the lease the first attempt made, not 409; another key, peer or address still gets 409', () => {
  const clock = new FakeClock();
  const r = new EmbeddedRegistry({ clock, ttl: 10_000 });
  const changes: RegistryChange[] = [];
  r.subscribe((c) => changes.push(c));
  const retryKey = 'k'.repeat(24);
  const first = r.registerNow(reg('a1', { retryKey }), { peer: '10.0.0.1' });
  clock.advance(3000); // the registrant's attempt timed out; it tries again
  const again = r.registerNow(reg('a1', { retryKey, state: 'draining' }), { peer: '10.0.0.1' });
  assert.equal(again.id, first.id, 'the same lease');
  assert.equal(again.instance.state, 'draining', 'the retry\'s state applies');
  assert.deepEqual(changes.map((c) => c.kind), ['registered', 'state'], 'no second registration, no leave');
  clock.advance(9999);
  assert.equal(r.size, 1, 'the retry renewed the lease');
  const conflict = (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_REGISTRY_CONFLICT' && e.status === 409;
  assert.throws(() => r.registerNow(reg('a1', { retryKey: 'x'.repeat(24) }), { peer: '10.0.0.1' }), conflict, 'another key');
  assert.throws(() => r.registerNow(reg('a1'), { peer: '10.0.0.1' }), conflict, 'no key');
  assert.throws(() => r.registerNow(reg('a1', { retryKey }), { peer: '10.0.0.2' }), conflict, 'another peer');
  assert.throws(() => r.registerNow({ ...reg('a1', { retryKey }), address: '127.0.0.1:7999' }, { peer: '10.0.0.1' }), conflict, 'another address');
  assert.equal(r.snapshotNow('shop').instances.length, 1);
  assert.equal(JSON.stringify(r.snapshotNow('shop')).includes(retryKey), false, 'the key is never shown');
  assert.throws(() => r.registerNow(reg('b1', { retryKey: 'short' })), (e: unknown) => isTandemError(e) && e.status === 400 && /^retryKey:/.test(e.message));
});
