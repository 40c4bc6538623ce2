import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Registry, ServiceSnapshot } from '../../src/discovery/types.js';
import { isTandemError } from '../../src/core/errors.js';

export interface RegistryUnderTest {
  registry: Registry;
  cleanup(): Promise<void>;
}

let unique = 0;
/** A service name no other test uses, so tests can share one registry. */
function freshService(): string {
  return `svc-${process.pid}-${++unique}`;
}

/** Resolves with the first snapshot from `iter` that satisfies `pred`, or rejects after `ms`. */
export async function nextMatching(iter: AsyncIterator<ServiceSnapshot>, pred: (s: ServiceSnapshot) => boolean, ms = 3000): Promise<ServiceSnapshot> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('no matching snapshot in time');
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([iter.next(), new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), left); })]);
    clearTimeout(timer);
    if (r === 'timeout') throw new Error('no matching snapshot in time');
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

    test('watch: the current members first, then each change, each within 100 ms', async () => {
      const service = freshService();
      const iter = r.watch(service)[Symbol.asyncIterator]();
      const first = await nextMatching(iter, () => true);
      assert.equal(first.instances.length, 0);
      let t0 = performance.now();
      const lease = await r.register({ service, id: 'w1', address: '127.0.0.1:7002' });
      const joined = await nextMatching(iter, (s) => s.instances.length === 1);
      const joinMs = performance.now() - t0;
      assert.equal(joined.instances[0]!.id, 'w1');
      t0 = performance.now();
      await r.setState(lease.id, 'draining');
      await nextMatching(iter, (s) => s.instances[0]?.state === 'draining');
      const drainMs = performance.now() - t0;
      t0 = performance.now();
      await r.deregister(lease.id);
      await nextMatching(iter, (s) => s.instances.length === 0);
      const leaveMs = performance.now() - t0;
      // Generous for a shared 2-core machine; the bench measures the real figure.
      assert.ok(Math.max(joinMs, drainMs, leaveMs) < 100, `join ${joinMs} ms, drain ${drainMs} ms, leave ${leaveMs} ms`);
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
      const idle = await r.register({ service, id: 'idle', address: '127.0.0.1:7006', ttl: 1000 });
      const kept = await r.register({ service, id: 'kept', address: '127.0.0.1:7007', ttl: 1000 });
      const ka = r.keepAlive(kept.id, { interval: 200 });
      const iter = r.watch(service)[Symbol.asyncIterator]();
      const t0 = performance.now();
      await nextMatching(iter, (s) => s.instances.length === 1, 4000);
      const ms = performance.now() - t0;
      assert.ok(ms > 700 && ms < 2500, `expired after ${ms} ms (TTL 1000 ms)`);
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
      await new Promise((resolve) => setTimeout(resolve, 100));
      await r.deregister(lease.id);
      let timer: NodeJS.Timeout | undefined;
      const loss = await Promise.race([ka.lost, new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), 2000); })]);
      clearTimeout(timer);
      assert.deepEqual(loss, { kind: 'expired' });
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
      await new Promise((resolve) => setTimeout(resolve, 100));
      ac.abort();
      await done;
      assert.ok(seen.length >= 1);
    });
  });
}
