import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers/gateway.js';

interface DrillResult {
  adapter: string;
  messages: number;
  confirmed: number;
  lost: number;
  duplicateEffects: number;
  redeliveries: number;
  inboxAbsorbed: number;
  brokerRestarts: number;
  connectionCuts: number;
  broker: string;
  faults: Array<{ what: string }>;
}

/** The drill starts a private RabbitMQ node with this script; without it, it falls back to cutting the shared broker's connections. */
const RABBITMQ_SERVER = process.env.TANDEM_RABBITMQ_SERVER ?? '/usr/lib/rabbitmq/bin/rabbitmq-server';

/**
 * The short form of `npm run drill:events`: the same script, the same faults (consumer
 * SIGKILLed twice, each adapter's own broker — a private nats-server, a private RabbitMQ node —
 * restarted once), fewer messages. The private RabbitMQ node's start, restart and stop add
 * about 11 s.
 */
test('events drill (short): consumer killed twice and broker restarted while publishing; nothing lost, no duplicate effect', { timeout: 120_000 }, async () => {
  const dir = tempDir('tandem-drill-events-');
  const json = join(dir, 'result.json');
  // Its own process group, so that a hung drill is killed with its consumer and nats-server.
  const child = spawn(process.execPath, [join(ROOT, 'scripts/drill-events.js'), '--no-build', '--only', 'nats,rabbitmq', '--messages', '1200', '--rate', '400', '--json', json], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 100_000);
  const code = await new Promise((r) => child.once('exit', r));
  clearTimeout(timer);
  assert.equal(code, 0, output);
  const { results } = JSON.parse(readFileSync(json, 'utf8')) as { results: DrillResult[] };
  assert.deepEqual(results.map((r) => r.adapter), ['nats', 'rabbitmq']);
  for (const r of results) {
    assert.equal(r.confirmed, 1200, `${r.adapter}: every publish confirmed`);
    assert.equal(r.lost, 0, `${r.adapter}: lost`);
    assert.equal(r.duplicateEffects, 0, `${r.adapter}: duplicate effects`);
    assert.equal(r.faults.length, 3, `${r.adapter}: three faults injected`);
  }
  assert.equal(results[0]!.brokerRestarts, 1, 'nats: its nats-server restarted');
  if (existsSync(RABBITMQ_SERVER)) {
    assert.equal(results[1]!.brokerRestarts, 1, `rabbitmq: its private node restarted (${results[1]!.broker})\n${output}`);
    assert.equal(results[1]!.connectionCuts, 0, 'rabbitmq: no fallback');
  } else {
    assert.equal(results[1]!.connectionCuts, 1, 'rabbitmq: without rabbitmq-server, the shared broker cut the connections');
  }
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The Kafka part of `npm run drill:events`, short: a three-node KRaft cluster of its own
 * (scripts/kafka.js), 1 200 messages at 100/s, the consumer SIGKILLed twice, a second consumer
 * added and removed, a broker and then the partition leader SIGKILLed and restarted. The
 * cluster's start alone takes 12–35 s on this machine, depending on its load.
 */
test('events drill (short), Kafka: consumers killed, added and removed, brokers killed; nothing lost, no duplicate effect', { timeout: 300_000 }, async () => {
  const dir = tempDir('tandem-drill-kafka-');
  const json = join(dir, 'result.json');
  const child = spawn(process.execPath, [join(ROOT, 'scripts/drill-events.js'), '--no-build', '--only', 'kafka', '--quick', '--json', json], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 280_000);
  const code = await new Promise((r) => child.once('exit', r));
  clearTimeout(timer);
  assert.equal(code, 0, output);
  const { results } = JSON.parse(readFileSync(json, 'utf8')) as { results: Array<DrillResult & { kafkaRecords?: number }> };
  const [r] = results;
  assert.equal(r!.adapter, 'kafka');
  assert.equal(r!.confirmed, 1200, 'every publish confirmed');
  assert.equal(r!.lost, 0, 'lost');
  assert.equal(r!.duplicateEffects, 0, 'duplicate effects');
  assert.equal(r!.faults.length, 6, `six faults injected\n${output}`);
  assert.equal(r!.brokerRestarts, 2, 'two brokers killed and restarted');
  rmSync(dir, { recursive: true, force: true });
});
