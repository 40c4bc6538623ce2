#!/usr/bin/env node
// shipping: one shipping notice per paid order. Consumes `orders.paid` in the group
// `shipping` (each message goes to one instance of the group) with an inbox, so a message
// delivered again — its first consumer died before acking, the outbox relay sent it twice — has
// no second effect. With DATABASE_URL the shipping notice is a row written in the inbox's
// transaction; without, the inbox is this process's memory.
import { createServer } from 'node:http';
import { serve } from 'tandem-ha/node';
import { MemoryInbox, PostgresInbox } from 'tandem-ha/events';
import { acceptPushed, openBus } from './lib/events.js';
import { createTables, log, pgPool, settings } from './lib/settings.js';

const bus = await openBus();
const pool = settings.database && (await pgPool(settings.database, 4));
if (pool) await createTables(pool, 'CREATE TABLE IF NOT EXISTS shop_shipments (order_id text PRIMARY KEY, sent_at timestamptz NOT NULL DEFAULT now())');
const inbox = pool ? await PostgresInbox.connect({ pool }) : new MemoryInbox();

async function ship({ payload: order }, tx) {
  await tx?.query('INSERT INTO shop_shipments (order_id) VALUES ($1)', [order.id]);
  // Booking the parcel and sending its notice would go here; the shop writes it to stdout.
  log({ msg: 'shipment', order: order.id, text: `Shipping ${order.qty} × ${order.sku} for order ${order.id}.` });
}

// From the broker; without one, orders pushes each message over HTTP instead (lib/events.js).
// The PostgreSQL inbox holds a pool connection per running handler: concurrency below the pool size.
if (bus.kind !== 'memory') await bus.subscribe('orders.paid', 'shipping', ship, { inbox, concurrency: 3, maxAttempts: 10 });
const server = createServer(bus.kind === 'memory' ? acceptPushed('shipping', ship, inbox) : (req, res) => res.writeHead(404).end());
server.listen(0, settings.host);
const instance = await serve(server, { service: 'shipping', registry: settings.registry, onDrain: [() => pool?.end(), () => inbox.close?.()] });
log({ msg: 'serving', service: 'shipping', id: instance.id, address: instance.address });
