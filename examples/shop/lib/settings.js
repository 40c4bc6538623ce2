// Which real systems the shop uses: each one an environment variable (start.js sets them from
// its flags). Unset, a service keeps its state in memory and events go over the memory bus.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const settings = Object.freeze({
  /** The gateways' admin listeners (their embedded registry), or `etcd://host:port`. */
  registry: (process.env.TANDEM_REGISTRY ?? 'http://127.0.0.1:9901').split(/\s+/),
  /** The address an instance listens on and registers: one its gateways reach (start.js --pair: the bridge's). */
  host: process.env.SHOP_HOST ?? '127.0.0.1',
  /** PostgreSQL for orders (with the outbox), payments and the consumers' inbox. */
  database: process.env.DATABASE_URL,
  /** Redis for the catalog's read cache. */
  redis: process.env.REDIS_URL,
  /** The broker, one of three; none: the memory bus. */
  nats: process.env.NATS_URL,
  rabbitmq: process.env.RABBITMQ_URL,
  kafka: process.env.KAFKA_BROKERS,
});

/** The Payments service's grpc-js definition, from payments.proto. */
export function paymentsProto() {
  const file = fileURLToPath(new URL('../payments.proto', import.meta.url));
  const definition = protoLoader.loadSync(file, { keepCase: false, longs: Number, defaults: true });
  return grpc.loadPackageDefinition(definition).shop.payments.v1.Payments;
}

/** One JSON line on stdout: what the service did (start.js and the tests read these). */
export function log(fields) {
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

/** A PostgreSQL pool of at most `max` connections (`pg` is loaded only when a database is configured). */
export async function pgPool(connectionString, max) {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString, max });
  pool.on('error', () => {}); // an idle client the server ended: the pool makes a new one
  return pool;
}

/** Creates the service's tables; a lock keeps instances starting at once from racing. */
export async function createTables(pool, sql) {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT pg_advisory_xact_lock(hashtext('shop schema'))");
    await client.query(sql);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}
