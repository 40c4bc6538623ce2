#!/usr/bin/env node
// Benchmark backend: a plain node:http server that answers every request with a small fixed body.
// Usage: node bench/backend.js PORT        (or PORT=1234 node bench/backend.js)
// Every path answers 200 (so health checks such as /healthz of the proxy under test also pass).
import http from 'node:http';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const host = process.env.HOST ?? '127.0.0.1';
const body = Buffer.from('hello world\n');
const headers = { 'content-type': 'text/plain', 'content-length': String(body.length) };
// Only /cacheable says how long it may be kept (bench target 'cached': tandem's cache-hit path);
// every other path answers exactly as before, so no other target sees a difference.
const cacheable = { ...headers, 'cache-control': 'max-age=3600' };

const server = http.createServer((req, res) => {
  // Drain any request body before answering so keep-alive connections stay usable.
  req.resume();
  res.writeHead(200, req.url.startsWith('/cacheable') ? cacheable : headers);
  res.end(body);
});
// Keep pooled connections from proxies open longer than any proxy idle timeout we configure.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write(`backend listening on ${host}:${typeof addr === 'object' && addr ? addr.port : port}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
