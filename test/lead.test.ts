import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../src/core/clock.js';
import { lead, MemoryLeaseStore, type LeaseStore, type Term } from '../src/lead/index.js';
import { OptionsError } from '../src/core/options.js';

/**
 * Leader election's logic on a FakeClock and the in-memory store: when a term starts, when it
 * ends (renewal refused, renewal hanging past the local deadline, close, work ended), and that
 * tokens grow. Real processes and PostgreSQL: lead-postgres.test.ts.
 */

/** Lets the store's promises and the election's awaits run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** Advances the clock in steps of 10 ms, letting promises run in between. */
async function pass(clock: FakeClock, ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    clock.advance(Math.min(10, ms - t));
    await settle();
  }
}

/** A store whose calls can be made to hang (a cut connection). */
class Cuttable implements LeaseStore {
  cut = false;
  constructor(readonly inner: MemoryLeaseStore) {}
  private maybe<T>(call: () => Promise<T>): Promise<T> {
    return this.cut ? new Promise<T>(() => {}) : call();
  }
  acquire(name: string, holder: string, ttl: number) { return this.maybe(() => this.inner.acquire(name, holder, ttl)); }
  renew(name: string, holder: string, token: number, ttl: number) { return this.maybe(() => this.inner.renew(name, holder, token, ttl)); }
  release(name: string, holder: string, token: number) { return this.maybe(() => this.inner.release(name, holder, token)); }
  close() { return Promise.resolve(); }
}

/** Work that records its term and waits for its signal. */
function recorder(): { terms: Term[]; ended: string[]; work: (t: Term) => Promise<void> } {
  const terms: Term[] = [];
  const ended: string[] = [];
  return {
    terms,
    ended,
    work: (t) => new Promise<void>((resolve) => {
      terms.push(t);
      t.signal.addEventListener('abort', () => { ended.push(String((t.signal.reason as Error).message)); resolve(); });
    }),
  };
}

test('one of two candidates leads; on close the other takes over with a greater token', async () => {
  const clock = new FakeClock(1000);
  const store = new MemoryLeaseStore(clock);
  const a = recorder();
  const b = recorder();
  const la = lead('job', { store, id: 'a', ttl: 1500, clock }, a.work);
  await settle();
  const lb = lead('job', { store, id: 'b', ttl: 1500, clock }, b.work);
  await pass(clock, 3000);
  assert.equal(la.state, 'leader');
  assert.equal(lb.state, 'candidate');
  assert.equal(a.terms.length, 1, 'renewals keep the one term');
  assert.equal(a.terms[0]!.token, 1);
  assert.ok(a.terms[0]!.isLeader());
  assert.equal(b.terms.length, 0);
  const closing = la.close();
  await settle();
  assert.equal(a.terms[0]!.signal.aborted, true, 'the signal fires first');
  assert.equal(a.terms[0]!.isLeader(), false);
  await closing;
  await pass(clock, 250);
  assert.equal(lb.state, 'leader', 'the lease was released: taken within a retry interval');
  assert.equal(b.terms[0]!.token, 2);
  await lb.close();
});

test('a renewal that hangs (cut connection): the signal fires at the local deadline, before the lease expires; then another leads', async () => {
  const clock = new FakeClock(1000);
  const memory = new MemoryLeaseStore(clock);
  const cuttable = new Cuttable(memory);
  const a = recorder();
  const b = recorder();
  const la = lead('job', { store: cuttable, id: 'a', ttl: 1500, clock }, a.work);
  await settle();
  const lb = lead('job', { store: memory, id: 'b', ttl: 1500, clock }, b.work);
  await pass(clock, 100);
  assert.equal(la.state, 'leader');
  // The last renewal went out at the latest 500 ms ago: cut now.
  await pass(clock, 400);
  cuttable.cut = true;
  const cutAt = clock.now();
  let endedAt = 0;
  a.terms[0]!.signal.addEventListener('abort', () => { endedAt = clock.now(); });
  await pass(clock, 1500);
  assert.ok(endedAt > 0, 'demoted');
  assert.match(a.ended[0]!, /local deadline/);
  // The store's lease runs ttl from the last renewal; the leader stopped at 2/3 of it.
  assert.ok(endedAt - cutAt <= 1000, `stopped ${endedAt - cutAt} ms after the cut, within 2/3 of the lease`);
  await pass(clock, 1000);
  assert.equal(lb.state, 'leader', 'taken over once the lease expired');
  assert.equal(b.terms[0]!.token, 2);
  assert.ok(b.terms[0]!.token > a.terms[0]!.token);
  // The cut candidate's release hangs too, bounded by a lease.
  const closing = Promise.all([la.close(), lb.close()]);
  await pass(clock, 1600);
  await closing;
});

test('a refused renewal (the lease was taken) demotes at once; work that returns gives the lease up for the next term', async () => {
  const clock = new FakeClock(1000);
  const store = new MemoryLeaseStore(clock);
  const a = recorder();
  const la = lead('job', { store, id: 'a', ttl: 1500, clock }, a.work);
  await pass(clock, 100);
  assert.equal(la.state, 'leader');
  // Someone takes the lease from under it (an operator, a store failover).
  await store.release('job', 'a', a.terms[0]!.token);
  assert.equal(await store.acquire('job', 'other', 1500), 2);
  await pass(clock, 600);
  assert.match(a.ended[0]!, /renewal refused/);
  assert.equal(la.state, 'candidate');
  await la.close();

  let runs = 0;
  const lc = lead('once', { store, id: 'c', ttl: 1500, clock }, () => { runs++; });
  await pass(clock, 300);
  assert.ok(runs >= 2, 'elected again after its work returned');
  assert.equal(store.latestToken('once'), runs, 'a new token per term');
  await lc.close();
});

test('lead(): options are checked (unknown key with a hint, missing store)', () => {
  const store = new MemoryLeaseStore();
  assert.throws(() => lead('job', { store, tll: 100 } as never, () => {}), (err: unknown) => err instanceof OptionsError && /tll.*ttl/s.test(err.message));
  assert.throws(() => lead('job', {} as never, () => {}), (err: unknown) => err instanceof OptionsError && /store: required/.test(err.message));
  assert.throws(() => lead('', { store }, () => {}), /non-empty/);
});
