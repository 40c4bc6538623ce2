#!/usr/bin/env node
// etcd drill: an instance of `shop` (node:http + tandem/node) registered in etcd.
// Usage: node bench/etcd-instance.js ETCD_URL ID TTL_MS — prints {"msg":"serving",id,address,at} once registered.
import { createServer } from 'node:http';
import { serve } from '../dist/src/node/index.js';

const [url, id, ttl] = process.argv.slice(2);
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'x-instance': id }).end(`{"instance":"${id}"}`);
});
server.listen(0, '127.0.0.1');
const instance = await serve(server, { service: 'shop', registry: url, id, ttl: Number(ttl), logger: { info: () => {}, warn: (f) => process.stderr.write(`${JSON.stringify(f)}\n`) } });
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, address: instance.address, at: Date.now() })}\n`);
