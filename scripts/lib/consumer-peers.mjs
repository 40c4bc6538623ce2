// Run by scripts/consumer-test.js inside its temporary project, after the oldest allowed version of
// each optional peer is installed there: one quick real check per adapter and store, against the
// machine's brokers (NATS 127.0.0.1:4222, RabbitMQ 5672, PostgreSQL 5432, Redis 6379). It only
// creates and removes its own topic, queues, table and keys. Prints {name: {ok, ms}} as JSON.
import { randomBytes } from 'node:crypto';
import { NatsBus, RabbitMqBus, PostgresInbox, RedisInbox } from 'tandem-ha/events';

const id = randomBytes(4).toString('hex');
const results = {};
const within = (ms, what, p) => Promise.race([p, new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms).unref())]);

async function roundTrip(bus, topic) {
  let got;
  const delivered = new Promise((resolve) => (got = resolve));
  const sub = await bus.subscribe(topic, 'consumer-test', (m) => got(m));
  const sent = await bus.publish(topic, { hello: id });
  const m = await within(10_000, `${bus.kind} delivery`, delivered);
  if (m.id !== sent.id || m.payload.hello !== id) throw new Error(`${bus.kind}: got ${JSON.stringify(m)}`);
  await sub.close();
}

async function check(name, fn) {
  const t = Date.now();
  try {
    await within(30_000, name, fn());
    results[name] = { ok: true, ms: Date.now() - t };
  } catch (err) {
    results[name] = { ok: false, ms: Date.now() - t, error: String(err?.stack ?? err) };
  }
}

await check('nats', async () => {
  const bus = await NatsBus.connect({ servers: process.env.TANDEM_NATS_URL ?? 'nats://127.0.0.1:4222' });
  const topic = `consumer.test${id}`;
  try { await roundTrip(bus, topic); } finally { await bus.deleteTopic(topic).catch(() => {}); await bus.close(); }
});
await check('rabbitmq', async () => {
  const bus = await RabbitMqBus.connect({ url: process.env.TANDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672' });
  const topic = `consumer.test${id}`;
  try { await roundTrip(bus, topic); } finally { await bus.deleteTopic(topic, ['consumer-test']).catch(() => {}); await bus.close(); }
});
await check('pg', async () => {
  const table = `tandem_consumer_test_${id}`;
  const inbox = await PostgresInbox.connect({ table });
  try {
    const first = await inbox.once('g', 'm1', (tx) => tx.query('SELECT 1'));
    const again = await inbox.once('g', 'm1', () => { throw new Error('ran twice'); });
    if (first !== 'done' || again !== 'duplicate') throw new Error(`PostgreSQL inbox: ${first}, ${again}`);
  } finally { await inbox.pool.query(`DROP TABLE IF EXISTS ${table}`); await inbox.close(); }
});
await check('redis', async () => {
  const prefix = `tandem-consumer-test:${id}`;
  const inbox = await RedisInbox.connect({ prefix });
  try {
    const first = await inbox.once('g', 'm1', (tx) => void tx.set(`${prefix}:effect`, '1', 'PX', 60_000));
    const again = await inbox.once('g', 'm1', () => { throw new Error('ran twice'); });
    const effect = await inbox.redis.get(`${prefix}:effect`);
    if (first !== 'done' || again !== 'duplicate' || effect !== '1') throw new Error(`Redis inbox: ${first}, ${again}, effect ${effect}`);
  } finally { await inbox.redis.eval("for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end return 0", 0, `${prefix}:*`); await inbox.close(); }
});
console.log(JSON.stringify(results));
process.exit(Object.values(results).every((r) => r.ok) ? 0 : 1);
