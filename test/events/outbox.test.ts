import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryBus, PostgresOutbox, PostgresInbox, type Message } from '../../src/events/index.js';
import { uniqueTopic, waitFor } from './contract.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const table = `tandem_outbox_test_${randomBytes(4).toString('hex')}`;
const outbox = await PostgresOutbox.connect({ table });
await outbox.pool.query(`CREATE TABLE ${table}_orders (id text PRIMARY KEY)`);
after(async () => {
  await outbox.pool.query(`DROP TABLE IF EXISTS ${table}; DROP TABLE IF EXISTS ${table}_orders; DROP TABLE IF EXISTS ${table}_inbox; DROP TABLE IF EXISTS ${table}_effects`);
  await outbox.pool.query(`DELETE FROM tandem_leases WHERE name = $1`, [`tandem-outbox:${table}`]);
  await outbox.close();
});

/** A business change and its event in one transaction. */
async function placeOrder(topic: string, id: string, commit: boolean): Promise<void> {
  const tx = await outbox.pool.connect();
  try {
    await tx.query('BEGIN');
    await tx.query(`INSERT INTO ${table}_orders (id) VALUES ($1)`, [id]);
    await outbox.add(tx, topic, { order: id }, { id: `order-placed-${id}` });
    await tx.query(commit ? 'COMMIT' : 'ROLLBACK');
  } finally {
    tx.release();
  }
}

test('outbox: an event exists only if its transaction committed; the relay publishes it once and marks it sent', async () => {
  const bus = new MemoryBus();
  const topic = uniqueTopic('outbox');
  const got: Message[] = [];
  await bus.subscribe(topic, 'g', (m) => void got.push(m));
  const relay = outbox.relay(bus, { pollInterval: 50 });
  await placeOrder(topic, 'a1', false);
  await placeOrder(topic, 'a2', true);
  await placeOrder(topic, 'a3', true);
  await waitFor('two events', () => got.length === 2);
  await sleep(300);
  assert.deepEqual(got.map((m) => m.id).sort(), ['order-placed-a2', 'order-placed-a3']);
  assert.deepEqual(got.map((m) => m.payload).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y))), [{ order: 'a2' }, { order: 'a3' }]);
  assert.equal(await outbox.pending(), 0);
  assert.equal(relay.state, 'active');
  await relay.close();
  await bus.close();
});

test('outbox: one relay works at a time (a lease); when it loses its database another takes over and nothing is lost', async () => {
  const bus = new MemoryBus();
  const topic = uniqueTopic('outbox');
  const inbox = await PostgresInbox.connect({ pool: outbox.pool, table: `${table}_inbox` });
  await outbox.pool.query(`CREATE TABLE ${table}_effects (id text NOT NULL)`);
  await bus.subscribe(topic, 'g', async (m, tx) => void (await tx.query(`INSERT INTO ${table}_effects (id) VALUES ($1)`, [m.id])), { inbox });
  // Each relay on a pool of its own, as in two processes.
  const outbox1 = await PostgresOutbox.connect({ table });
  const outbox2 = await PostgresOutbox.connect({ table });
  const r1 = outbox1.relay(bus, { pollInterval: 40, onError: () => {} });
  await waitFor('r1 active', () => r1.state === 'active');
  const r2 = outbox2.relay(bus, { pollInterval: 40 });
  for (let i = 0; i < 20; i++) await placeOrder(topic, `b${i}`, true);
  await waitFor('20 relayed', async () => (await outbox.pending()) === 0);
  assert.equal(r2.state, 'standby', 'the second relay stands by while the first holds the lease');
  assert.equal(r1.relayed, 20);
  assert.equal(r2.relayed, 0);
  // The active relay loses its database (as when its host is cut off): its renewals fail, it
  // steps down at its local deadline, and the standby takes the lease once it expires.
  await outbox1.pool.end();
  await waitFor('r1 to step down', () => r1.state === 'standby');
  await waitFor('r2 to take over', () => r2.state === 'active');
  for (let i = 20; i < 40; i++) await placeOrder(topic, `b${i}`, true);
  await waitFor('40 relayed', async () => (await outbox.pending()) === 0);
  assert.ok(r2.relayed >= 20);
  await waitFor('40 effects', async () => Number(((await outbox.pool.query(`SELECT count(*) AS n FROM ${table}_effects`)).rows[0] as { n: string }).n) === 40);
  const dup = await outbox.pool.query(`SELECT id FROM ${table}_effects GROUP BY id HAVING count(*) > 1`);
  assert.equal(dup.rowCount, 0, 'each effect exactly once');
  await r1.close();
  await r2.close();
  await outbox2.close();
  await bus.close();
  await inbox.close();
});
