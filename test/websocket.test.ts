import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { GUARD_MS } from './helpers/wait.js';

/** Real WebSocket servers (the `ws` package) behind the gateway, and real `ws` clients in front. */

let echo: WebSocketServer;
let refuser: WebSocketServer;
/** Refuses every upgrade with a 403 whose body (4 MiB) is far larger than any socket buffer. */
let bigRefuser: Server;
const bigRefuserSockets = new Set<Socket>();
const BIG_BODY = 4 * 1024 * 1024;
/** Handshake headers the echo server received, by the path asked for. */
const handshakes = new Map<string, IncomingHttpHeaders>();
let gw: RunningGateway;

function listening(server: WebSocketServer): Promise<void> {
  return new Promise((resolve) => server.once('listening', () => resolve()));
}

function addressOf(server: WebSocketServer): string {
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

before(async () => {
  echo = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
  });
  echo.on('connection', (ws, req: IncomingMessage) => {
    handshakes.set(req.url ?? '', req.headers);
    // Sent at once: it may share a packet with the 101, which the gateway must not lose.
    ws.send(`hello ${req.url}`);
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary && data.toString() === 'close-me') ws.close(4001, 'bye');
      else ws.send(data, { binary: isBinary });
    });
  });
  refuser = new WebSocketServer({ host: '127.0.0.1', port: 0, verifyClient: (_info, cb) => cb(false, 403, 'Forbidden') });
  const wsReady = Promise.all([listening(echo), listening(refuser)]);
  bigRefuser = createServer((socket) => {
    bigRefuserSockets.add(socket);
    socket.on('close', () => bigRefuserSockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (d: Buffer) => {
      // /big-refusal/length: Content-Length, connection kept; /big-refusal/close: no length,
      // Connection: close, the FIN ends the body.
      const framing = d.toString('latin1').startsWith('GET /big-refusal/close') ? 'connection: close' : `content-length: ${BIG_BODY}`;
      socket.write(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n${framing}\r\n\r\n`);
      socket.end(Buffer.alloc(BIG_BODY, 'n'));
    });
  });
  await new Promise<void>((resolve) => bigRefuser.listen(0, '127.0.0.1', resolve));
  await wsReady;
  gw = await startGateway({
    services: {
      echo: { endpoints: [addressOf(echo)] },
      refuser: { endpoints: [addressOf(refuser)] },
      big: { endpoints: [`127.0.0.1:${(bigRefuser.address() as AddressInfo).port}`] },
    },
    routes: [
      { prefix: '/ws', service: 'echo', stripPrefix: true },
      { prefix: '/refuse', service: 'refuser' },
      { prefix: '/big-refusal', service: 'big' },
    ],
  });
});

after(async () => {
  await gw.stop();
  for (const server of [echo, refuser]) {
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  for (const s of bigRefuserSockets) s.destroy();
  await new Promise<void>((resolve) => bigRefuser.close(() => resolve()));
});

/** Opens a client and collects its messages; resolves once the connection is open. */
async function open(path: string, protocols?: string[]): Promise<{ ws: WebSocket; next(): Promise<{ data: Buffer; isBinary: boolean }> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`, protocols);
  const queue: Array<{ data: Buffer; isBinary: boolean }> = [];
  const waiting: Array<(m: { data: Buffer; isBinary: boolean }) => void> = [];
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const m = { data: Buffer.isBuffer(data) ? data : Buffer.concat(data as Buffer[]), isBinary };
    const w = waiting.shift();
    if (w) w(m);
    else queue.push(m);
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res: IncomingMessage) => reject(new Error(`unexpected response ${res.statusCode}`)));
  });
  return {
    ws,
    next: () => {
      const m = queue.shift();
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message after ${GUARD_MS} ms (the guard)`)), GUARD_MS);
        waiting.push((msg) => { clearTimeout(timer); resolve(msg); });
      });
    },
  };
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })));
}

test('an upgrade passes through: greeting, text and binary frames both ways, client close', async () => {
  const { ws, next } = await open('/ws/room-1', ['chat']);
  assert.equal(ws.protocol, 'chat', 'the negotiated subprotocol came back through the gateway');
  const greeting = await next();
  assert.equal(greeting.data.toString(), 'hello /room-1');
  assert.equal(greeting.isBinary, false);

  ws.send('ping text');
  const text = await next();
  assert.equal(text.isBinary, false);
  assert.equal(text.data.toString(), 'ping text');

  const small = randomBytes(1000);
  ws.send(small, { binary: true });
  const echoedSmall = await next();
  assert.equal(echoedSmall.isBinary, true);
  assert.ok(echoedSmall.data.equals(small));

  // Large enough to be split over many TCP segments and ws frames' continuation reads.
  const big = randomBytes(4 * 1024 * 1024);
  ws.send(big, { binary: true });
  const echoedBig = await next();
  assert.equal(echoedBig.isBinary, true);
  assert.ok(echoedBig.data.equals(big), 'a 4 MiB binary frame came back intact');

  const done = closed(ws);
  ws.close(1000, 'client done');
  assert.deepEqual(await done, { code: 1000, reason: 'client done' });

  const headers = handshakes.get('/room-1');
  assert.ok(headers, 'the echo server saw the handshake at the stripped path');
  assert.equal(headers['x-forwarded-for'], '127.0.0.1');
  assert.ok(headers['x-request-id']);
  assert.equal(headers['sec-websocket-protocol'], 'chat');
  assert.equal(headers.upgrade?.toLowerCase(), 'websocket');
});

test('a close from the server, with its code and reason, reaches the client', async () => {
  const { ws, next } = await open('/ws/room-2');
  await next();
  const done = closed(ws);
  ws.send('close-me');
  assert.deepEqual(await done, { code: 4001, reason: 'bye' });
});

test('concurrent WebSocket sessions do not cross', async () => {
  const sessions = await Promise.all(Array.from({ length: 10 }, (_, i) => open(`/ws/s${i}`)));
  await Promise.all(sessions.map(async ({ ws, next }, i) => {
    assert.equal((await next()).data.toString(), `hello /s${i}`);
    for (let k = 0; k < 20; k++) {
      ws.send(`s${i}-m${k}`);
      assert.equal((await next()).data.toString(), `s${i}-m${k}`);
    }
  }));
  await Promise.all(sessions.map(({ ws }) => {
    const done = closed(ws);
    ws.close(1000);
    return done;
  }));
});

function refusedStatus(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`);
    ws.once('open', () => { ws.terminate(); reject(new Error('the upgrade was accepted')); });
    ws.once('error', () => { /* follows unexpected-response when the socket closes */ });
    ws.once('unexpected-response', (req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => { resolve({ status: res.statusCode!, body }); req.destroy(); });
      res.on('error', () => resolve({ status: res.statusCode!, body }));
    });
  });
}

test('an upstream that refuses the upgrade (403): the client sees the 403', async () => {
  const { status, body } = await refusedStatus('/refuse/x');
  assert.equal(status, 403);
  assert.equal(body, 'Forbidden');
});

for (const framing of ['length', 'close']) {
  test(`a refusal with a large body (${framing === 'length' ? 'Content-Length' : 'close-delimited'}) reaches a slow-reading client whole`, async () => {
    // Three times: whether the endpoint's FIN lands while the gateway is paused varies.
    for (let i = 0; i < 3; i++) await refuseSlowly(framing);
  });
}

async function refuseSlowly(framing: string): Promise<void> {
  const received = await new Promise<string>((resolve) => {
    const socket = connect(gw.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), GUARD_MS);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', () => {});
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
    socket.write(`GET /big-refusal/${framing} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n`
      + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    // Read nothing for a while: the gateway's writes back up; it must pause and resume the
    // upstream (or buffer, where pausing undici is unsafe) and survive the endpoint's FIN.
    socket.pause();
    setTimeout(() => socket.resume(), 300);
  });
  assert.equal(gw.proc.exitCode, null, `the gateway died: ${gw.stderr()}`);
  assert.match(received, /^HTTP\/1\.1 403 Forbidden\r\n/);
  const body = received.slice(received.indexOf('\r\n\r\n') + 4);
  assert.equal(body.length, BIG_BODY, 'the whole refusal body arrived and the connection then closed');
}

test('an upgrade with no route gets 404', async () => {
  const { status } = await refusedStatus('/nowhere');
  assert.equal(status, 404);
});

test('plain HTTP still works on the same listener after the upgrades', async () => {
  const res = await fetch(`${gw.url}/ws/plain`);
  // The ws server answers plain HTTP with 426 Upgrade Required: proxied like any response.
  assert.equal(res.status, 426);
  await res.arrayBuffer();
});
