import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT, tempDir } from '../helpers/gateway.js';
import { GUARD_MS } from '../helpers/wait.js';

const OPTIONAL = new Set(['@nats-io', '@platformatic', 'amqplib', 'pg', 'ioredis']);

/**
 * A copy of the package whose node_modules lacks the broker and store clients, as in an
 * application that installed none of them: `tandem/events` still loads and the memory bus
 * works; each adapter and store fails at connect time naming the package to install.
 */
test('without the optional clients installed, tandem/events loads and each adapter names the package to install', () => {
  const dir = tempDir('tandem-no-clients-');
  try {
    cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    cpSync(join(ROOT, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
    mkdirSync(join(dir, 'node_modules'));
    for (const name of readdirSync(join(ROOT, 'node_modules'))) {
      if (!OPTIONAL.has(name) && !name.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name));
    }
    const script = `
      const ev = await import('./dist/src/events/index.js');
      const out = {};
      const bus = new ev.MemoryBus();
      let got; await bus.subscribe('t.x', 'g', (m) => { got = m.payload; });
      await bus.publish('t.x', 'hello'); while (got === undefined) await new Promise((r) => setTimeout(r, 5));
      out.memory = got;
      for (const [name, f] of Object.entries({ nats: () => ev.NatsBus.connect(), rabbitmq: () => ev.RabbitMqBus.connect(), kafka: () => ev.KafkaBus.connect(), pg: () => ev.PostgresInbox.connect(), outbox: () => ev.PostgresOutbox.connect(), redis: () => ev.RedisInbox.connect() })) {
        try { await f(); out[name] = 'connected?'; } catch (e) { out[name] = e.code + ': ' + e.message; }
      }
      console.log(JSON.stringify(out));
      process.exit(0);`;
    writeFileSync(join(dir, 'probe.mjs'), script);
    const r = spawnSync(process.execPath, ['probe.mjs'], { cwd: dir, encoding: 'utf8', timeout: GUARD_MS });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Record<string, string>;
    assert.equal(out.memory, 'hello');
    assert.equal(out.nats, 'TANDEM_ERR_MISSING_DEPENDENCY: install @nats-io/transport-node to use the NATS adapter (npm install @nats-io/transport-node)');
    assert.equal(out.rabbitmq, 'TANDEM_ERR_MISSING_DEPENDENCY: install amqplib to use the RabbitMQ adapter (npm install amqplib)');
    assert.equal(out.kafka, 'TANDEM_ERR_MISSING_DEPENDENCY: install @platformatic/kafka to use the Kafka adapter (npm install @platformatic/kafka)');
    assert.equal(out.pg, 'TANDEM_ERR_MISSING_DEPENDENCY: install pg to use the PostgreSQL inbox (npm install pg)');
    assert.equal(out.outbox, 'TANDEM_ERR_MISSING_DEPENDENCY: install pg to use the PostgreSQL outbox (npm install pg)');
    assert.equal(out.redis, 'TANDEM_ERR_MISSING_DEPENDENCY: install ioredis to use the Redis inbox (npm install ioredis)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
