// A consumer process for the Kafka delivery-count test: subscribes to a topic in a group and says
// on stdout what its handler sees. A message with `{ crash: true }` makes the handler SIGKILL its
// own process (a consumer that dies mid-handler every time: a poison message). Any other
// message is handled. With `"hang": true` in its config, the process's handler waits forever on
// every message (the test SIGKILLs it mid-handler). Prints "ready" once subscribed.
// Usage: node kafka-crasher.js '{"brokers": [...], "topic": "...", "group": "...", "sessionTimeout": N, "hang": false, "partitions": N}'
import { KafkaBus } from '../../src/events/index.js';

const cfg = JSON.parse(process.argv[2] ?? '{}') as { brokers: string[]; topic: string; group: string; sessionTimeout: number; hang?: boolean; partitions?: number };
const bus = await KafkaBus.connect({ brokers: cfg.brokers, sessionTimeout: cfg.sessionTimeout, ...(cfg.partitions ? { partitions: cfg.partitions } : {}) });
const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
await bus.subscribe<{ crash?: boolean }>(cfg.topic, cfg.group, async (m) => {
  say({ event: 'started', id: m.id, attempt: m.attempt, redelivered: m.redelivered });
  if (m.payload.crash) process.kill(process.pid, 'SIGKILL');
  if (cfg.hang) await new Promise(() => {});
  const stats = await bus.stats();
  say({ event: 'handled', id: m.id, attempt: m.attempt, redelivered: m.redelivered, redeliveredCount: stats.subscriptions[`${cfg.topic}/${cfg.group}`]?.redelivered });
});
say({ event: 'ready' });
