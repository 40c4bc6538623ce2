import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { guarded, waitFor } from './helpers/wait.js';

/** SIGTERM on the real gateway process: in-flight requests finish, nothing new gets in, exit 0. */

const backends: Backend[] = [];
const gateways: RunningGateway[] = [];

after(async () => {
  for (const g of gateways) if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL');
  await Promise.all(backends.map((b) => b.close()));
});

/**
 * A backend that answers every request (but /warm) once `release` resolves, and counts the requests it
 * got. The gateway's health probes (/healthz) are answered at once and not counted.
 */
async function slowBackend(release: Promise<void>): Promise<Backend & { arrived: () => number }> {
  let arrived = 0;
  const b = await startBackend('slow', (req, res) => {
    if (req.url === '/healthz') {
      res.end('ok');
      return;
    }
    arrived++;
    req.resume();
    const answer = () => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`done ${req.url}`);
    };
    if (req.url === '/warm') answer();
    else void release.then(answer);
  });
  backends.push(b);
  return Object.assign(b, { arrived: () => arrived });
}

interface Outcome { status?: number; body?: string; connection?: string; error?: string }

function get(port: number, path: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'keep-alive' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, connection: res.headers.connection }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: res.statusCode, error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

async function until(pred: () => boolean): Promise<void> {
  await waitFor('the condition', pred);
}

/** A promise and its resolve, to release held answers when the test says so. */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => { open = resolve; });
  return { opened, open };
}

/** Resolves with how a fresh TCP connection to the port ended: 'refused', 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve('connected'); });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : err.code ?? 'error'));
  });
}

test('SIGTERM drains: in-flight requests complete with 200, new connections are refused, /readyz is 503, exit 0', async () => {
  // The in-flight answers are held until the drain has been checked: no race with the clock.
  const held = gate();
  const backend = await slowBackend(held.opened);
  // A drain timeout no test waits for: an exit proves the drain ended with the last request.
  const gw = await startGateway({ drainTimeout: '10m', services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] });
  gateways.push(gw);
  assert.equal((await fetch(`${gw.adminUrl}/readyz`)).status, 200);

  // An idle keep-alive client connection: drained at once, it has nothing in flight.
  const idle = connect(gw.port, '127.0.0.1');
  let idleData = '';
  idle.setEncoding('latin1');
  idle.on('data', (d: string) => { idleData += d; });
  idle.on('error', () => {});
  const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
  idle.write('GET /warm HTTP/1.1\r\nHost: t\r\n\r\n');
  await until(() => idleData.includes('done /warm'));

  const inflight = Array.from({ length: 5 }, (_, i) => get(gw.port, `/inflight-${i}`));
  await until(() => backend.arrived() === 6);

  gw.proc.kill('SIGTERM');
  await gw.waitForLog((l) => l.msg === 'draining');

  assert.equal(await tryConnect(gw.port), 'refused', 'a new connection was accepted during the drain');
  const ready = await fetch(`${gw.adminUrl}/readyz`);
  assert.equal(ready.status, 503, '/readyz still says ready while draining');
  await ready.arrayBuffer();
  // Closed at once: while every request is still held, not when the drain ends.
  await guarded(idleClosed, 'the idle keep-alive connection to close while requests are in flight');
  assert.equal(backend.arrived(), 6);

  held.open();
  const outcomes = await Promise.all(inflight);
  outcomes.forEach((o, i) => {
    assert.equal(o.status, 200, `in-flight request ${i}: ${JSON.stringify(o)}`);
    assert.equal(o.body, `done /inflight-${i}`);
    assert.equal(o.connection, 'close', 'a response during the drain tells the client to close');
  });
  const code = await guarded(gw.exited, 'the exit after the last request');
  assert.equal(code, 0, `exit ${code}; stderr: ${gw.stderr()}`);
  assert.ok(gw.logs.some((l) => l.msg === 'stopped' && l.abandoned === 0), 'nothing was abandoned');
});

test('drainTimeout (500ms) bounds the drain: a request that never ends is abandoned and the process exits 0', async (t) => {
  // Never answered: the exit itself shows the drain timeout ended the drain.
  const backend = await slowBackend(new Promise<void>(() => {}));
  const gw = await startGateway({ drainTimeout: '500ms', services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] });
  gateways.push(gw);
  const pending = get(gw.port, '/long');
  await until(() => backend.arrived() === 1);
  const signalled = performance.now();
  gw.proc.kill('SIGTERM');
  const code = await guarded(gw.exited, 'the exit at the drain timeout');
  const elapsed = performance.now() - signalled;
  const outcome = await pending;
  t.diagnostic(`exited ${Math.round(elapsed)} ms after SIGTERM; the abandoned client saw ${JSON.stringify(outcome)}`);
  assert.equal(code, 0, `exit ${code}; stderr: ${gw.stderr()}`);
  // Not before the timeout (a bound load cannot break: it only makes the exit later).
  assert.ok(elapsed >= 400, `exited ${Math.round(elapsed)} ms after the signal, before the drain timeout`);
  // The abandoned request is cut, not answered as if it had succeeded.
  assert.notEqual(outcome.status, 200);
  assert.ok(outcome.error !== undefined || (outcome.status ?? 0) >= 500, JSON.stringify(outcome));
  assert.ok(gw.logs.some((l) => l.msg === 'stopped' && l.abandoned === 1), 'the log names the abandoned request');
});
