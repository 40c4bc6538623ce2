#!/usr/bin/env node
// Fault-drill backend: a node:http server whose fault mode is switched at runtime.
// Usage: node bench/drill-backend.js PORT NAME      env: DRILL_LOG=<dir> (where ids are logged)
//
// Control (never routed by the proxies: the drill talks to the backend directly):
//   POST /__drill/mode?m=<mode>   with header `x-drill-control: 1`   -> 200 "<mode>\n"
//   GET  /__drill/stats           with header `x-drill-control: 1`   -> JSON counters
//   POST /__drill/delay?ms=<n>    with header `x-drill-control: 1`   -> 200 "<n>\n": every answer
//                                 but /healthz's waits n ms more (any mode; 0 = none, the default)
// Modes:
//   ok        every request 200, /healthz 200
//   all-503   every request 503, /healthz too
//   real-503  /healthz 200, every other request 503
//   some-503  /healthz 200, 30% of the other requests 503
//   slow-2s   every request (health too) answered after 2 s
//   reset     every connection is destroyed as soon as a request arrives (health too)
//   hang      requests are read but never answered (health too)
//
// Duplicates: the request id header `x-drill-id` of every non-health request is appended to
// $DRILL_LOG/<NAME>.log when it arrives (`R <id>`) and when it is PROCESSED (`P <id>`): a GET
// when it is answered 2xx, a POST when its body has been read and "processed" (a POST then
// takes POST_WORK_MS more before it is answered, like a real write, and `A <id>` is logged when
// it is answered: R without A = in flight on this instance). Lines are written with
// appendFileSync, so they survive a SIGKILL. The drill counts ids processed more than once.
//
// SIGTERM drains: stop accepting, answer in-flight requests (with `connection: close`), exit 0
// (forced after 10 s). SIGINT exits at once.
import { appendFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const name = process.argv[3] ?? `b${port}`;
const host = process.env.HOST ?? '127.0.0.1';
const logDir = process.env.DRILL_LOG ?? null;
const POST_WORK_MS = Number(process.env.POST_WORK_MS ?? 20);
const MODES = new Set(['ok', 'all-503', 'real-503', 'some-503', 'slow-2s', 'reset', 'hang']);

let mode = process.env.DRILL_MODE && MODES.has(process.env.DRILL_MODE) ? process.env.DRILL_MODE : 'ok';
let draining = false;
let delayMs = Number(process.env.DRILL_DELAY_MS ?? 0) || 0;
const stats = { received: 0, processed: 0, answered: {}, mode };
const inFlight = new Set();

let logFile = null;
if (logDir) {
  mkdirSync(logDir, { recursive: true });
  logFile = join(logDir, `${name}.log`);
}
function log(kind, id) {
  if (!logFile || !id) return;
  appendFileSync(logFile, `${kind} ${id} ${process.pid}\n`);
}

const okBody = Buffer.from(`ok from ${name}\n`);
const unavailable = Buffer.from('unavailable\n');

function send(res, status, body) {
  const headers = { 'content-type': 'text/plain', 'content-length': String(body.length), 'x-drill-backend': name };
  if (draining) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
  stats.answered[status] = (stats.answered[status] ?? 0) + 1;
}

function control(req, res, url) {
  if (req.method === 'POST' && url.pathname === '/__drill/mode') {
    const m = url.searchParams.get('m') ?? '';
    if (!MODES.has(m)) return send(res, 400, Buffer.from(`unknown mode ${m}\n`));
    mode = m;
    stats.mode = m;
    return send(res, 200, Buffer.from(`${m}\n`));
  }
  if (req.method === 'POST' && url.pathname === '/__drill/delay') {
    const ms = Number(url.searchParams.get('ms'));
    if (!Number.isFinite(ms) || ms < 0) return send(res, 400, Buffer.from(`bad delay ${url.searchParams.get('ms')}\n`));
    delayMs = ms;
    stats.delayMs = ms;
    return send(res, 200, Buffer.from(`${ms}\n`));
  }
  if (url.pathname === '/__drill/stats') {
    return send(res, 200, Buffer.from(JSON.stringify({ ...stats, inFlight: inFlight.size, pid: process.pid }) + '\n'));
  }
  return send(res, 404, Buffer.from('unknown control route\n'));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (req.headers['x-drill-control'] === '1' && url.pathname.startsWith('/__drill/')) {
    req.resume();
    return control(req, res, url);
  }
  const health = url.pathname === '/healthz';
  const id = health ? null : String(req.headers['x-drill-id'] ?? '') || null;
  const m = mode;
  if (m === 'reset') {
    req.socket.destroy();
    return;
  }
  if (!health) {
    stats.received++;
    log('R', id);
  }
  if (m === 'hang') {
    req.resume(); // read it, never answer
    return;
  }
  inFlight.add(res);
  res.once('close', () => inFlight.delete(res));
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('error', () => {});
  req.on('end', () => {
    const fail = m === 'all-503' || (!health && m === 'real-503') || (!health && m === 'some-503' && Math.random() < 0.3);
    const answer = () => {
      if (fail) return send(res, 503, unavailable);
      if (health) return send(res, 200, okBody);
      if (req.method === 'POST') {
        // The body is read: process it (the side effect happens now), then answer after some work.
        stats.processed++;
        log('P', id);
        setTimeout(() => {
          if (res.destroyed) return;
          send(res, 200, okBody);
          log('A', id);
        }, POST_WORK_MS);
        return;
      }
      stats.processed++;
      log('P', id);
      send(res, 200, okBody);
    };
    const wait = (m === 'slow-2s' ? 2000 : 0) + (health ? 0 : delayMs);
    if (wait > 0) setTimeout(() => { if (!res.destroyed) answer(); }, wait);
    else answer();
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;

server.listen(port, host, () => {
  const addr = server.address();
  process.stdout.write(`drill backend ${name} (pid ${process.pid}) listening on ${host}:${typeof addr === 'object' && addr ? addr.port : port}\n`);
});

process.on('SIGTERM', () => {
  if (draining) return;
  draining = true;
  process.stdout.write(`${name}: SIGTERM, draining ${inFlight.size} in-flight\n`);
  server.close(() => process.exit(0)); // stops accepting; calls back once every connection is gone
  server.closeIdleConnections();
  const idle = setInterval(() => server.closeIdleConnections(), 50);
  idle.unref();
  setTimeout(() => {
    process.stdout.write(`${name}: drain timed out with ${inFlight.size} in flight\n`);
    process.exit(0);
  }, 10_000).unref();
});
process.on('SIGINT', () => process.exit(0));
