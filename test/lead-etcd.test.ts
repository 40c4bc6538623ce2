import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startEtcd } from './helpers/etcd.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { waitFor } from './helpers/wait.js';
import { lead, etcdLeaseStore, type LeaseStore, type Term } from '../src/lead/index.js';

/**
 * Leader election on etcd (a member this test starts, raft 5× faster than etcd's defaults so a
 * lease may last 1 s): tokens are the lease key's create revision, a handover on close, a
 * takeover when the leader's renewals stop, and transactions fenced by the term.
 */

const { defer } = cleanupAfterAll();
const etcd = await startEtcd(1);
defer(() => etcd.destroy());

/** A store whose renewals can be made to hang (the leader's connection cut). */
function cuttable(inner: LeaseStore): LeaseStore & { cut: boolean } {
  const store = {
    cut: false,
    acquire: (n: string, h: string, t: number) => inner.acquire(n, h, t),
    renew: (n: string, h: string, k: number, t: number) => (store.cut ? new Promise<boolean>(() => {}) : inner.renew(n, h, k, t)),
    release: (n: string, h: string, k: number) => (store.cut ? new Promise<void>(() => {}) : inner.release(n, h, k)),
    close: () => inner.close(),
  };
  return store;
}

function recorder(): { terms: Term[]; work: (t: Term) => Promise<void> } {
  const terms: Term[] = [];
  return { terms, work: (t) => new Promise<void>((resolve) => { terms.push(t); t.signal.addEventListener('abort', () => resolve()); }) };
}

test('etcd: one leads; on close the other takes over with a greater token; a fenced transaction of the old term fails', async () => {
  const storeA = etcdLeaseStore(etcd.url);
  const storeB = etcdLeaseStore(etcd.url);
  defer(() => storeA.close(), () => storeB.close());
  const a = recorder();
  const b = recorder();
  const la = lead('etcd-job', { store: storeA, id: 'a', ttl: 1000 }, a.work);
  await waitFor('a leads', () => la.state === 'leader');
  const lb = lead('etcd-job', { store: storeB, id: 'b', ttl: 1000 }, b.work);
  const termA = a.terms[0]!;
  const key = Buffer.from('/fenced/etcd-job').toString('base64');
  const write = (term: Term, value: string) => storeA.txn({ compare: [storeA.fenceCompare(term)], success: [{ request_put: { key, value: Buffer.from(value).toString('base64') } }] });
  assert.equal((await write(termA, 'a1')).succeeded, true, 'the term in office writes');
  assert.equal(lb.state, 'candidate');
  await la.close();
  await waitFor('b leads', () => lb.state === 'leader');
  const termB = b.terms[0]!;
  assert.ok(termB.token > termA.token, `${termB.token} > ${termA.token}`);
  assert.equal((await write(termA, 'a2')).succeeded, false, 'the old term is fenced off');
  assert.equal((await write(termB, 'b1')).succeeded, true);
  await lb.close();
});

test('etcd: a leader whose renewals hang stops at its local deadline; the other takes over once etcd expires the lease', async () => {
  const inner = etcdLeaseStore(etcd.url);
  const storeB = etcdLeaseStore(etcd.url);
  defer(() => inner.close(), () => storeB.close());
  const storeA = cuttable(inner);
  const a = recorder();
  const b = recorder();
  const la = lead('etcd-cut', { store: storeA, id: 'a', ttl: 1000, onError: () => {} }, a.work);
  await waitFor('a leads', () => la.state === 'leader');
  const lb = lead('etcd-cut', { store: storeB, id: 'b', ttl: 1000 }, b.work);
  const order: string[] = [];
  lb.onElected(() => order.push('b leads'));
  a.terms[0]!.signal.addEventListener('abort', () => order.push('a stopped'));
  storeA.cut = true;
  await waitFor('b leads', () => lb.state === 'leader');
  assert.deepEqual(order, ['a stopped', 'b leads'], 'the old leader stopped before the new one started');
  assert.ok(b.terms[0]!.token > a.terms[0]!.token);
  storeA.cut = false;
  await Promise.all([la.close(), lb.close()]);
});
