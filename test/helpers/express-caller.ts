// An express service instance (node SDK) that calls another service through tandem/client, the
// way an application does: a failed call goes to express's own error handler (`next(err)`).
// For tests and the cascade drill. Usage: node express-caller.js '{"registry", "service", "callee"}'
//   GET /        → 200 {"instance", "callee": <the callee's JSON answer>}; a failed call → next(err)
//   GET /caught  → the app catches the failure itself and answers `res.status(503).end()`
//   GET /own-503 → 503 without calling anyone (the instance's own failure)
import express from 'express';
import { serve } from '../../src/node/index.js';
import { createClient } from '../../src/client/index.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as { registry: string | string[]; service: string; callee: string };
const callee = createClient(opts.callee, { registry: opts.registry });
let id = '';

const app = express();
app.get('/', (_req, res, next) => {
  callee.request({ path: '/price' }).then((answer) => res.json({ instance: id, callee: answer.json() }), next);
});
app.get('/caught', (_req, res) => {
  callee.request({ path: '/price' }).then((answer) => res.json({ instance: id, callee: answer.json() }), () => res.status(503).end());
});
app.get('/own-503', (_req, res) => {
  res.status(503).end();
});
const server = app.listen(0, '127.0.0.1');
const instance = await serve(server, {
  service: opts.service,
  registry: opts.registry,
  logger: { info: () => {}, warn: () => {} },
  onDrain: () => callee.close(),
});
id = instance.id;
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, address: instance.address })}\n`);
