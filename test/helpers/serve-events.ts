// serve() and tandem/events in one process, as docs/registry.md's recipe has them. For tests.
// Usage: node serve-events.js '{"registry": URL, "handlerMs": N | "until-closing", "hookMs": N, "drainTimeout": N}'
// Prints JSON lines: serving, handler-started, handler-done, hook-ran — the test sends SIGTERM
// while the handler runs and reads the order. "until-closing": the handler runs until serve()
// says it is closing the bus, so the SIGTERM surely lands while it runs, however slow the machine.
import { createServer } from 'node:http';
import { serve } from '../../src/node/index.js';
import { MemoryBus } from '../../src/events/index.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as { registry: string; handlerMs: number | 'until-closing'; hookMs: number; drainTimeout?: number };
let closingSaid: () => void = () => {};
const closing = new Promise<void>((resolve) => { closingSaid = resolve; });
const say = (msg: string, extra: Record<string, unknown> = {}) => {
  process.stdout.write(`${JSON.stringify({ msg, ...extra })}\n`);
  if (msg === 'closing') closingSaid();
};

const bus = new MemoryBus();
const pool = { open: true };
const server = createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
const instance = await serve(server, {
  service: 'worker',
  registry: opts.registry,
  drainTimeout: opts.drainTimeout,
  drainQuietPeriod: 0,
  // The application's part: the "pool" the handler uses closes only after the bus let its handler finish.
  onDrain: async () => {
    await new Promise((r) => setTimeout(r, opts.hookMs));
    pool.open = false;
    say('hook-ran');
  },
  logger: { info: (f) => say(String(f.msg), { ...f, log: true }), warn: (f) => say(String(f.msg), { ...f, log: true, level: 'warn' }) },
});
await bus.subscribe('jobs', 'workers', async () => {
  say('handler-started');
  const handlerMs = opts.handlerMs;
  await (handlerMs === 'until-closing' ? closing : new Promise((r) => setTimeout(r, handlerMs)));
  say('handler-done', { poolOpen: pool.open });
});
say('serving', { id: instance.id, address: instance.address });
await bus.publish('jobs', { n: 1 });
