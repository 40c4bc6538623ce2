import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryInbox, RedisInbox, PostgresInbox, type Inbox } from '../../src/events/index.js';
import { loadOptional } from '../../src/core/optional.js';
import type { PoolClient } from 'pg';
import type { ChainableCommander, Redis } from 'ioredis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const suffix = randomBytes(4).toString('hex');

/** The same promises from every inbox store. `write` performs a counted effect through the store's transaction. */
function inboxContract<Tx>(name: string, open: (retention?: number) => Promise<Inbox<Tx>>, effects: { transactional: boolean; write(tx: Tx, key: string): void | Promise<void>; count(key: string): Promise<number> }, expire: (inbox: Inbox<Tx>) => Promise<void>): void {
  describe(`Inbox: ${name}`, () => {
    const opened: Array<Inbox<Tx>> = [];
    const inbox = async (retention?: number) => {
      const i = await open(retention);
      opened.push(i);
      return i;
    };
    after(async () => {
      for (const i of opened) await i.close?.();
    });

    test('runs the effect once per (group, id); another group runs it again', async () => {
      const ib = await inbox();
      const id = `m-${randomBytes(4).toString('hex')}`;
      let n = 0;
      assert.equal(await ib.once('g1', id, () => void n++), 'done');
      assert.equal(await ib.once('g1', id, () => void n++), 'duplicate');
      assert.equal(await ib.once('g2', id, () => void n++), 'done');
      assert.equal(n, 2);
    });

    test('concurrent twins: one effect, the other waits and reports a duplicate', async () => {
      const ib = await inbox();
      const id = `m-${randomBytes(4).toString('hex')}`;
      let n = 0;
      const run = () => ib.once('g', id, async () => {
        n++;
        await sleep(100);
      });
      const results = await Promise.all([run(), run(), run()]);
      assert.equal(n, 1);
      assert.deepEqual(results.sort(), ['done', 'duplicate', 'duplicate']);
    });

    test('a failed effect leaves no record and none of its transactional writes; the retry runs it', async () => {
      const ib = await inbox();
      const id = `m-${randomBytes(4).toString('hex')}`;
      await assert.rejects(ib.once('g', id, async (tx) => {
        await effects.write(tx, id);
        throw new Error('handler failed after writing');
      }), /handler failed/);
      const before = effects.transactional ? 0 : 1; // memory has no transaction to roll the write back
      assert.equal(await effects.count(id), before, 'the write was rolled back with the failure');
      assert.equal(await ib.once('g', id, (tx) => effects.write(tx, id)), 'done');
      assert.equal(await ib.once('g', id, (tx) => effects.write(tx, id)), 'duplicate');
      assert.equal(await effects.count(id), before + 1);
    });

    test('after the retention window a duplicate runs again', async () => {
      const ib = await inbox(300);
      const id = `m-${randomBytes(4).toString('hex')}`;
      let n = 0;
      await ib.once('g', id, () => void n++);
      await sleep(400);
      await expire(ib);
      assert.equal(await ib.once('g', id, () => void n++), 'done');
      assert.equal(n, 2);
    });
  });
}

const memoryWrites = new Map<string, number>();
inboxContract('memory', async (retention) => new MemoryInbox(retention), {
  transactional: false,
  write: (_tx, key) => void memoryWrites.set(key, (memoryWrites.get(key) ?? 0) + 1),
  count: async (key) => memoryWrites.get(key) ?? 0,
}, async () => {});

const prefix = `tandem-test:${suffix}`;
let redisAdmin: RedisInbox<ChainableCommander> | undefined;
// Named: the effect's MULTI is ioredis' ChainableCommander, with every command (tx.incr).
inboxContract('Redis (127.0.0.1:6379)', async (retention) => {
  const ib = await RedisInbox.connect<ChainableCommander>({ prefix, ...(retention ? { retention } : {}), lease: 5_000 });
  redisAdmin ??= await RedisInbox.connect({ prefix });
  return ib;
}, {
  transactional: true,
  write: (tx, key) => void tx.incr(`${prefix}:effect:${key}`),
  count: async (key) => Number((await redisAdmin!.redis.get(`${prefix}:effect:${key}`)) ?? 0),
}, async () => {});

const table = `tandem_inbox_test_${suffix}`;
let pgAdmin: PostgresInbox<PoolClient> | undefined;
inboxContract('PostgreSQL (127.0.0.1:5432)', async (retention) => {
  const ib = await PostgresInbox.connect<PoolClient>({ table, ...(retention ? { retention } : {}) });
  if (!pgAdmin) {
    pgAdmin = ib;
    await ib.pool.query(`CREATE TABLE IF NOT EXISTS ${table}_effects (id text NOT NULL)`);
  }
  return ib;
}, {
  transactional: true,
  write: async (tx, key) => void (await tx.query(`INSERT INTO ${table}_effects (id) VALUES ($1)`, [key])),
  count: async (key) => Number(((await pgAdmin!.pool.query(`SELECT count(*) AS n FROM ${table}_effects WHERE id = $1`, [key])).rows[0] as { n: string }).n),
}, async (ib) => void (await (ib as PostgresInbox<PoolClient>).purge()));

test('PostgreSQL inbox: a session the server ends while the effect runs fails that once(), not the process; the message can run again', async () => {
  const ib = await PostgresInbox.connect<PoolClient>({ table });
  try {
    const id = `ended-${suffix}`;
    const first = ib.once('g', id, async (tx) => {
      const { pid } = (await tx.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number };
      // Ended from outside (a restart, an operator): the FATAL arrives as the held client's 'error' event.
      await ib.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      for (;;) {
        if ((await ib.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0) break;
        await sleep(20);
      }
    });
    await assert.rejects(first);
    assert.equal(await ib.once('g', id, () => {}), 'done', 'nothing was committed: the redelivery runs it');
  } finally {
    await ib.close();
  }
});

after(async () => {
  if (redisAdmin) {
    // An ioredis client at run time: the inbox's type promises only what tandem uses.
    const redis = redisAdmin.redis as unknown as Redis;
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length) await redis.del(...keys);
    await redisAdmin.close();
  }
  const cleanup = await PostgresInbox.connect({ table });
  await cleanup.pool.query(`DROP TABLE IF EXISTS ${table}; DROP TABLE IF EXISTS ${table}_effects`);
  await cleanup.close();
});

test('a missing optional client is reported as TANDEM_ERR_MISSING_DEPENDENCY naming the package', async () => {
  const pkg = 'tandem-no-such-package';
  await assert.rejects(loadOptional(pkg, 'the test adapter', () => import(pkg)), (err: { code: string; message: string }) => {
    assert.equal(err.code, 'TANDEM_ERR_MISSING_DEPENDENCY');
    assert.match(err.message, /install tandem-no-such-package to use the test adapter/);
    return true;
  });
});
