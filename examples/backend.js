#!/usr/bin/env node
// A tiny example backend for the demo: `node examples/backend.js PORT [NAME]`.
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 7001);
const name = process.argv[3] ?? `backend-${port}`;
const server = createServer((req, res) => {
  if (req.url === '/healthz') return res.end('ok\n');
  const body = JSON.stringify({ instance: name, method: req.method, path: req.url, requestId: req.headers['x-request-id'] ?? null });
  res.writeHead(200, { 'content-type': 'application/json' }).end(`${body}\n`);
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
