#!/usr/bin/env node
// One instance of the gRPC drill's service (grpc-drill.proto) as its own process: a @grpc/grpc-js
// server with Drill (Get, Watch) and DrillControl (Set), made a member by tandem/node's
// serveGrpc() — registered with `registry`, grpc.health.v1 served, drained on SIGTERM (health
// NOT_SERVING and "draining" in the registry, a quiet period, GOAWAY, running calls and streams
// finish, exit 0). Without `registry` it binds plainly and drains on SIGTERM with grpc-js's
// tryShutdown alone (GOAWAY, running calls finish): the instance a proxy with no registry sees.
//
// Usage: node scripts/lib/grpc-drill-instance.js '{"port":50051,"id":"i1","registry":"http://127.0.0.1:9901"}'
// Prints one JSON line {"msg":"serving","id","port","serveGrpc":true|false} when it takes calls.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { drillPackage, grpc } from './grpc-drill-service.js';

const opts = JSON.parse(process.argv[2] ?? '{}');
const id = opts.id ?? `i${process.pid}`;
const out = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
let unavailable = false;
const unavailableError = () => ({ code: grpc.status.UNAVAILABLE, details: `${id} cannot serve (drill fault)` });

function get(call, callback) {
  if (unavailable) callback(unavailableError());
  else callback(null, { id: call.request.id, instance: id });
}

function watch(call) {
  if (unavailable) {
    call.emit('error', unavailableError());
    return;
  }
  const ticks = Math.max(1, call.request.ticks || 1);
  const interval = Math.max(1, call.request.intervalMs || 50);
  let n = 0;
  const timer = setInterval(() => {
    if (call.cancelled) {
      clearInterval(timer);
      return;
    }
    call.write({ n: ++n, instance: id });
    if (n >= ticks) {
      clearInterval(timer);
      call.end();
    }
  }, interval);
  call.on('cancelled', () => clearInterval(timer));
}

function set(call, callback) {
  unavailable = Boolean(call.request.unavailable);
  out({ msg: 'set', unavailable });
  callback(null, { instance: id, unavailable });
}

const { Drill, DrillControl } = drillPackage();
const server = new grpc.Server();
server.addService(Drill.service, { Get: get, Watch: watch });
server.addService(DrillControl.service, { Set: set });

async function withServeGrpc() {
  const root = new URL('../../', import.meta.url);
  const { serveGrpc } = await import(pathToFileURL(join(root.pathname, 'dist', 'src', 'node', 'index.js')).href);
  if (typeof serveGrpc !== 'function') return false;
  const instance = await serveGrpc(server, {
    service: opts.service ?? 'drill',
    registry: opts.registry,
    id,
    listen: `127.0.0.1:${opts.port ?? 0}`,
    healthServices: ['tandem.drill.Drill'],
    logger: { info: () => {}, warn: (f) => process.stderr.write(`${JSON.stringify(f)}\n`) },
  });
  out({ msg: 'serving', id, port: instance.port, serveGrpc: true });
  return true;
}

function plain() {
  server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      process.stderr.write(`bind failed: ${err.message}\n`);
      process.exit(1);
    }
    out({ msg: 'serving', id, port, serveGrpc: false });
  });
  process.once('SIGTERM', () => {
    const force = setTimeout(() => { server.forceShutdown(); process.exit(0); }, 30_000);
    server.tryShutdown(() => { clearTimeout(force); process.exit(0); });
  });
}

if (!opts.registry || !(await withServeGrpc())) plain();
