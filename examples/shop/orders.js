#!/usr/bin/env node
// orders: POST /orders {"sku":"apple","qty":2} with an Idempotency-Key header places an order:
// prices it through the catalog (tandem/client, HTTP), charges it through payments
// (tandem/client, gRPC), stores it as paid and announces `orders.paid`. GET /orders/<id> reads it.
// The same key again — a client's retry — gets the same order and charges nothing more.
// Orders live in PostgreSQL, with the event in the same transaction (outbox), when DATABASE_URL
// is set; otherwise in this process (then run one instance only) with the memory bus.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { serve } from 'tandem-ha/node';
import { createClient, createGrpcClient } from 'tandem-ha/client';
import { PostgresOutbox } from 'tandem-ha/events';
import { openBus, pushTo } from './lib/events.js';
import { readJson, send } from './lib/http.js';
import { createTables, log, paymentsProto, pgPool, settings } from './lib/settings.js';

const catalog = createClient('catalog', { registry: settings.registry });
const payments = createGrpcClient('payments', paymentsProto().service, { registry: settings.registry, idempotent: ['Charge'] });
const charge = (request) => new Promise((resolve, reject) => payments.charge(request, (err, reply) => (err ? reject(err) : resolve(reply))));
const bus = await openBus();
if (bus.kind === 'memory') await pushTo(bus, 'orders.paid', ['notifications', 'shipping']);
const store = settings.database ? await postgresStore(settings.database) : memoryStore();

async function placeOrder(req, res) {
  const key = req.headers['idempotency-key'];
  const { sku, qty = 1 } = (await readJson(req)) ?? {};
  if (!key) return send(res, 400, { error: 'an Idempotency-Key header is required' });
  if (typeof sku !== 'string' || !Number.isInteger(qty) || qty < 1) return send(res, 400, { error: 'the body must be {"sku":"apple","qty":1}' });
  const item = await catalog.request({ path: `/items/${encodeURIComponent(sku)}` });
  if (item.status === 404) return send(res, 422, { error: `no product ${sku}` });
  if (item.status !== 200) return send(res, 503, { error: `catalog answered ${item.status}` });
  const draft = { id: randomUUID(), key, sku, qty, totalCents: item.json().priceCents * qty, status: 'pending' };
  let order = await store.claim(draft);
  if (order.sku !== sku || order.qty !== qty) return send(res, 422, { error: 'this Idempotency-Key was used for another order' });
  if (order.status === 'pending') {
    const { chargeId } = await charge({ orderId: order.id, amountCents: order.totalCents });
    order = await store.paid(order, chargeId);
  }
  send(res, order.id === draft.id ? 201 : 200, order, { location: `/orders/${order.id}` });
}

function memoryStore() {
  const orders = new Map();
  const byKey = new Map();
  return {
    async claim(draft) {
      if (!byKey.has(draft.key)) {
        byKey.set(draft.key, draft.id);
        orders.set(draft.id, draft);
      }
      return orders.get(byKey.get(draft.key));
    },
    get: async (id) => orders.get(id) ?? null,
    async paid(order, chargeId) {
      if (order.status === 'pending') {
        Object.assign(order, { status: 'paid', chargeId });
        await bus.publish('orders.paid', order, { id: `order-paid-${order.id}`, key: order.id });
      }
      return order;
    },
  };
}

async function postgresStore(connectionString) {
  const pool = await pgPool(connectionString, 5);
  await createTables(pool, `CREATE TABLE IF NOT EXISTS shop_orders (id text PRIMARY KEY, key text UNIQUE NOT NULL, sku text NOT NULL,
    qty int NOT NULL, total_cents bigint NOT NULL, status text NOT NULL, charge_id text, created_at timestamptz NOT NULL DEFAULT now())`);
  const outbox = await PostgresOutbox.connect({ pool });
  const relay = outbox.relay(bus);
  const row = (r) => r && { id: r.id, key: r.key, sku: r.sku, qty: r.qty, totalCents: Number(r.total_cents), status: r.status, chargeId: r.charge_id ?? undefined };
  const get = async (id) => row((await pool.query('SELECT * FROM shop_orders WHERE id = $1', [id])).rows[0]) ?? null;
  return {
    close: async () => { await relay.close(); await pool.end(); },
    get,
    async claim(d) {
      await pool.query('INSERT INTO shop_orders (id, key, sku, qty, total_cents, status) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING',
        [d.id, d.key, d.sku, d.qty, d.totalCents, d.status]);
      return row((await pool.query('SELECT * FROM shop_orders WHERE key = $1', [d.key])).rows[0]);
    },
    async paid(order, chargeId) {
      // The order turns paid and its event is written in one transaction: both or neither.
      const client = await pool.connect();
      const ended = () => {}; // the server ended the session: the query fails and says why
      client.on('error', ended);
      try {
        await client.query('BEGIN');
        const { rows: [paid] } = await client.query("UPDATE shop_orders SET status = 'paid', charge_id = $2 WHERE id = $1 AND status = 'pending' RETURNING *", [order.id, chargeId]);
        if (paid) await outbox.add(client, 'orders.paid', row(paid), { id: `order-paid-${order.id}`, key: order.id });
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.off('error', ended);
        client.release();
      }
      return get(order.id);
    },
  };
}

const server = createServer(async (req, res) => {
  try {
    if (req.method === 'POST' && req.url === '/orders') return await placeOrder(req, res);
    const id = /^\/orders\/([\w-]+)$/.exec(req.url)?.[1];
    const order = req.method === 'GET' && id ? await store.get(id) : undefined;
    if (order) return send(res, 200, order);
    send(res, 404, { error: order === null ? `no order ${id}` : 'try POST /orders or GET /orders/<id>' });
  } catch (err) {
    // The order, if it was stored, stays pending: the client's retry with its key completes it.
    send(res, 503, { error: `try again with the same Idempotency-Key: ${err.code ?? ''} ${err.message}` });
  }
});
server.listen(0, settings.host);
const instance = await serve(server, {
  service: 'orders',
  registry: settings.registry,
  onDrain: [() => payments.close(), () => catalog.close(), () => store.close?.()],
});
log({ msg: 'serving', service: 'orders', id: instance.id, address: instance.address });
