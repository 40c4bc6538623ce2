// drill:gateways — one service instance (node:http + tandem/node) registered with every gateway
// of the pair. Usage: node pair-instance.mjs '{"host","port","registry":[URL,…],"token","id"}'
// Prints {"msg":"serving"} once registered, and one line "POST <x-drill-id>" per POST it
// processed, so the drill can count POSTs processed twice.
import { createServer } from 'node:http';
import { serve } from '../../dist/src/node/index.js';

const opts = JSON.parse(process.argv[2]);
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.method === 'POST') process.stdout.write(`POST ${req.headers['x-drill-id']}\n`);
    res.writeHead(200, { 'content-type': 'application/json' }).end(`{"instance":"${opts.id}","bytes":${Buffer.concat(chunks).length}}`);
  });
});
server.listen(opts.port, opts.host);
await serve(server, { service: 'shop', registry: opts.registry, token: opts.token, id: opts.id, host: opts.host, logger: { info: () => {}, warn: (f) => process.stderr.write(`${JSON.stringify(f)}\n`) } });
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: opts.id })}\n`);
