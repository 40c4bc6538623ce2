#!/usr/bin/env node
// Cascade drill: an instance of the dependency `pricing` (node:http + tandem/node).
// Usage: node bench/cascade-pricing.js ADMIN_URL   — prints {"msg":"serving"} once registered.
import { createServer } from 'node:http';
import { serve } from '../dist/src/node/index.js';

const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"price":42}');
});
server.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'pricing', registry: process.argv[2], logger: { info: () => {}, warn: () => {} } });
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, at: Date.now() })}\n`);
