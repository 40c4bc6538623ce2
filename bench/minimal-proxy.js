#!/usr/bin/env node
// The "naive Node ceiling": the reverse proxy a typical Node developer would write in a few
// minutes with node:http + undici. Round robin over one undici.Pool per backend, no health
// checks, no retries, no timeouts beyond undici's defaults, no metrics, no logging.
//
// Usage: node bench/minimal-proxy.js PORT HOST:PORT [HOST:PORT ...]
//    or: PORT=8080 BACKENDS=127.0.0.1:9001,127.0.0.1:9002 node bench/minimal-proxy.js
import http from 'node:http';
import { Pool } from 'undici';

const args = process.argv.slice(2);
const port = Number(args[0] ?? process.env.PORT ?? 0);
const backends = args.length > 1 ? args.slice(1) : String(process.env.BACKENDS ?? '').split(',').filter(Boolean);
if (backends.length === 0) {
  process.stderr.write('usage: node bench/minimal-proxy.js PORT HOST:PORT [HOST:PORT ...]\n');
  process.exit(2);
}

const pools = backends.map((b) => new Pool(`http://${b}`));
let next = 0;

// Hop-by-hop headers that must not be forwarded as-is.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);

function strip(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP.has(k)) out[k] = v;
  }
  return out;
}

const server = http.createServer(async (req, res) => {
  const pool = pools[next];
  next = (next + 1) % pools.length;
  try {
    const { statusCode, headers, body } = await pool.request({
      method: req.method,
      path: req.url,
      headers: strip(req.headers),
      body: req,
    });
    res.writeHead(statusCode, strip(headers));
    body.on('error', () => res.destroy());
    body.pipe(res);
  } catch {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway\n');
    } else {
      res.destroy();
    }
  }
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(port, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`minimal proxy on 127.0.0.1:${typeof addr === 'object' && addr ? addr.port : port} -> ${backends.join(', ')}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    Promise.allSettled(pools.map((p) => p.destroy())).finally(() => process.exit(0));
  });
}
