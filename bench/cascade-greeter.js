#!/usr/bin/env node
// Cascade drill: an instance of `greeter` (express + tandem/node) that calls `pricing` through
// tandem/client on every request and leaves a failed call to express's error handler.
// Usage: node bench/cascade-greeter.js ADMIN_URL   — prints {"msg":"serving"} once registered.
import express from 'express';
import { serve } from '../dist/src/node/index.js';
import { createClient } from '../dist/src/client/index.js';

const pricing = createClient('pricing', { registry: process.argv[2] });
const app = express();
app.get('/', (_req, res, next) => {
  pricing.request({ path: '/price' }).then((answer) => res.json({ greeting: 'hello', price: answer.json().price }), next);
});
const server = app.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'greeter', registry: process.argv[2], logger: { info: () => {}, warn: () => {} }, onDrain: () => pricing.close() });
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, at: Date.now() })}\n`);
