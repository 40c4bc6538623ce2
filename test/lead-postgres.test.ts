import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import pg from 'pg';
import { ROOT } from './helpers/gateway.js';
import { followJsonLines, type JsonLines } from './helpers/json-lines.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { lead, postgresLeaseStore, type Term } from '../src/lead/index.js';
import { TandemError } from '../src/core/errors.js';

/**
 * Leader election on PostgreSQL (the machine's server, in a database of this test's own, dropped
 * after): fenced writes, and three candidate processes whose leader is SIGKILLed, then frozen
 * and resumed — the sequence they append stays gapless and its tokens never go back.
 */

const { defer, track } = cleanupAfterAll();
const suffix = randomBytes(4).toString('hex');
const LEASES = `tandem_leases_t${suffix}`;
const ROWS = `tandem_lead_rows_t${suffix}`;
const DATABASE = `tandem_lead_t${suffix}`;
const URL_OF_DB = `postgres://postgres@127.0.0.1:5432/${DATABASE}`;
const admin = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', max: 1 });
await admin.query(`CREATE DATABASE ${DATABASE}`);
const pool = new pg.Pool({ connectionString: URL_OF_DB, max: 2 });
// Dropping the database (WITH FORCE) ends any session still open on it; an idle one's error is not a failure here.
pool.on('error', () => {});
defer(async () => {
  await pool.end();
  await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await admin.end();
});

test('fenced(): a term writes while its token is the latest; after a takeover its writes are refused (TANDEM_ERR_FENCED)', async () => {
  const store = await postgresLeaseStore({ table: LEASES, pool });
  await pool.query(`CREATE TABLE IF NOT EXISTS ${ROWS}_f (token bigint)`);
  defer(() => pool.query(`DROP TABLE IF EXISTS ${ROWS}_f`));
  const first = await store.acquire('fence', 'a', 60_000);
  assert.ok(first !== undefined);
  const termA = { name: 'fence', token: first };
  await store.fenced(termA, (tx) => tx.query(`INSERT INTO ${ROWS}_f VALUES ($1)`, [first]));
  assert.equal(await store.acquire('fence', 'b', 60_000), undefined, 'held by a: b waits');
  await store.release('fence', 'a', first);
  const second = await store.acquire('fence', 'b', 60_000);
  assert.equal(second, first + 1, 'a new holder, a greater token');
  await assert.rejects(store.fenced(termA, (tx) => tx.query(`INSERT INTO ${ROWS}_f VALUES ($1)`, [first])), (err: unknown) => err instanceof TandemError && err.code === 'TANDEM_ERR_FENCED');
  await store.fenced({ name: 'fence', token: second! }, (tx) => tx.query(`INSERT INTO ${ROWS}_f VALUES ($1)`, [second]));
  const rows = (await pool.query(`SELECT token FROM ${ROWS}_f ORDER BY token`)).rows.map((r: { token: string }) => Number(r.token));
  assert.deepEqual(rows, [first, second]);
  await store.close();
});

test('an idle connection the server ends (restart, failover) does not take the process down: the next call gets a new one', async () => {
  const store = await postgresLeaseStore({ table: LEASES, connectionString: `${URL_OF_DB}?application_name=tandem-lease-idle` });
  defer(() => store.close());
  assert.ok((await store.acquire('idle', 'a', 60_000)) !== undefined);
  const own = store.pool as unknown as pg.Pool;
  assert.ok(own.listenerCount('error') > 0, 'the store listens for its pool\'s errors (else an ended idle client is an uncaught exception)');
  const dropped = once(own, 'error');
  const ended = await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tandem-lease-idle'`);
  assert.ok(ended.rowCount! >= 1, 'the store had an idle connection to end');
  // The pool reports the ended idle client; without the store's own listener this error would
  // have been an uncaught exception, ending the process.
  await dropped;
  assert.equal(await store.renew('idle', 'a', (await store.acquire('idle', 'a', 60_000))!, 60_000), true);
});

test('fenced(): a transaction the server ends while it is held (idle longer than a lease: a frozen leader) fails the call, not the process', async () => {
  const store = await postgresLeaseStore({ table: LEASES, pool });
  const token = await store.acquire('ended', 'a', 60_000);
  assert.ok(token !== undefined);
  const call = store.fenced({ name: 'ended', token }, async (tx) => {
    const { pid } = (await tx.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number };
    // Idle in the transaction until the server ends the session (idle_in_transaction_session_timeout = the
    // 200 ms lease); its FATAL arrives on the held client — an 'error' event with no query to fail.
    for (;;) {
      const gone = (await pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0;
      if (gone) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }, 200);
  await assert.rejects(call, (err: Error) => !(err instanceof TandemError && err.code === 'TANDEM_ERR_FENCED'), 'the commit fails: the session is gone');
  // The client the server ended went back to the pool as broken, not as a usable one.
  await store.fenced({ name: 'ended', token }, (tx) => tx.query('SELECT 1'));
});

test('lead() on PostgreSQL: a term starts with a greater token than any before it', async () => {
  const store = await postgresLeaseStore({ table: LEASES, pool });
  const terms: Term[] = [];
  const leader = lead('in-process', { store, id: 'solo', ttl: 600 }, (term) => { terms.push(term); });
  while (terms.length < 2) await new Promise((r) => setTimeout(r, 20));
  await leader.close();
  assert.ok(terms[1]!.token > terms[0]!.token);
});

interface Candidate { id: string; proc: ReturnType<typeof spawn>; exited: Promise<unknown>; out: JsonLines }

function candidate(id: string): Candidate {
  const proc = spawn(process.execPath, [join(ROOT, 'bench', 'lead-candidate.js'), LEASES, ROWS, 'drill', id, '1500', URL_OF_DB], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  return track({ id, proc, exited, out: followJsonLines(proc, exited, `candidate ${id}`) });
}

const elected = (c: Candidate, after = 0) => c.out.waitFor((l) => l.event === 'elected' && Number(l.token) > after, 30_000);
/**
 * n writes of this term — or the term ended first: on a loaded machine a renewal can miss the
 * local deadline and the leader steps down on its own (correct; the invariants below still hold).
 */
const wrote = (c: Candidate, token: number, n: number) => c.out.waitFor(() => c.out.lines.filter((l) => l.event === 'wrote' && l.token === token).length >= n
  || c.out.lines.some((l) => l.event === 'demoted' && c.out.lines.some((e) => e.event === 'elected' && e.token === token)), 30_000);

/** The first of `cs` to print an election with a token above `after`. */
async function nextLeader(cs: Candidate[], after: number): Promise<{ c: Candidate; token: number }> {
  return Promise.any(cs.map(async (c) => ({ c, token: Number((await elected(c, after)).token) })));
}

test('three candidate processes: leader SIGKILLed, then the next frozen for longer than a lease and resumed — no gap, no write under a stale token', { timeout: 120_000 }, async () => {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${ROWS} (seq bigint PRIMARY KEY, token bigint NOT NULL, holder text NOT NULL)`);
  const cs = ['c1', 'c2', 'c3'].map(candidate);
  const first = await nextLeader(cs, 0);
  await wrote(first.c, first.token, 5);

  first.c.proc.kill('SIGKILL');
  await first.c.exited;
  const rest = cs.filter((c) => c !== first.c);
  const second = await nextLeader(rest, first.token);
  await wrote(second.c, second.token, 5);

  second.c.proc.kill('SIGSTOP');
  const third = await nextLeader(rest.filter((c) => c !== second.c), second.token);
  await wrote(third.c, third.token, 5);
  second.c.proc.kill('SIGCONT');
  // Resumed: it learns it lost the lease (its deadline passed while frozen) and writes nothing.
  await second.c.out.waitFor((l) => l.event === 'demoted', 30_000);
  const thirdWrites = third.c.out.lines.filter((l) => l.event === 'wrote').length;
  await wrote(third.c, third.token, thirdWrites + 5);

  const rows = (await pool.query(`SELECT seq, token FROM ${ROWS} ORDER BY seq`)).rows.map((r: { seq: string; token: string }) => ({ seq: Number(r.seq), token: Number(r.token) }));
  rows.forEach((r, i) => assert.equal(r.seq, i + 1, `no gap at ${i + 1}`));
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i]!.token >= rows[i - 1]!.token, `seq ${rows[i]!.seq}: token ${rows[i]!.token} after ${rows[i - 1]!.token}`);
  const late = second.c.out.lines.filter((l) => l.event === 'wrote' && Number(l.at) > Number((third.c.out.lines.find((x) => x.event === 'elected')!).at));
  assert.deepEqual(late, [], 'the frozen leader wrote nothing after the takeover');
  // Every row was written under a term some candidate was elected to.
  const terms = new Set(cs.flatMap((c) => c.out.lines.filter((l) => l.event === 'elected').map((l) => Number(l.token))));
  for (const r of rows) assert.ok(terms.has(r.token), `seq ${r.seq}: token ${r.token} of no election`);
  assert.ok([first.token, third.token].every((t) => rows.some((r) => r.token === t)), 'the first and the third leader wrote');
  for (const c of cs) c.proc.kill('SIGTERM');
});
