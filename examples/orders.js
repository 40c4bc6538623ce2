#!/usr/bin/env node
// The demo's orders service: `TANDEM_REGISTRY=http://127.0.0.1:9901 node examples/orders.js`.
// POST /orders {"sku":"apple","qty":2} looks the item up in the catalog through tandem-ha/client
// (balanced, retried, within the caller's deadline) and records the order; GET /orders/stats
// counts them. Each processed order is logged as {"msg":"order","id":…} (the demo drill counts
// them to prove no order is processed twice).
import { createServer } from 'node:http';
import { serve } from 'tandem-ha/node';
import { createClient } from 'tandem-ha/client';

const registry = process.env.TANDEM_REGISTRY ?? 'http://127.0.0.1:9901';
const catalog = createClient('catalog', { registry });
let orders = 0;

const server = createServer((req, res) => {
  const send = (status, body) => res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ...body, instance: instance?.id })}\n`);
  if (req.method === 'GET' && req.url === '/orders/stats') {
    req.resume();
    return send(200, { orders });
  }
  if (req.method !== 'POST' || req.url !== '/orders') {
    req.resume();
    return send(404, { error: 'try POST /orders {"sku":"apple","qty":1} or GET /orders/stats' });
  }
  let text = '';
  req.setEncoding('utf8').on('data', (d) => { text += d; }).on('end', async () => {
    let order;
    try {
      order = JSON.parse(text);
    } catch {
      return send(400, { error: 'the body must be JSON' });
    }
    try {
      const item = await catalog.request({ path: `/items/${encodeURIComponent(order.sku ?? '')}` });
      if (item.status !== 200) return send(422, { error: `unknown sku ${order.sku}` });
      orders++;
      const id = req.headers['x-drill-id'] ?? req.headers['x-request-id'];
      process.stdout.write(`${JSON.stringify({ msg: 'order', id })}\n`);
      const { price } = item.json();
      send(201, { order: id, sku: order.sku, qty: order.qty ?? 1, total: price * (order.qty ?? 1) });
    } catch (err) {
      send(503, { error: `catalog unavailable: ${err.code ?? err.message}` });
    }
  });
});
server.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'orders', registry });
process.stdout.write(`${JSON.stringify({ msg: 'serving', service: 'orders', id: instance.id, address: instance.address })}\n`);
