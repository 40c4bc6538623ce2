#!/usr/bin/env node
// A minimal node:http2 proxy: the HTTP/2 and gRPC proxy a Node developer would write in an hour
// with node:http2 and undici, for the HTTP/2 section of the benchmark (scripts/lib/bench-h2.js),
// as bench/minimal-proxy.js is for HTTP/1.1. Its gRPC figure is what a call through node:http2
// costs on the Node running it with none of a gateway's work: no health checks, retries,
// deadlines, metrics, logs, forwarding or trace headers, no header hygiene, no limits, no flow
// control beyond node:http2's own. Round robin per call.
//
// Usage: node bench/minimal-h2-proxy.js PLAIN_PORT TLS_PORT CERT KEY H1_BACKENDS H2_BACKENDS
//   PLAIN_PORT: h2c with prior knowledge;  TLS_PORT: TLS, ALPN h2 and http/1.1
//   H1_BACKENDS, H2_BACKENDS: comma-separated host:port lists (HTTP/1.1 and h2c backends)
//   gRPC calls (content-type application/grpc…) go over node:http2 to the h2c backends, trailers
//   relayed; anything else goes over undici to the HTTP/1.1 backends.
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

const [plainPort, tlsPort, certFile, keyFile, h1List, h2List] = process.argv.slice(2);
if (!h2List) {
  process.stderr.write('usage: node bench/minimal-h2-proxy.js PLAIN_PORT TLS_PORT CERT KEY H1_BACKENDS H2_BACKENDS\n');
  process.exit(2);
}

const pools = h1List.split(',').map((b) => new Pool(`http://${b}`));
const sessions = h2List.split(',').map((b) => ({ url: `http://${b}`, session: null }));
let nextH1 = 0;
let nextH2 = 0;

function h2Session() {
  const s = sessions[nextH2++ % sessions.length];
  if (s.session === null || s.session.closed || s.session.destroyed) {
    s.session = http2.connect(s.url);
    s.session.on('error', () => {});
  }
  return s.session;
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer', 'host']);

function grpc(stream, headers) {
  const up = h2Session().request({ ':method': 'POST', ':path': headers[':path'], 'content-type': headers['content-type'], te: 'trailers' });
  let trailers = { 'grpc-status': '14', 'grpc-message': 'upstream failed' };
  stream.on('data', (chunk) => up.write(chunk));
  stream.on('end', () => up.end());
  stream.on('error', () => up.close());
  up.on('response', (h) => {
    if (stream.destroyed) return;
    if (h['grpc-status'] !== undefined) { // Trailers-Only
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': h['grpc-status'] }, { endStream: true });
      up.resume();
      return;
    }
    stream.respond({ ':status': 200, 'content-type': h['content-type'] ?? 'application/grpc' }, { waitForTrailers: true });
  });
  up.on('data', (chunk) => { if (!stream.destroyed) stream.write(chunk); });
  up.on('trailers', (t) => { trailers = t; });
  up.on('end', () => { if (!stream.destroyed && stream.headersSent && !stream.writableEnded) stream.end(); });
  stream.on('wantTrailers', () => {
    const out = { 'grpc-status': trailers['grpc-status'] ?? '0' };
    if (trailers['grpc-message'] !== undefined) out['grpc-message'] = trailers['grpc-message'];
    stream.sendTrailers(out);
  });
  up.on('error', () => {
    if (stream.destroyed) return;
    if (!stream.headersSent) stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14' }, { endStream: true });
    else stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });
}

async function forward(method, path, headers, body) {
  const forwarded = {};
  for (const [k, v] of Object.entries(headers)) if (k.charCodeAt(0) !== 58 && !HOP.has(k)) forwarded[k] = v;
  return pools[nextH1++ % pools.length].request({ method, path, headers: forwarded, body: method === 'GET' || method === 'HEAD' ? null : body });
}

function h2Plain(stream, headers) {
  stream.on('error', () => {});
  forward(headers[':method'], headers[':path'], headers, stream).then(({ statusCode, headers: h, body }) => {
    if (stream.destroyed) return body.resume();
    const out = { ':status': statusCode };
    for (const [k, v] of Object.entries(h)) if (!HOP.has(k)) out[k] = v;
    stream.respond(out);
    body.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    body.pipe(stream);
  }, () => {
    if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': 502 }, { endStream: true });
  });
}

function onStream(stream, headers) {
  if (String(headers['content-type'] ?? '').startsWith('application/grpc')) grpc(stream, headers);
  else h2Plain(stream, headers);
}

function h1(req, res) {
  forward(req.method, req.url, req.headers, req).then(({ statusCode, headers: h, body }) => {
    const out = {};
    for (const [k, v] of Object.entries(h)) if (!HOP.has(k)) out[k] = v;
    res.writeHead(statusCode, out);
    body.on('error', () => res.destroy());
    body.pipe(res);
  }, () => {
    if (!res.headersSent) res.writeHead(502).end();
  });
}

const plain = http2.createServer();
plain.on('stream', onStream);
plain.listen(Number(plainPort), '127.0.0.1');

// HTTP/1.1 over TLS comes as 'request'; adding that listener makes node:http2 add its
// compatibility layer as a 'stream' listener too, which HTTP/2 streams here do not use.
const secure = http2.createSecureServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: true });
secure.on('request', (req, res) => { if (req.httpVersionMajor === 1) h1(req, res); });
secure.removeAllListeners('stream');
secure.on('stream', onStream);
secure.listen(Number(tlsPort), '127.0.0.1');

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
