#!/usr/bin/env node
// The demo's catalog service: `TANDEM_REGISTRY=http://127.0.0.1:9901 node examples/catalog.js`.
// A plain node:http server; tandem-ha/node adds /healthz and /readyz, registers it with the
// gateway, heartbeats, and drains it on SIGTERM.
import { createServer } from 'node:http';
import { serve } from 'tandem-ha/node';

const ITEMS = new Map([
  ['apple', { sku: 'apple', name: 'Apple', price: 0.5 }],
  ['bread', { sku: 'bread', name: 'Bread', price: 2.2 }],
  ['cheese', { sku: 'cheese', name: 'Cheese', price: 4.9 }],
]);

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  const match = /^\/items\/([^/]+)$/.exec(url.pathname);
  const send = (status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ...body, instance: instance?.id })}\n`);
  if (url.pathname === '/items') return send(200, { items: [...ITEMS.values()] });
  if (match) {
    const item = ITEMS.get(match[1]);
    return item ? send(200, item) : send(404, { error: `no item ${match[1]}` });
  }
  send(404, { error: 'try GET /items or /items/apple' });
});
server.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'catalog', registry: process.env.TANDEM_REGISTRY ?? 'http://127.0.0.1:9901' });
process.stdout.write(`${JSON.stringify({ msg: 'serving', service: 'catalog', id: instance.id, address: instance.address })}\n`);
