// A consumer process for the Kafka rebalance test: subscribes to a topic in a group with a
// PostgreSQL inbox; its effect is a row (id, who) written in the inbox's transaction. Prints
// "ready" once subscribed. The test SIGKILLs it.
// Usage: node kafka-consumer.js '{"brokers": [...], "topic": "...", "group": "...", "table": "...", "who": "...", "sessionTimeout": N}'
import { KafkaBus, PostgresInbox } from '../../src/events/index.js';
import type { PoolClient } from 'pg';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { brokers: string[]; topic: string; group: string; table: string; who: string; sessionTimeout: number };
const bus = await KafkaBus.connect({ brokers: cfg.brokers, sessionTimeout: cfg.sessionTimeout });
const inbox = await PostgresInbox.connect<PoolClient>({ table: `${cfg.table}_inbox` });
await bus.subscribe(cfg.topic, cfg.group, async (m, tx) => {
  await tx.query(`INSERT INTO ${cfg.table}_effects (id, who) VALUES ($1, $2)`, [m.id, cfg.who]);
}, { inbox, concurrency: 4 });
process.stdout.write('ready\n');
