import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Registry, ServiceSnapshot } from '../../src/discovery/types.js';
import { isTandemError } from '../../src/core/errors.js';
import { GUARD_MS, guarded, waitFor } from './wait.js';

export interface RegistryUnderTest {
  registry: Registry;
  cleanup(): Promise<void>;
}

let unique = 0;
/** A service name no other test uses, so tests can share one registry. */
function freshService(): string {
  return `svc-${process.pid}-${++unique}`;
}

/** Resolves with the first snapshot from `iter` that satisfies `pred`; rejects past the guard (helpers/wait.ts). */
export async function nextMatching(iter: AsyncIterator<ServiceSnapshot>, pred: (s: ServiceSnapshot) => boolean, guardMs = GUARD_MS): Promise<ServiceSnapshot> {
  for (;;) {
    const r = await guarded(iter.next(), 'a matching snapshot', guardMs);
    if (r.done) throw new Error('the watch ended');
    if (pred(r.value)) return r.value;
  }
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isTandemError(err), `expected a TandemError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/**
 * The behaviour every writable Registry adapter must show. `make` builds a fresh registry
 * (with its default TTL above 2 s); each test uses its own service names.
 */
export function registryContract(name: string, make: () => Promise<RegistryUnderTest>): void {
  describe(`Registry contract: ${name}`, () => {
    let sut: RegistryUnderTest;
    let r: Registry;
    before(async () => {
      sut = await make();
      r = sut.registry;
    });
    after(async () => sut.cleanup());

    test('register → the instance is in the snapshot with every field; the lease has a TTL', async () => {
      const service = freshService();
      const lease = await r.register({ service, id: 'a', address: '127.0.0.1:7001', zone: 'z1', weight: 3, metadata: { version: '1.2.3' } });
      assert.ok(typeof lease.id === 'string' && lease.id.length >= 16, 'an unguessable lease id');
      assert.ok(lease.ttl > 0);
      const snap = await r.snapshot(service);
      assert.equal(snap.kind, 'snapshot');
      assert.equal(snap.service, service);
      assert.equal(snap.instances.length, 1);
      const inst = snap.instances[0]!;
      assert.deepEqual({ ...inst }, { service, id: 'a', address: '127.0.0.1:7001', host: '127.0.0.1', port: 7001, zone: 'z1', weight: 3, metadata: { version: '1.2.3' }, state: 'ready' });
      await r.deregister(lease.id);
    });

    test('watch: the current members first, then each change, in order', async (t) => {
      const service = freshService();
      const iter = r.watch(service)[Symbol.asyncIterator]();
      const first = await nextMatching(iter, () => true);
      assert.equal(first.instances.length, 0);
      let t0 = performance.now();
      const lease = await r.register({ service, id: 'w1', address: '127.0.0.1:7002' });
      const joined = await nextMatching(iter, (s) => s.instances.length === 1);
      const joinMs = performance.now() - t0;
      assert.equal(joined.instances[0]!.id, 'w1');
      assert.equal(joined.instances[0]!.state, 'ready', 'the join, before the drain');
      t0 = performance.now();
      await r.setState(lease.id, 'draining');
      const drained = await nextMatching(iter, (s) => s.instances[0]?.state === 'draining' || s.instances.length === 0);
      const drainMs = performance.now() - t0;
      assert.equal(drained.instances.length, 1, 'the drain, before the leave');
      t0 = performance.now();
      await r.deregister(lease.id);
      await nextMatching(iter, (s) => s.instances.length === 0);
      const leaveMs = performance.now() - t0;
      // Reported, not asserted: on a loaded machine it measures the machine (npm run
      // bench:registry measures the real figure).
      t.diagnostic(`join ${joinMs.toFixed(1)} ms, drain ${drainMs.toFixed(1)} ms, leave ${leaveMs.toFixed(1)} ms`);
      await iter.return?.();
    });

    test('register the same service and id while its lease lives → 409 TANDEM_ERR_REGISTRY_CONFLICT; the holder keeps it; free again once deregistered', async () => {
      const service = freshService();
      const held = await r.register({ service, id: 'x', address: '127.0.0.1:7003' });
      await assert.rejects(r.register({ service, id: 'x', address: '127.0.0.1:7004' }), (e: unknown) => isTandemError(e) && e.code === 'TANDEM_ERR_REGISTRY_CONFLICT' && e.status === 409);
      assert.deepEqual((await r.snapshot(service)).instances.map((i) => i.address), ['127.0.0.1:7003']);
      await r.heartbeat(held.id);
      await r.deregister(held.id);
      const fresh = await r.register({ service, id: 'x', address: '127.0.0.1:7004' });
      assert.deepEqual((await r.snapshot(service)).instances.map((i) => i.address), ['127.0.0.1:7004']);
      await r.deregister(fresh.id);
    });

    test('a registration repeated with the retryKey of the lease holding its id (the first answer lost) is given that lease, with its own state; another key or address still gets 409; the key is never shown', async () => {
      const service = freshService();
      const retryKey = `rk-${'k'.repeat(22)}`;
      const first = await r.register({ service, id: 'x', address: '127.0.0.1:7005', retryKey });
      const again = await r.register({ service, id: 'x', address: '127.0.0.1:7005', retryKey, state: 'draining' });
      assert.equal(again.id, first.id);
      assert.equal(again.ttl, first.ttl);
      const snap = await r.snapshot(service);
      assert.deepEqual(snap.instances.map((i) => [i.address, i.state]), [['127.0.0.1:7005', 'draining']]);
      assert.equal(JSON.stringify(snap).includes(retryKey), false, 'the key is never shown');
      await r.heartbeat(again.id);
      await rejectsWith(r.register({ service, id: 'x', address: '127.0.0.1:7005', retryKey: `rk-${'x'.repeat(22)}` }), 'TANDEM_ERR_REGISTRY_CONFLICT');
      await rejectsWith(r.register({ service, id: 'x', address: '127.0.0.1:7006', retryKey }), 'TANDEM_ERR_REGISTRY_CONFLICT');
      await rejectsWith(r.register({ service, id: 'x', address: '127.0.0.1:7005' }), 'TANDEM_ERR_REGISTRY_CONFLICT');
      assert.deepEqual((await r.snapshot(service)).instances.map((i) => i.state), ['draining'], 'the refused ones changed nothing');
      await r.deregister(again.id);
    });

    test('heartbeat, setState of an unknown lease → TANDEM_ERR_LEASE_NOT_FOUND; deregister of one is no error', async () => {
      await rejectsWith(r.heartbeat('no-such-lease-aaaaaaaaaa'), 'TANDEM_ERR_LEASE_NOT_FOUND');
      await rejectsWith(r.setState('no-such-lease-aaaaaaaaaa', 'draining'), 'TANDEM_ERR_LEASE_NOT_FOUND');
      await r.deregister('no-such-lease-aaaaaaaaaa');
    });

    test('bad registrations are refused with TANDEM_ERR_REGISTRY_INVALID and change nothing', async () => {
      const service = freshService();
      const bad: unknown[] = [
        { service, id: 'b', address: 'not an address' },
        { service, id: 'b', address: '127.0.0.1:0' },
        { service, id: 'b', address: '127.0.0.1:70000' },
        { service, id: 'b', address: '127.0.0.1:7005', colour: 'blue' },
        { service, id: 'b', address: '127.0.0.1:7005', weight: 0 },
        { service, id: 'b', address: '127.0.0.1:7005', state: 'sleeping' },
        { service: 'no spaces', id: 'b', address: '127.0.0.1:7005' },
        { service, address: '127.0.0.1:7005' },
      ];
      for (const reg of bad) await rejectsWith(r.register(reg as never), 'TANDEM_ERR_REGISTRY_INVALID');
      assert.equal((await r.snapshot(service)).instances.length, 0);
    });

    test('a lease not renewed expires after its TTL; keepAlive keeps another alive past it', async () => {
      const service = freshService();
      // Taken before the registration, so the TTL, which counts from it, cannot look shorter
      // than it is however slow the machine: a bound load cannot break.
      const t0 = performance.now();
      const idle = await r.register({ service, id: 'idle', address: '127.0.0.1:7006', ttl: 1000 });
      const kept = await r.register({ service, id: 'kept', address: '127.0.0.1:7007', ttl: 1000 });
      const ka = r.keepAlive(kept.id, { interval: 200 });
      const iter = r.watch(service)[Symbol.asyncIterator]();
      await nextMatching(iter, (s) => s.instances.length === 1);
      const ms = performance.now() - t0;
      assert.ok(ms >= 990, `expired after ${ms} ms, before its TTL (1000 ms)`);
      // A negative check: the kept lease outlives another full TTL.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const snap = await r.snapshot(service);
      assert.deepEqual(snap.instances.map((i) => i.id), ['kept']);
      await rejectsWith(r.heartbeat(idle.id), 'TANDEM_ERR_LEASE_NOT_FOUND');
      await ka.close();
      await r.deregister(kept.id);
      await iter.return?.();
    });

    test('keepAlive.lost says "expired" when the lease is removed by someone else', async () => {
      const service = freshService();
      const lease = await r.register({ service, id: 'k', address: '127.0.0.1:7008' });
      const ka = r.keepAlive(lease.id, { interval: 200 });
      // Lets the keep-alive get under way; removed before or after its first beat, the lease
      // ends in 'expired' all the same, so a slow machine cannot fail this.
      await new Promise((resolve) => setTimeout(resolve, 100));
      await r.deregister(lease.id);
      assert.deepEqual(await guarded(ka.lost, 'keepAlive.lost'), { kind: 'expired' });
      await ka.close();
    });

    test('keepAlive of an unknown lease → lost: expired', async () => {
      const ka = r.keepAlive('no-such-lease-bbbbbbbbbb', { interval: 200 });
      assert.deepEqual(await ka.lost, { kind: 'expired' });
    });

    test('a watch ends when its signal aborts', async () => {
      const service = freshService();
      const ac = new AbortController();
      const seen: ServiceSnapshot[] = [];
      const done = (async () => {
        for await (const s of r.watch(service, { signal: ac.signal })) seen.push(s);
      })();
      await waitFor('the first snapshot', () => seen.length >= 1);
      ac.abort();
      await done;
      assert.ok(seen.length >= 1);
    });
  });
}
