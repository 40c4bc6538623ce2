#!/usr/bin/env node
// Benchmark backend for gRPC: a node:http2 server on plaintext HTTP/2 (h2c, prior knowledge) that
// answers every gRPC call with one fixed message and grpc-status 0 — much cheaper per call than a
// grpc-js server, so the proxy in front of it, not the backend, is what a benchmark measures.
// Usage: node bench/h2-backend.js PORT NAME
//   POST /<pkg.Service>/<Method> (content-type application/grpc…)  → a GetReply { id, instance: NAME }
//   POST /grpc.health.v1.Health/Check                                → SERVING (proxies' health checks)
//   GET  /__count                                                    → the number of calls answered (JSON)
//   anything else                                                    → 200 "hello world\n"
import http2 from 'node:http2';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const name = process.argv[3] ?? `h2-${port}`;
const host = process.env.HOST ?? '127.0.0.1';

/** One gRPC message frame: not compressed, 4-byte big-endian length, then the message. */
function frame(message) {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** A protobuf string field (`field`, wire type 2) with a one-byte length. */
const stringField = (field, text) => Buffer.concat([Buffer.from([(field << 3) | 2, Buffer.byteLength(text)]), Buffer.from(text)]);

const reply = frame(Buffer.concat([stringField(1, 'bench'), stringField(2, name)]));
const serving = frame(Buffer.from([0x08, 0x01])); // HealthCheckResponse { status: SERVING }
const hello = Buffer.from('hello world\n');
let answered = 0;

const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } });
server.on('stream', (stream, headers) => {
  const path = headers[':path'] ?? '/';
  const contentType = String(headers['content-type'] ?? '');
  stream.on('error', () => {}); // a proxy that resets a stream
  if (contentType.startsWith('application/grpc')) {
    stream.resume();
    stream.once('end', () => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(path === '/grpc.health.v1.Health/Check' ? serving : reply);
      if (path !== '/grpc.health.v1.Health/Check') answered++;
    });
    return;
  }
  stream.resume();
  if (path === '/__count') {
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    stream.end(JSON.stringify({ answered }));
    return;
  }
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': String(hello.length) });
  stream.end(hello);
});
server.on('sessionError', () => {});

server.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write(`h2 backend ${name} listening on ${host}:${typeof addr === 'object' && addr ? addr.port : port}\n`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
