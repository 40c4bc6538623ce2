// Options of serve(), createClient() and the events API are checked like the config file:
// an unknown key is refused with its path and a did-you-mean hint, a wrong type or range with
// what is expected, every problem at once; valid options still work, frozen with their defaults.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import pino from 'pino';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { serve, DEFAULT_SERVE_OPTIONS, type ServeOptions } from '../src/node/index.js';
import { parseServeOptions } from '../src/node/serve.js';
import { createClient, DEFAULT_CLIENT_OPTIONS, type ClientOptions } from '../src/client/index.js';
import { parseClientOptions } from '../src/client/client.js';
import { MemoryBus, MemoryInbox, NatsBus, RabbitMqBus, RedisInbox, PostgresInbox, PostgresOutbox } from '../src/events/index.js';
import { OptionsError, type OptionProblem } from '../src/core/options.js';
import { answerOk, startBackend } from './helpers/backend.js';

const quiet = { info: () => {}, warn: () => {} };
const cleanup: Array<() => Promise<unknown>> = [];
after(async () => { for (const f of cleanup.reverse()) await f(); });

/** The assertion for a refused options object: the code, and each [path, message] problem. */
function refused(expected: Array<[path: string, message: string | RegExp]>): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof OptionsError, `an OptionsError, got ${String(err)}`);
    assert.equal(err.code, 'TANDEM_ERR_INVALID_ARGUMENT');
    assert.equal(err.problems.length, expected.length, err.message);
    for (const [path, message] of expected) {
      const p: OptionProblem | undefined = err.problems.find((x) => x.path === path);
      assert.ok(p, `a problem at ${path} in\n${err.message}`);
      if (typeof message === 'string') assert.equal(p.message, message);
      else assert.match(p.message, message);
      assert.ok(err.message.includes(`${path}: ${p.message}`), 'the message lists it with its path');
    }
    return true;
  };
}

test('serve(): an unknown key gets its path and a did-you-mean hint, before anything starts', async () => {
  const server = createServer().listen(0, '127.0.0.1');
  cleanup.push(() => new Promise((r) => server.close(r)));
  const listeners = server.listenerCount('request');
  const signals = process.listenerCount('SIGTERM');
  await assert.rejects(serve(server, { servcie: 'shop', registry: 'http://127.0.0.1:1', handleSignals: false } as unknown as ServeOptions), refused([
    ['options.servcie', 'unknown key — did you mean service?'],
    ['options.service', 'required'],
  ]));
  assert.equal(server.listenerCount('request'), listeners, 'the server is left as it was');
  assert.equal(process.listenerCount('SIGTERM'), signals, 'no signal handler installed');
  assert.throws(() => parseServeOptions({ service: 's', registry: 'http://x', drainTimout: 5 }), refused([['options.drainTimout', 'unknown key — did you mean drainTimeout?']]));
  assert.throws(() => parseServeOptions({ service: 's', registry: 'http://x', zzz: 1 }), refused([['options.zzz', /^unknown key \(known keys: service, registry, token, /]]));
});

test('serve(): wrong types and ranges are refused with what is expected, every problem at once', () => {
  assert.throws(() => parseServeOptions({ service: 's', registry: [], ttl: '10s', weight: 0, port: 70_000, handleSignals: 'no', onDrain: [() => {}, 3], readiness: { db: true }, logger: console.log }), refused([
    ['options.registry', 'expected a non-empty string or an array of them, got an array'],
    ['options.ttl', 'expected an integer of milliseconds >= 1, got "10s"'],
    ['options.weight', 'expected an integer from 1 to 1000, got 0'],
    ['options.port', 'expected an integer from 1 to 65535, got 70000'],
    ['options.handleSignals', 'expected true or false, got "no"'],
    ['options.onDrain[1]', 'expected a function, got 3'],
    ['options.readiness.db', 'expected a function, got boolean'],
    ['options.logger', 'expected an object with info and warn methods, got function'],
  ]));
  assert.throws(() => parseServeOptions(undefined), refused([['options.service', 'required'], ['options.registry', 'required']]));
  assert.throws(() => parseServeOptions('shop'), refused([['options', 'expected an options object, got "shop"']]));
});

test('serve(): valid options are frozen with their defaults and still register', async () => {
  const parsed = parseServeOptions({ service: 'shop', registry: 'http://127.0.0.1:9', ttl: undefined, drainQuietPeriod: 0 });
  assert.ok(Object.isFrozen(parsed));
  assert.equal(parsed.ttl, DEFAULT_SERVE_OPTIONS.ttl, 'undefined takes the default');
  assert.equal(parsed.drainQuietPeriod, 0);
  assert.equal(parsed.handleSignals, true);

  const gw = await Gateway.start(validateConfig({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] }), pino({ level: 'silent' }));
  cleanup.push(() => gw.shutdown());
  const server = createServer((_req, res) => res.end('ok')).listen(0, '127.0.0.1');
  const instance = await serve(server, { service: 'shop', registry: `http://${gw.adminAddress}`, handleSignals: false, logger: quiet, metadata: { v: '1' }, onDrain: [() => {}], drainQuietPeriod: 0 });
  assert.equal(gw.registry.snapshotNow('shop').instances[0]?.address, instance.address);
  await instance.close();
});

test('createClient(): unknown keys with a hint, wrong types, no source of members', () => {
  assert.throws(() => createClient('orders', { endpoint: ['127.0.0.1:1'] } as unknown as ClientOptions), refused([
    ['options.endpoint', 'unknown key — did you mean endpoints?'],
  ]));
  assert.throws(() => createClient('orders', { endpoints: '127.0.0.1:1', holdRemoved: -1, onTransition: 'log' } as unknown as ClientOptions), refused([
    ['options.endpoints', 'expected an array of non-empty strings, got "127.0.0.1:1"'],
    ['options.holdRemoved', 'expected an integer of milliseconds >= 0, got -1'],
    ['options.onTransition', 'expected a function, got "log"'],
  ]));
  assert.throws(() => createClient('orders', {}), refused([['options', 'give `registry` (a gateway admin URL) or `endpoints`']]));
  assert.throws(() => createClient('', { endpoints: ['127.0.0.1:1'] }), refused([['service', 'expected a service name, got ""']]));
  // the service settings are the config file's, checked by its schema
  assert.throws(() => createClient('orders', { endpoints: ['127.0.0.1:1'], settings: { retires: 2 } }), { code: 'TANDEM_ERR_CONFIG', message: /services\.orders\.retires: unknown key/ });
});

test('createClient(): valid options are frozen with their defaults and the client answers', async () => {
  const parsed = parseClientOptions('orders', { endpoints: ['127.0.0.1:1'], membershipTimeout: 100 });
  assert.ok(Object.isFrozen(parsed));
  assert.equal(parsed.holdRemoved, DEFAULT_CLIENT_OPTIONS.holdRemoved);
  assert.equal(parsed.membershipTimeout, 100);
  const backend = await startBackend('a', answerOk('a'));
  cleanup.push(() => backend.close());
  const client = createClient('orders', { endpoints: [backend.address], holdRemoved: 1000 });
  cleanup.push(() => client.close());
  assert.equal((await client.request({ path: '/' })).status, 200);
  // a request's own fields: an unknown one is refused with a hint too
  await assert.rejects(client.request({ path: '/', header: { a: 'b' } } as never), refused([['options.header', 'unknown key — did you mean headers?']]));
  await assert.rejects(client.request({ path: '/', methd: 'POST', headers: { a: 1 } } as never), refused([
    ['options.methd', 'unknown key — did you mean method?'],
    ['options.headers.a', 'expected a string or an array of strings, got 1'],
  ]));
  assert.equal((await client.request({ path: '/x', method: 'POST', headers: { a: ['b', 'c'] }, body: { n: 1 }, timeout: 2000 })).status, 200);
});

test('events: bus options, checked before any broker client loads', async () => {
  assert.throws(() => new MemoryBus({ drainTimeot: 5 } as never), refused([['options.drainTimeot', 'unknown key — did you mean drainTimeout?']]));
  assert.throws(() => new MemoryBus({ drainTimeout: 'soon' } as never), refused([['options.drainTimeout', 'expected an integer of milliseconds >= 0, got "soon"']]));
  await assert.rejects(NatsBus.connect({ server: 'nats://127.0.0.1:1' } as never), refused([['options.server', 'unknown key — did you mean servers?']]));
  await assert.rejects(NatsBus.connect({ subjectPrefix: 'a b', ackWait: 0 }), refused([
    ['options.subjectPrefix', 'expected NATS subject tokens (letters, digits, _ and -, dot-separated), got "a b"'],
    ['options.ackWait', 'expected an integer of milliseconds >= 1, got 0'],
  ]));
  await assert.rejects(RabbitMqBus.connect({ deliveryLimt: 3 } as never), refused([['options.deliveryLimt', 'unknown key — did you mean deliveryLimit?']]));
  await assert.rejects(RabbitMqBus.connect({ publishTimeout: Infinity }), refused([['options.publishTimeout', 'expected an integer of milliseconds >= 1, got Infinity']]));
  await assert.rejects(RabbitMqBus.connect({ reconnectMax: 50 }), refused([['options.reconnectMax', 'must be at least reconnectInitial (100), got 50']]));
});

test('events: subscribe, dead-letter and replay options', async () => {
  const bus = new MemoryBus({ drainTimeout: 1000 });
  cleanup.push(() => bus.close());
  await assert.rejects(bus.subscribe('t.x', 'g', () => {}, { concurency: 2 } as never), refused([['options.concurency', 'unknown key — did you mean concurrency?']]));
  await assert.rejects(bus.subscribe('t.x', 'g', () => {}, { backoff: { inital: 10 } } as never), refused([['options.backoff.inital', 'unknown key — did you mean initial?']]));
  await assert.rejects(bus.subscribe('t.x', 'g', () => {}, { maxAttempts: '3', inbox: {} } as never), refused([
    ['options.maxAttempts', 'expected an integer from 1 to 1000, got "3"'],
    ['options.inbox', 'expected an object with once methods, got an object'],
  ]));
  await assert.rejects(bus.subscribe('t.x', 'g', () => {}, { backoff: { initial: 500, max: 100 } }), refused([['options.backoff.max', 'must be at least backoff.initial (500), got 100']]));
  await assert.rejects(bus.deadLetters('t.x', 'g', { limt: 5 } as never), refused([['options.limt', 'unknown key — did you mean limit?']]));
  await assert.rejects(bus.replayDeadLetters('t.x', 'g', { id: ['a'] } as never), refused([['options.id', 'unknown key — did you mean ids?']]));
  // valid ones still work
  const seen: number[] = [];
  const sub = await bus.subscribe<number>('t.x', 'g', (m) => void seen.push(m.payload), { concurrency: 2, backoff: { initial: 10, max: 100 } });
  await bus.publish('t.x', 7);
  while (seen.length === 0) await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, [7]);
  assert.deepEqual(await bus.deadLetters('t.x', 'g', { limit: 5 }), []);
  assert.equal(await bus.replayDeadLetters('t.x', 'g', { ids: [] }), 0);
  await sub.close();
});

test('events: inbox, outbox and relay options', async () => {
  await assert.rejects(RedisInbox.connect({ prefx: 'x' } as never), refused([['options.prefx', 'unknown key — did you mean prefix?']]));
  await assert.rejects(RedisInbox.connect({ lease: 0 }), refused([['options.lease', 'expected an integer of milliseconds >= 1, got 0']]));
  await assert.rejects(PostgresInbox.connect({ tabel: 'x' } as never), refused([['options.tabel', 'unknown key — did you mean table?']]));
  await assert.rejects(PostgresInbox.connect({ table: 'Inbox;drop' }), refused([['options.table', 'expected a lower-case SQL identifier (letters, digits, _; at most 63), got "Inbox;drop"']]));
  await assert.rejects(PostgresOutbox.connect({ connectionstring: 'postgres://x' } as never), refused([['options.connectionstring', 'unknown key — did you mean connectionString?']]));
  // A pool that takes any query: enough to reach relay(), whose options are checked at once.
  const queries: string[] = [];
  const pool = { query: async (text: string) => { queries.push(text); return { rows: [], rowCount: 0 }; }, connect: async () => { throw new Error('not used'); }, end: async () => {} };
  const outbox = await PostgresOutbox.connect({ pool: pool as never });
  assert.ok(queries.some((q) => q.includes('CREATE TABLE IF NOT EXISTS tandem_outbox')), 'the default table');
  const bus = new MemoryBus();
  cleanup.push(() => bus.close());
  assert.throws(() => outbox.relay(bus, { pollIntervall: 5 } as never), refused([['options.pollIntervall', 'unknown key — did you mean pollInterval?']]));
  assert.throws(() => outbox.relay(bus, { batchSize: 0 }), refused([['options.batchSize', 'expected an integer from 1 to 100000, got 0']]));
});

test('events: publish options, on every publish', async () => {
  const bus = new MemoryBus();
  cleanup.push(() => bus.close());
  await assert.rejects(bus.publish('t.p', 1, { correlationID: 'c' } as never), refused([['options.correlationID', 'unknown key — did you mean correlationId?']]));
  await assert.rejects(bus.publish('t.p', 1, { headers: { n: 1 } } as never), refused([['options.headers.n', 'expected a string, got 1']]));
  await assert.rejects(bus.publish('t.p', 1, { id: 42 } as never), refused([['options.id', 'expected a non-empty string, got 42']]));
  const sent = await bus.publish('t.p', 1, { id: 'order-1', headers: { a: 'b' }, correlationId: undefined });
  assert.equal(sent.id, 'order-1');
  assert.deepEqual(sent.headers, { a: 'b' });
});

test('events: the memory inbox retention', () => {
  assert.throws(() => new MemoryInbox(0), { code: 'TANDEM_ERR_INVALID_ARGUMENT', message: 'new MemoryInbox(retention): expected a number of milliseconds >= 1, got 0' });
  assert.throws(() => new MemoryInbox('7d' as never), { code: 'TANDEM_ERR_INVALID_ARGUMENT', message: /got "7d"/ });
  assert.ok(new MemoryInbox(60_000));
});
