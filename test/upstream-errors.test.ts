import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { adminFetch, startGateway, type RunningGateway } from './helpers/gateway.js';
import { eachRequest, startRawBackend } from './helpers/backend.js';
import { GUARD_MS, guarded } from './helpers/wait.js';

/**
 * Upstream failures through the real gateway, with raw TCP backends that write every byte:
 * a failure costs exactly the request it hit, and no response ever reaches the wrong client.
 */

type RawBackend = Awaited<ReturnType<typeof startRawBackend>>;

const backends: RawBackend[] = [];
let gw: RunningGateway;
let deadPort: number;
const BIG = 8 * 1024 * 1024;

function okResponse(id: string): string {
  const body = JSON.stringify({ id });
  return `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
}

/**
 * /echo/<id> answers {"id": id}. Ids starting with "bad" get bytes that are not HTTP; ids
 * starting with "extra" get their answer plus, in the same write, a second complete response
 * nobody asked for — a desync the gateway must not hand to the next request on that connection.
 */
function echoBackend(socket: Socket): void {
  eachRequest(socket, (path) => {
    const id = path.slice('/echo/'.length);
    if (id.startsWith('badlen')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!');
    else if (id.startsWith('bad')) socket.write('THIS IS NOT HTTP\r\n\r\n');
    else if (id.startsWith('extra')) socket.write(okResponse(id) + okResponse('stolen'));
    else socket.write(okResponse(id));
  });
}

/** By last path segment, how the cutter ends its response: called by the client once body bytes arrived. */
const cuts = new Map<string, () => void>();

before(async () => {
  const echo = await startRawBackend(echoBackend);
  const silent = await startRawBackend(() => { /* reads, never answers */ });
  const cutter = await startRawBackend((socket) => eachRequest(socket, (path) => {
    if (path.includes('before-headers')) {
      socket.resetAndDestroy();
    } else {
      socket.write(path.includes('chunked') ? 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n' : `HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n${'x'.repeat(1000)}`);
      // Cut once the client has the first body bytes (rawGet calls it): a cut before the
      // gateway read them would test a different failure.
      cuts.set(path.split('/').pop()!, () => (path.includes('fin') ? socket.end() : socket.resetAndDestroy()));
    }
  }));
  // Large responses that end by closing the connection, for slow-client tests. /close-delimited:
  // no length, the FIN ends the body; /close-length: Content-Length + Connection: close;
  // /close-truncated: Content-Length + Connection: close, but the FIN comes halfway.
  const closer = await startRawBackend((socket) => eachRequest(socket, (path) => {
    const body = Buffer.alloc(BIG, 'b');
    if (path.includes('delimited')) {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n');
      socket.end(body);
    } else if (path.includes('truncated')) {
      socket.write(`HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: ${BIG}\r\n\r\n`);
      socket.end(body.subarray(0, BIG / 2));
    } else {
      socket.write(`HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: ${BIG}\r\n\r\n`);
      socket.end(body);
    }
  }));
  backends.push(echo, silent, cutter, closer);
  // A port nobody listens on: bind one, note it, close it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  deadPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  // No active health checks on the raw backends: they answer every request, a probe's too, with
  // the bytes under test (garbage, resets, silence, 8 MiB), and each test counts on its request
  // being the only one on its connection.
  const raw = { healthCheck: false };
  gw = await startGateway({
    services: {
      // Few connections, so concurrent requests share (and reuse) pooled upstream connections.
      echo: { endpoints: [echo.address], maxConnections: 4, ...raw },
      refused: { endpoints: [`127.0.0.1:${deadPort}`] },
      silent: { endpoints: [silent.address], timeout: '500ms', ...raw },
      cutter: { endpoints: [cutter.address], ...raw },
      closer: { endpoints: [closer.address], ...raw },
    },
    routes: [
      { prefix: '/echo', service: 'echo' },
      { prefix: '/refused', service: 'refused' },
      { prefix: '/silent', service: 'silent' },
      { prefix: '/cut', service: 'cutter' },
      { prefix: '/close', service: 'closer' },
    ],
  });
});

after(async () => {
  await gw.stop();
  await Promise.all(backends.map((b) => b.close()));
});

interface Reply { status: number; body: string; reused: boolean; headers: Record<string, string | string[] | undefined> }

function get(path: string, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gw.port, path, agent: agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body, reused: req.reusedSocket, headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function errorCode(reply: Reply): string | undefined {
  try {
    return (JSON.parse(reply.body) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

test('garbage from the upstream is a 502 for that request only; the next request on the same client connection works', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await get('/echo/ok-1', agent);
    assert.equal(first.status, 200);
    const bad = await get('/echo/bad-1', agent);
    assert.equal(bad.status, 502);
    assert.equal(errorCode(bad), 'TANDEM_ERR_UPSTREAM_PROTOCOL');
    assert.equal(bad.reused, true);
    assert.notEqual(bad.headers.connection, 'close', 'the client connection is kept after a 502');
    const badLength = await get('/echo/badlen-1', agent);
    assert.equal(badLength.status, 502);
    const next = await get('/echo/ok-2', agent);
    assert.equal(next.reused, true, 'the follow-up went over the same client connection');
    assert.equal(next.status, 200);
    assert.deepEqual(JSON.parse(next.body), { id: 'ok-2' });
  } finally {
    agent.destroy();
  }
});

test('concurrent clients each get their own answer, however the upstream misbehaves', async () => {
  for (let round = 0; round < 3; round++) {
    const ids = Array.from({ length: 40 }, (_, i) => (i % 4 === 1 ? `bad-${round}-${i}` : i % 4 === 2 ? `extra-${round}-${i}` : `ok-${round}-${i}`));
    const replies = await Promise.all(ids.map((id) => get(`/echo/${id}`)));
    replies.forEach((reply, i) => {
      const id = ids[i]!;
      assert.ok(!reply.body.includes('stolen'), `${id} got a response meant for nobody: ${reply.body}`);
      if (id.startsWith('bad')) {
        assert.equal(reply.status, 502, `${id}: ${reply.body}`);
        assert.equal(errorCode(reply), 'TANDEM_ERR_UPSTREAM_PROTOCOL');
      } else {
        assert.equal(reply.status, 200, `${id}: ${reply.body}`);
        assert.deepEqual(JSON.parse(reply.body), { id }, `${id} got someone else's answer`);
      }
    });
  }
});

test('sequential requests over a pooled connection after an unsolicited extra response get their own answers', async () => {
  // One client connection, one request at a time: the extra response sits on the upstream
  // connection that the next request would reuse.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 10; i++) {
      const extra = await get(`/echo/extra-seq-${i}`, agent);
      assert.deepEqual(JSON.parse(extra.body), { id: `extra-seq-${i}` });
      const next = await get(`/echo/ok-seq-${i}`, agent);
      assert.equal(next.status, 200, next.body);
      assert.deepEqual(JSON.parse(next.body), { id: `ok-seq-${i}` });
    }
  } finally {
    agent.destroy();
  }
});

test('connection refused → 502 TANDEM_ERR_UPSTREAM_CONNECT', async () => {
  const reply = await get('/refused/x');
  assert.equal(reply.status, 502);
  assert.equal(errorCode(reply), 'TANDEM_ERR_UPSTREAM_CONNECT');
  assert.match(reply.body, new RegExp(`127\\.0\\.0\\.1:${deadPort}`));
  assert.ok(reply.headers['x-request-id']);
});

test('an upstream that never answers → 504 after the service timeout (500ms)', async () => {
  const reply = await get('/silent/x');
  assert.equal(reply.status, 504);
  assert.equal(errorCode(reply), 'TANDEM_ERR_UPSTREAM_TIMEOUT');
  // The wait was the service timeout (when exactly it ends is request-timing.test.ts's
  // business, on a fake clock).
  assert.match(reply.body, /no answer from silent within 500 ms over 1 attempts/);
});

test('an upstream that resets before any header → 502 TANDEM_ERR_UPSTREAM_RESET', async () => {
  const reply = await get('/cut/before-headers');
  assert.equal(reply.status, 502);
  assert.equal(errorCode(reply), 'TANDEM_ERR_UPSTREAM_RESET');
});

/**
 * Raw GET: everything the gateway sent, and whether the connection ended (before the guard).
 * Once body bytes came through, the cutter is told to cut its response (see `cuts`).
 */
function rawGet(path: string): Promise<{ data: string; ended: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(gw.port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => { socket.destroy(); resolve({ data, ended: false }); }, GUARD_MS);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      data += d;
      const head = data.indexOf('\r\n\r\n');
      if (head >= 0 && data.length > head + 4) {
        const name = path.split('/').pop()!;
        cuts.get(name)?.();
        cuts.delete(name);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => { clearTimeout(timer); resolve({ data, ended: true }); });
    // keep-alive on purpose: a clean end of the response would leave the connection open.
    socket.write(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`);
  });
}

for (const how of ['reset', 'fin']) {
  test(`an upstream that ${how === 'reset' ? 'resets' : 'closes'} mid-body (chunked) cuts the client connection: no terminating chunk`, async () => {
    const { data, ended } = await rawGet(`/cut/chunked-${how}`);
    assert.match(data, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(data, /\r\n\r\n5\r\nhello\r\n/, 'the part that arrived was passed on');
    assert.ok(ended, 'the client connection was left open');
    assert.ok(!data.endsWith('0\r\n\r\n'), 'the response was ended cleanly, as if complete');
  });

  test(`an upstream that ${how === 'reset' ? 'resets' : 'closes'} mid-body (content-length) cuts the client connection short of the length`, async () => {
    const { data, ended } = await rawGet(`/cut/length-${how}`);
    assert.match(data, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(data, /\r\ncontent-length: 100000\r\n/i);
    assert.ok(ended, 'the client connection was left open');
    const body = data.slice(data.indexOf('\r\n\r\n') + 4);
    assert.ok(body.length >= 1 && body.length < 100_000, `body of ${body.length} bytes`);
  });
}

/** GET read by a slow client: nothing read for the first 300 ms, then everything. */
function slowGet(path: string): Promise<{ status?: number; bytes: number; complete: boolean; error?: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port: gw.port, path, agent: false }, (res) => {
      let bytes = 0;
      res.pause();
      setTimeout(() => res.resume(), 300);
      res.on('data', (chunk: Buffer) => { bytes += chunk.length; });
      res.on('end', () => resolve({ status: res.statusCode, bytes, complete: res.complete }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: res.statusCode, bytes, complete: false, error: err.code ?? err.message }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ bytes: 0, complete: false, error: err.code ?? err.message }));
    req.end();
  });
}

// undici 7 pauses its parser when the client is slow; an endpoint FIN that lands while it is
// paused at the end of the received bytes used to throw an AssertionError that killed the
// gateway process (nodejs/undici#5360). Each case runs a few times: the timing varies.
for (const [what, path, whole] of [
  ['a close-delimited body (no length)', '/close/delimited', true],
  ['a Content-Length body with Connection: close', '/close/length', true],
  ['a Connection: close body cut off halfway', '/close/truncated', false],
] as const) {
  test(`a slow client and ${what}: the gateway survives${whole ? ' and delivers it whole' : ' and cuts the client'}`, async () => {
    for (let i = 0; i < 3; i++) {
      const out = await slowGet(path);
      assert.equal(gw.proc.exitCode, null, `the gateway died: ${gw.stderr()}`);
      assert.equal(out.status, 200, JSON.stringify(out));
      if (whole) {
        assert.equal(out.bytes, BIG, JSON.stringify(out));
        assert.ok(out.complete);
      } else {
        assert.ok(!out.complete && out.bytes < BIG, JSON.stringify(out));
      }
    }
  });
}

test('after every failure above the gateway still answers on the echo service', async () => {
  const reply = await get('/echo/final');
  assert.equal(reply.status, 200);
  assert.deepEqual(JSON.parse(reply.body), { id: 'final' });
});

test('a client that goes away mid-response aborts the upstream exchange (the endpoint sees its connection close)', async () => {
  const { startBackend } = await import('./helpers/backend.js');
  let upstreamClosed: (() => void) | undefined;
  const closed = new Promise<void>((resolve) => { upstreamClosed = resolve; });
  let started: (() => void) | undefined;
  const streaming = new Promise<void>((resolve) => { started = resolve; });
  const slow = await startBackend('slow', (req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const timer = setInterval(() => res.write(Buffer.alloc(1024, 1)), 20);
    started!();
    res.on('close', () => {
      clearInterval(timer);
      upstreamClosed!();
    });
  });
  const g = await startGateway({ drainTimeout: '1s', services: { slow: { endpoints: [slow.address] } }, routes: [{ prefix: '/', service: 'slow' }] });
  try {
    const client = connect(g.port, '127.0.0.1');
    client.on('error', () => {});
    client.write('GET /forever HTTP/1.1\r\nHost: t\r\n\r\n');
    await streaming;
    // Body bytes reached the client: the exchange is streaming end to end.
    await once(client, 'data');
    client.destroy();
    await guarded(closed, 'the endpoint\'s connection to close after the client left');
    const cluster = (await (await adminFetch(`${g.adminUrl}/admin/cluster`)).json()) as { gateway: { inflight: number } };
    assert.equal(cluster.gateway.inflight, 0);
  } finally {
    await g.stop();
    await slow.close();
  }
});
