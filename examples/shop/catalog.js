#!/usr/bin/env node
// catalog: GET /items and GET /items/<sku>. Products come from PostgreSQL (DATABASE_URL) or,
// without one, from the list below; reads are cached for 10 s in Redis (REDIS_URL) or in this
// process. Cache-Control lets the gateway's route cache (gateway.yaml) answer too, and keep
// answering from its copy while every catalog instance is down.
import { createServer } from 'node:http';
import { serve } from 'tandem-ha/node';
import { send } from './lib/http.js';
import { createTables, log, pgPool, settings } from './lib/settings.js';

const PRODUCTS = [
  { sku: 'apple', name: 'Apple', priceCents: 50 },
  { sku: 'bread', name: 'Bread', priceCents: 220 },
  { sku: 'cheese', name: 'Cheese', priceCents: 490 },
];
const TTL_SECONDS = 10;

const products = settings.database ? await postgresProducts(settings.database) : { find: async (sku) => PRODUCTS.find((p) => p.sku === sku) ?? null };
const cache = settings.redis ? await redisCache(settings.redis) : memoryCache();

/** A read through the cache: the product, or null (a miss is cached too). */
async function product(sku) {
  const cached = await cache.get(sku);
  if (cached !== undefined) return cached;
  const found = await products.find(sku);
  await cache.set(sku, found);
  return found;
}

function memoryCache() {
  const entries = new Map();
  return {
    get: async (sku) => (entries.get(sku)?.expires > Date.now() ? entries.get(sku).value : undefined),
    set: async (sku, value) => void entries.set(sku, { value, expires: Date.now() + TTL_SECONDS * 1000 }),
  };
}

async function redisCache(url) {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true });
  await redis.connect();
  return {
    quit: () => redis.quit(),
    get: async (sku) => { const text = await redis.get(`shop:product:${sku}`); return text === null ? undefined : JSON.parse(text); },
    set: async (sku, value) => void await redis.set(`shop:product:${sku}`, JSON.stringify(value), 'EX', TTL_SECONDS),
  };
}

async function postgresProducts(connectionString) {
  const pool = await pgPool(connectionString, 2);
  await createTables(pool, 'CREATE TABLE IF NOT EXISTS shop_products (sku text PRIMARY KEY, name text NOT NULL, price_cents bigint NOT NULL)');
  for (const p of PRODUCTS) await pool.query('INSERT INTO shop_products VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [p.sku, p.name, p.priceCents]);
  return {
    end: () => pool.end(),
    async find(sku) {
      const { rows: [row] } = await pool.query('SELECT sku, name, price_cents FROM shop_products WHERE sku = $1', [sku]);
      return row ? { sku: row.sku, name: row.name, priceCents: Number(row.price_cents) } : null;
    },
  };
}

const server = createServer(async (req, res) => {
  const sku = /^\/items\/([\w-]+)$/.exec(req.url)?.[1];
  const cacheControl = { 'cache-control': 'max-age=5, stale-while-revalidate=30, stale-if-error=600' };
  try {
    if (req.url === '/items') return send(res, 200, { items: await Promise.all(PRODUCTS.map((p) => product(p.sku))) }, cacheControl);
    if (sku === undefined) return send(res, 404, { error: 'try GET /items or /items/apple' });
    const found = await product(sku);
    return found ? send(res, 200, found, cacheControl) : send(res, 404, { error: `no product ${sku}` });
  } catch (err) {
    send(res, 503, { error: `catalog store: ${err.message}` });
  }
});
server.listen(0, settings.host);
const instance = await serve(server, {
  service: 'catalog',
  registry: settings.registry,
  onDrain: [() => products.end?.(), () => cache.quit?.()],
});
log({ msg: 'serving', service: 'catalog', id: instance.id, address: instance.address });
