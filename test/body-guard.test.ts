import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { FakeClock } from '../src/core/clock.js';
import { BodyGuard, type BodyGuardOptions, type GuardedBody } from '../src/gateway/body-guard.js';
import { startGateway, clusterService, type RunningGateway } from './helpers/gateway.js';
import { startRawBackend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { rawExchange } from './helpers/raw-client.js';

/** A request body the test moves by hand: bytes arrive, the consumer reads or not, it completes. */
class FakeBody implements GuardedBody {
  socket: { bytesRead: number } | null = { bytesRead: 0 };
  readableFlowing: boolean | null = true;
  readableLength = 0;
  complete = false;
  destroyed = false;
  receive(bytes: number): void {
    this.socket!.bytesRead += bytes;
  }
}

const OPTIONS: BodyGuardOptions = { idleTimeout: 10_000, minRate: 240, grace: 5_000 };

function guarded(options: BodyGuardOptions = OPTIONS): { clock: FakeClock; guard: BodyGuard; body: FakeBody; stalls: string[] } {
  const clock = new FakeClock();
  const guard = new BodyGuard(options, clock);
  const body = new FakeBody();
  const stalls: string[] = [];
  guard.watch(body, { bodyStalled: (reason) => stalls.push(reason) });
  return { clock, guard, body, stalls };
}

/** Moves the clock `seconds` one second at a time, the body receiving `bytesPerSecond` each second. */
function trickle(clock: FakeClock, body: FakeBody, bytesPerSecond: number, seconds: number): void {
  for (let i = 0; i < seconds; i++) {
    body.receive(bytesPerSecond);
    clock.advance(1000);
  }
}

test('body guard: a body below minBodyRate is cut once the grace period has passed, not before', () => {
  const { clock, body, stalls } = guarded();
  trickle(clock, body, 100, 4);
  assert.deepEqual(stalls, [], 'within the grace period');
  trickle(clock, body, 100, 2);
  assert.equal(stalls.length, 1);
  assert.match(stalls[0]!, /came at 100 bytes\/s, below limits\.minBodyRate \(240 bytes\/s\)/);
});

test('body guard: a body at or above minBodyRate is never cut, a slow start made up for is allowed', () => {
  const steady = guarded();
  trickle(steady.clock, steady.body, 240, 120);
  assert.deepEqual(steady.stalls, []);
  const late = guarded();
  trickle(late.clock, late.body, 0, 4);
  trickle(late.clock, late.body, 2_000, 1);
  trickle(late.clock, late.body, 240, 60);
  assert.deepEqual(late.stalls, []);
});

test('body guard: no byte for bodyTimeout cuts the body, even when its average rate is high', () => {
  const { clock, body, stalls } = guarded();
  trickle(clock, body, 1_000_000, 2);
  clock.advance(9_000);
  assert.deepEqual(stalls, []);
  clock.advance(1_000);
  assert.equal(stalls.length, 1);
  assert.match(stalls[0]!, /no request body byte for 10\d\d\d ms/);
});

test('body guard: time the consumer is not reading is not held against the client', () => {
  const { clock, body, stalls } = guarded();
  // The endpoint does not take the body: the consumer paused (or has a backlog).
  body.readableFlowing = false;
  clock.advance(60_000);
  body.readableFlowing = true;
  body.readableLength = 16_384;
  clock.advance(60_000);
  assert.deepEqual(stalls, []);
  // Reading again: the clocks start from here.
  body.readableLength = 0;
  trickle(clock, body, 300, 30);
  assert.deepEqual(stalls, []);
});

test('body guard: a complete or destroyed body is forgotten, and the timer stops with the last one', () => {
  const { clock, guard, body, stalls } = guarded();
  const other = new FakeBody();
  guard.watch(other, { bodyStalled: (reason) => stalls.push(reason) });
  assert.equal(guard.size, 2);
  body.complete = true;
  other.destroyed = true;
  clock.advance(1_000);
  assert.equal(guard.size, 0);
  assert.equal(clock.pending, 0, 'no timer left behind');
  clock.advance(60_000);
  assert.deepEqual(stalls, []);
});

test('body guard: one timer for every watched body, however many', () => {
  const clock = new FakeClock();
  const guard = new BodyGuard(OPTIONS, clock);
  for (let i = 0; i < 1000; i++) guard.watch(new FakeBody(), { bodyStalled() {} });
  assert.equal(clock.pending, 1);
  guard.close();
  assert.equal(clock.pending, 0);
});

test('body guard: 0 turns a check off; configure() applies new limits to bodies already watched', () => {
  const off = guarded({ idleTimeout: 0, minRate: 0, grace: 5_000 });
  assert.equal(off.guard.size, 0, 'nothing is watched when both checks are off');
  const idleOnly = guarded({ idleTimeout: 2_000, minRate: 0, grace: 5_000 });
  trickle(idleOnly.clock, idleOnly.body, 1, 30);
  assert.deepEqual(idleOnly.stalls, [], 'no rate check');
  const { clock, guard, body, stalls } = guarded();
  trickle(clock, body, 100, 3);
  guard.configure({ idleTimeout: 10_000, minRate: 50, grace: 5_000 });
  trickle(clock, body, 100, 10);
  assert.deepEqual(stalls, []);
  guard.configure({ idleTimeout: 1_000, minRate: 50, grace: 5_000 });
  clock.advance(2_000);
  assert.equal(stalls.length, 1);
});

// ---------------------------------------------------------------------------------------------
// End to end: a real gateway, a raw client trickling its body, a raw backend.

const { defer, track } = cleanupAfterAll();
let gw: RunningGateway;
/**
 * Backend connections that carried a request: its first bytes, and when the connection closed.
 * (undici may open a spare connection after one is cut; it carries nothing and is not listed.)
 */
const upstream: Array<{ start: string; closed: Promise<void> }> = [];

before(async () => {
  const backend = await startRawBackend((socket) => {
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.setEncoding('latin1');
    // Reads the body as it comes and never answers: the gateway must let go by itself.
    socket.once('data', (d: string) => upstream.push({ start: d, closed }));
  });
  defer(() => backend.close());
  gw = track(await startGateway({
    limits: { bodyTimeout: '2s', minBodyRate: 240, minBodyRateGrace: '1s' },
    services: { slow: { endpoints: [backend.address], healthCheck: false } },
    routes: [{ prefix: '/', service: 'slow' }],
  }));
});

/** A client part that sends one byte per `intervalMs` until the gateway closes the connection. */
function oneBytePer(intervalMs: number, frame: (byte: string) => string) {
  return async (socket: Socket): Promise<void> => {
    const closed = once(socket, 'close');
    while (!socket.destroyed && socket.writable) {
      socket.write(frame('x'));
      const tick = new Promise((r) => setTimeout(r, intervalMs));
      await Promise.race([tick, closed]);
    }
  };
}

test('a request body at 1 byte per 100 ms gets 408 and close, and its backend connection is released', async () => {
  // Before: each such body held an endpoint connection for limits.requestTimeout (5 min).
  const before = upstream.length;
  const out = await rawExchange(gw.port, [
    'POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n',
    oneBytePer(100, (b) => `1\r\n${b}\r\n`),
  ]);
  assert.equal(out.status, 408, out.data);
  assert.match(out.data, /"code":"TANDEM_ERR_REQUEST_TIMEOUT"/);
  assert.match(out.data, /below limits\.minBodyRate/);
  assert.match(out.data, /\r\nconnection: close\r\n/i);
  assert.equal(out.end, 'closed');
  assert.equal(upstream.length, before + 1, 'the body was streaming to the backend');
  assert.match(upstream.at(-1)!.start, /^POST \/upload HTTP\/1\.1\r\n/);
  await upstream.at(-1)!.closed;
});

test('a request body that stops for limits.bodyTimeout gets 408 and close, its backend connection released', async () => {
  // Larger than retry.bodyLimit (64 KiB): streamed, not buffered.
  const before = upstream.length;
  const out = await rawExchange(gw.port, [
    `POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: ${1024 * 1024}\r\n\r\n`,
    'x'.repeat(100_000),
  ]);
  assert.equal(out.status, 408, out.data);
  assert.match(out.data, /no request body byte for \d+ ms/);
  assert.equal(out.end, 'closed');
  assert.equal(upstream.length, before + 1, 'the body was streaming to the backend');
  await upstream.at(-1)!.closed;
  // A body within retry.bodyLimit is read whole before any endpoint sees it: the endpoint never
  // hears of one that stalls.
  const buffered = upstream.length;
  const small = await rawExchange(gw.port, ['POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n', 'x'.repeat(10)]);
  assert.equal(small.status, 408, small.data);
  assert.equal(small.end, 'closed');
  assert.equal(upstream.length, buffered);
  const slow = await clusterService<{ endpoints: Array<{ responses: Record<string, number> }> }>(gw, 'slow');
  assert.equal(slow.endpoints[0]!.responses.error, 0, 'a stalled body is not the endpoint\'s failure');
});
