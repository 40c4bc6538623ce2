#!/usr/bin/env node
// payments: a gRPC service (payments.proto). Charge is idempotent by order id: a retried or
// hedged call, or one for an order charged before, returns the first charge and charges nothing.
// The ledger is a PostgreSQL table (DATABASE_URL) or, without one, a Map in this process —
// then run one instance only: two processes would not see each other's charges.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { serveGrpc } from 'tandem-ha/node';
import { createTables, log, paymentsProto, pgPool, settings } from './lib/settings.js';

const ledger = settings.database ? await postgresLedger(settings.database) : memoryLedger();

async function charge(call, callback) {
  const { orderId, amountCents } = call.request;
  if (!orderId || !(amountCents > 0)) {
    return callback({ code: grpc.status.INVALID_ARGUMENT, details: 'order_id and a positive amount_cents are required' });
  }
  try {
    const reply = await ledger.charge(orderId, amountCents);
    if (reply.chargedNow) log({ msg: 'charged', order: orderId, amountCents, text: `Charged ${amountCents} cents for order ${orderId}.` });
    callback(null, reply);
  } catch (err) {
    callback({ code: grpc.status.UNAVAILABLE, details: `ledger: ${err.message}` });
  }
}

function memoryLedger() {
  const charges = new Map();
  return {
    async charge(orderId, amountCents) {
      const first = charges.get(orderId);
      if (first) return { ...first, chargedNow: false };
      const made = { chargeId: randomUUID(), orderId, amountCents };
      charges.set(orderId, made);
      return { ...made, chargedNow: true };
    },
  };
}

async function postgresLedger(connectionString) {
  const pool = await pgPool(connectionString, 3);
  await createTables(pool, `CREATE TABLE IF NOT EXISTS shop_charges (order_id text PRIMARY KEY, charge_id text NOT NULL,
    amount_cents bigint NOT NULL, charged_at timestamptz NOT NULL DEFAULT now())`);
  return {
    pool,
    async charge(orderId, amountCents) {
      // The primary key makes the charge once, even for two calls running at the same time.
      const made = await pool.query('INSERT INTO shop_charges (order_id, charge_id, amount_cents) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING charge_id',
        [orderId, randomUUID(), amountCents]);
      const { rows: [row] } = await pool.query('SELECT charge_id, amount_cents FROM shop_charges WHERE order_id = $1', [orderId]);
      return { chargeId: row.charge_id, orderId, amountCents: Number(row.amount_cents), chargedNow: made.rowCount === 1 };
    },
  };
}

const server = new grpc.Server();
server.addService(paymentsProto().service, { charge });
const instance = await serveGrpc(server, {
  service: 'payments',
  listen: `${settings.host}:0`,
  registry: settings.registry,
  onDrain: () => ledger.pool?.end(),
});
log({ msg: 'serving', service: 'payments', id: instance.id, address: instance.address });
