// The shop example (examples/shop, `npm start`) as a user runs it: the launcher, a gateway and
// every service as real child processes. An order placed through the gateway is charged once
// and gets one confirmation and one shipping notice — with the embedded defaults (memory stores,
// the memory bus) and with PostgreSQL (a database of the test's own), NATS (a server of its own)
// and the machine's Redis (the catalog's read cache: keys shop:product:*, 10 s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { ROOT } from './helpers/gateway.js';
import { waitFor } from './helpers/wait.js';
import { startNatsServer } from './helpers/nats-server.js';
import { startEtcd } from './helpers/etcd.js';

const START = join(ROOT, 'examples', 'shop', 'start.js');

interface Order { id: string; status: string; totalCents: number; sku: string; qty: number }

/** Runs the launcher (on free ports, but for the pair: its own addresses); resolves once its banner is out. */
async function startShop(args: string[] = []) {
  const ports = args.includes('--pair') ? [] : ['--listen=127.0.0.1:0', '--admin=127.0.0.1:0'];
  // A process group of its own: a failed test kills the launcher and every instance at once.
  const proc = spawn(process.execPath, [START, ...ports, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const killAll = () => { try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* gone */ } };
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  try {
    await waitFor(() => `the banner (so far: ${out}${err})`, () => /the shop: gateway/.test(out) || proc.exitCode !== null, { intervalMs: 50 });
    assert.equal(proc.exitCode, null, `${out}\n${err}`);
  } catch (error) {
    killAll();
    throw error;
  }
  const base = /the shop: gateway (http:\/\/\S+)\//.exec(out)![1]!;
  const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(proc.pid)], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
  /** Lines `[<service>-<n>] <text>` the launcher printed for `order`. */
  const effects = (pattern: RegExp, order: string) => out.split('\n').filter((l) => pattern.test(l) && l.includes(order));
  return { proc, base, children, exited, effects, killAll, output: () => `${out}\n${err}` };
}

function placeOrder(base: string, key: string, body: object) {
  return fetch(`${base}/orders`, { method: 'POST', headers: { 'idempotency-key': key, 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** One order placed three times with the same key (twice at once): one order, one charge, one confirmation, one shipping notice. */
async function orderOnce(shop: Awaited<ReturnType<typeof startShop>>) {
  const { base } = shop;
  const key = `test-${Date.now()}`;
  const first = await Promise.all([placeOrder(base, key, { sku: 'cheese', qty: 2 }), placeOrder(base, key, { sku: 'cheese', qty: 2 })]);
  const again = await placeOrder(base, key, { sku: 'cheese', qty: 2 });
  const answers = [...first, again];
  const orders = (await Promise.all(answers.map((r) => r.json()))) as Order[];
  assert.deepEqual(answers.map((r) => r.status).sort(), [200, 200, 201], JSON.stringify(orders));
  assert.equal(new Set(orders.map((o) => o.id)).size, 1, 'the same key is the same order');
  const order = orders[0]!;
  assert.equal(order.status, 'paid');
  assert.equal(order.totalCents, 980, 'priced through the catalog: 2 × 490');

  const read = await fetch(`${base}/orders/${order.id}`);
  assert.equal(read.status, 200);
  assert.deepEqual(await read.json(), order);
  assert.equal((await fetch(`${base}/orders/no-such-order`)).status, 404);
  assert.equal((await placeOrder(base, key, { sku: 'apple', qty: 1 })).status, 422, 'a key used for another order');
  assert.equal((await fetch(`${base}/orders`, { method: 'POST', body: '{"sku":"apple"}' })).status, 400, 'no Idempotency-Key');
  assert.equal((await placeOrder(base, `${key}-x`, { sku: 'caviar' })).status, 422, 'an unknown product');

  // The gateway's route cache in front of the catalog.
  assert.equal((await fetch(`${base}/catalog/items/apple`)).headers.get('x-tandem-cache'), 'miss');
  assert.equal((await fetch(`${base}/catalog/items/apple`)).headers.get('x-tandem-cache'), 'hit');

  await waitFor(() => `a confirmation and a shipping notice for ${order.id}:\n${shop.output()}`,
    () => shop.effects(/\[notifications-\d+\] /, order.id).length > 0 && shop.effects(/\[shipping-\d+\] /, order.id).length > 0, { intervalMs: 50 });
  return order;
}

/** Ctrl-C: every instance drains and exits, then the launcher exits 0; nothing more can happen after. */
async function stopShop(shop: Awaited<ReturnType<typeof startShop>>) {
  shop.proc.kill('SIGINT');
  assert.equal(await shop.exited, 0, shop.output());
  const alive = shop.children.filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
  assert.deepEqual(alive, [], 'every instance is gone');
}

function assertOnce(shop: Awaited<ReturnType<typeof startShop>>, order: Order) {
  assert.equal(shop.effects(/\[payments-\d+\] Charged 980 cents/, order.id).length, 1, `charged once:\n${shop.output()}`);
  assert.equal(shop.effects(/\[notifications-\d+\] /, order.id).length, 1, 'one confirmation');
  assert.equal(shop.effects(/\[shipping-\d+\] /, order.id).length, 1, 'one shipping notice');
}

test('the shop with the embedded defaults: an order through the gateway is charged once, confirmed once, shipped once', async () => {
  const shop = await startShop();
  try {
    assert.match(shop.output(), /no database or broker: in-memory stores and the memory bus/);
    assert.equal(shop.children.length, 1 + 1 + 3 + 2 + 2, 'payments ×1, orders ×1, catalog ×3, notifications ×2, shipping ×2');
    const order = await orderOnce(shop);
    await stopShop(shop);
    assertOnce(shop, order);
  } finally {
    shop.killAll();
  }
});

test('the shop with PostgreSQL, NATS and Redis: the same, with three orders and three payments instances', async (t) => {
  const nats = await startNatsServer();
  const database = `tandem_shop_${process.pid}`;
  const admin = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', max: 1 });
  await admin.query(`CREATE DATABASE ${database}`);
  t.after(async () => {
    await nats.destroy();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });
  const shop = await startShop([`--postgres=postgres://postgres@127.0.0.1:5432/${database}`, `--nats=${nats.url}`, '--redis']);
  try {
    assert.match(shop.output(), /using +postgres .*, redis .*, nats /);
    assert.equal(shop.children.length, 3 + 3 + 3 + 2 + 2);
    const order = await orderOnce(shop);
    await stopShop(shop);
    assertOnce(shop, order);
    const db = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:5432/${database}`, max: 1 });
    try {
      const count = async (sql: string) => Number((await db.query(sql, [order.id])).rows[0].n);
      assert.equal(await count('SELECT count(*) AS n FROM shop_charges WHERE order_id = $1'), 1);
      assert.equal(await count('SELECT count(*) AS n FROM shop_confirmations WHERE order_id = $1'), 1);
      assert.equal(await count('SELECT count(*) AS n FROM shop_shipments WHERE order_id = $1'), 1);
      assert.equal(await count("SELECT count(*) AS n FROM shop_orders WHERE id = $1 AND status = 'paid'"), 1);
    } finally {
      await db.end();
    }
  } finally {
    shop.killAll();
  }
});

test('the shop with --etcd: instances register in etcd, the gateway reads them from it, and an order goes through as before', async (t) => {
  const etcd = await startEtcd();
  t.after(() => etcd.destroy());
  const shop = await startShop([`--etcd=${etcd.endpoints.join(',')}`]);
  try {
    assert.match(shop.output(), /using +etcd \(ETCD_ENDPOINTS=127\.0\.0\.1:\d+\)/);
    // Every instance is a key of etcd's (<prefix>/services/<service>/<id>), none of the embedded registry's.
    const range = await fetch(`http://${etcd.endpoints[0]}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({ key: Buffer.from('/tandem/services/').toString('base64'), range_end: Buffer.from('/tandem/services0').toString('base64'), keys_only: true }),
    }).then((r) => r.json()) as { kvs?: Array<{ key: string }> };
    const services = (range.kvs ?? []).map((kv) => Buffer.from(kv.key, 'base64').toString().split('/')[3]).sort();
    assert.deepEqual(services, ['catalog', 'catalog', 'catalog', 'notifications', 'notifications', 'orders', 'payments', 'shipping', 'shipping']);
    const order = await orderOnce(shop);
    await stopShop(shop);
    assertOnce(shop, order);
  } finally {
    shop.killAll();
  }
});

test('the shop started while its broker is down: the instances wait for it, then serve; an order goes through', async (t) => {
  const nats = await startNatsServer();
  t.after(() => nats.destroy());
  await nats.stop();
  const proc = spawn(process.execPath, [START, '--listen=127.0.0.1:0', '--admin=127.0.0.1:0', `--nats=${nats.url}`], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  t.after(() => { try { process.kill(-proc.pid!, 'SIGKILL'); } catch { /* gone */ } });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  await waitFor(() => `an instance waiting for the broker (so far: ${out})`, () => /\[(orders|notifications)-1\] broker unreachable/.test(out) || proc.exitCode !== null, { intervalMs: 50 });
  assert.equal(proc.exitCode, null, out);
  await nats.start();
  await waitFor(() => `the banner (so far: ${out})`, () => /the shop: gateway/.test(out) || proc.exitCode !== null, { intervalMs: 50 });
  assert.equal(proc.exitCode, null, out);
  const base = /the shop: gateway (http:\/\/\S+)\//.exec(out)![1]!;
  const placed = await placeOrder(base, `late-broker-${Date.now()}`, { sku: 'apple', qty: 1 });
  assert.equal(placed.status, 201);
  const order = await placed.json() as Order;
  await waitFor(() => `a confirmation and a shipping notice for ${order.id}:\n${out}`, () => out.includes(`Order ${order.id} is paid`) && new RegExp(`\\[shipping-\\d+\\] .*${order.id}`).test(out), { intervalMs: 50 });
});

const asRoot = process.getuid?.() === 0;
const pairTools = ['ip', 'keepalived', 'nft', 'curl'].every((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0);

test('npm start -- --pair: two gateways behind 10.214.0.100, an order through the address, a SIGKILLed holder replaced by its peer, nothing left after Ctrl-C', { skip: !asRoot ? 'needs root (network namespaces)' : !pairTools ? 'needs ip, keepalived, nft and curl' : false }, async () => {
  const shop = await startShop(['--pair']);
  try {
    assert.equal(shop.base, 'http://10.214.0.100:8080');
    const prefix = /in network namespaces (tsp\d+)-g1/.exec(shop.output())![1]!;
    const logs = /logs +(\S+)/.exec(shop.output())![1]!;
    await orderOnce(shop);
    // The banner names the gateway holding the address: kill it; the address moves, the peer serves.
    const holder = Number(/kill -9 (\d+)/.exec(shop.output())![1]);
    process.kill(holder, 'SIGKILL');
    await waitFor(() => 'a GET through the address after the SIGKILL', async () => (await fetch(`${shop.base}/catalog/items/apple`, { signal: AbortSignal.timeout(3000) }).catch(() => null))?.status === 200);
    const read = await fetch(`${shop.base}/catalog/items/bread`);
    assert.equal(read.status, 200);
    await stopShop(shop);
    assert.doesNotMatch(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }), new RegExp(prefix), 'the namespaces are gone');
    assert.doesNotMatch(execFileSync('ip', ['-br', 'link'], { encoding: 'utf8' }), new RegExp(prefix), 'the root\'s link to the bridge is gone');
    assert.equal(existsSync(logs), false, 'the temp dir is gone');
  } finally {
    shop.killAll();
  }
});

test('npm start -- --pair: bad input is refused with why — a value, with --listen or --etcd, and without root', async () => {
  const run = (args: string[], options: { uid?: number; gid?: number } = {}) => spawnSync(process.execPath, [START, ...args], { encoding: 'utf8', timeout: 30_000, ...options });
  assert.match(run(['--pair=yes']).stderr, /--pair takes no value/);
  assert.match(run(['--pair', '--listen=127.0.0.1:8080']).stderr, /--pair with --listen: the pair's gateways listen on the virtual address/);
  assert.match(run(['--pair', '--etcd']).stderr, /--pair with --etcd/);
  // As root, the same launcher as nobody.
  const notRoot = run(['--pair'], asRoot ? { uid: 65534, gid: 65534 } : {});
  assert.equal(notRoot.status, 1);
  assert.match(notRoot.stderr, /--pair needs root: it builds network namespaces .* sudo npm start -- --pair/);
});

test('npm start -- --drill with the embedded defaults: under SIGKILLs and a freeze no order is lost, charged twice or notified twice', async (t) => {
  const proc = spawn(process.execPath, [START, '--drill', '--duration=8', '--rate=60', '--listen=127.0.0.1:0', '--admin=127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const code = await new Promise<number | string>((resolve) => proc.once('exit', (c, signal) => resolve(c ?? signal ?? -1)));
  t.diagnostic(out.split('\n').filter((l) => /^\s+(\||ok|FAIL|PASS|skipped|the drill)/.test(l)).join('\n'));
  // Failed and slow requests depend on the machine (a saturated one times requests out): the
  // drill prints them; the test holds the business to what must hold at any speed.
  assert.ok(code === 0 || code === 1, out);
  for (const service of ['catalog', 'notifications', 'shipping']) assert.match(out, new RegExp(`SIGKILL ${service}-1`));
  assert.match(out, /SIGSTOP catalog-\d for 4 s/);
  assert.match(out, /\| POST \/orders \| 160 \| \d+ \|/);
  assert.match(out, /ok {4}0 {2}order POSTs answered OK although the order was not taken/);
  assert.match(out, /ok {4}0 {2}orders charged twice/);
  assert.match(out, /ok {4}0 {2}orders without exactly one confirmation and one shipping notice once quiet \(of 160 paid\)/);
  assert.match(out, /0 POSTs failed and their retry placed no order either/);
});

test('the drill\'s order check: a POST answered 200 (the gateway retried it by its Idempotency-Key and another instance found the order) is an order placed, not an error', async () => {
  const { checkOrderPosts } = await import(pathToFileURL(join(ROOT, 'examples', 'shop', 'drill.js')).href) as {
    checkOrderPosts: (posts: object[], io: { read: (id: string) => Promise<object | null>; retry: (r: { id: string }) => Promise<{ status: number; order?: { id: string } }> }) =>
      Promise<{ errorButTaken: number; okButNotTaken: number; neverPlaced: number; orders: Map<string, object> }>;
  };
  const paid = (id: string) => ({ id, status: 'paid' });
  const retried: string[] = [];
  const posts = [
    { id: 'drill-1', status: 201, tag: '/orders/a' },
    { id: 'drill-4', status: 200, tag: '/orders/b' }, // placed by an instance that died answering; found by the next
    { id: 'drill-7', status: 502 }, // an error, and the retry finds the order: taken although answered with an error
    { id: 'drill-10', status: 0 }, // no answer, and the retry places it
  ];
  const result = await checkOrderPosts(posts, {
    read: async (id) => paid(id),
    retry: async (r) => {
      retried.push(r.id);
      return r.id === 'drill-7' ? { status: 200, order: paid('c') } : { status: 201, order: paid('d') };
    },
  });
  assert.deepEqual(retried, ['drill-7', 'drill-10'], 'only the errors are retried');
  assert.equal(result.errorButTaken, 1);
  assert.equal(result.okButNotTaken, 0);
  assert.equal(result.neverPlaced, 0);
  assert.deepEqual([...result.orders.keys()].sort(), ['a', 'b', 'c', 'd']);

  const unpaid = await checkOrderPosts([{ id: 'drill-1', status: 200, tag: '/orders/e' }], { read: async (id) => ({ id, status: 'pending' }), retry: async () => ({ status: 0 }) });
  assert.equal(unpaid.okButNotTaken, 1, 'an OK answer must name a paid order');
});
