import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { clusterService, startGateway, type RunningGateway } from './helpers/gateway.js';
import { shopConfig, startRawBackend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { Attempt } from '../src/upstream/attempt.js';
import { isStaleConnection } from '../src/upstream/classify.js';
import { Endpoint } from '../src/upstream/endpoint.js';
import type { UpstreamRequest } from '../src/upstream/types.js';
import type { TandemError } from '../src/core/errors.js';

/**
 * tandem issue 12, part 4: an endpoint that closes idle keep-alive connections without saying
 * so (nginx's keepalive_timeout) must not cost a POST a 502 when the gateway reuses one at that
 * moment — and a POST the endpoint may have read is still never sent twice. The race is made
 * deterministic: a raw endpoint acts on the n-th request of a connection exactly as the racing
 * endpoint does (reset with the request unread, or read it and close).
 */

const { defer } = cleanupAfterAll();

type Act = 'answer' | 'reset-unread' | 'close-after-read';

interface Upstream {
  address: string;
  /** Request ids (the `id` query parameter) the endpoint read whole, in order. */
  read: string[];
  /** Connections accepted. */
  connections: () => number;
}

/**
 * An HTTP/1.1 endpoint on raw sockets: `act(n)` says what it does with the n-th request (1-based)
 * of a connection. 'reset-unread' resets the connection as soon as the request's first bytes
 * arrive, without reading them — what a peer whose socket is closed, or that closes one with data
 * unread, does; 'close-after-read' reads the request whole, then closes without an answer.
 * Answers carry no `Keep-Alive: timeout=` hint, as nginx's don't.
 */
async function rawUpstream(act: (n: number) => Act): Promise<Upstream> {
  const read: string[] = [];
  let connections = 0;
  const server = await startRawBackend((socket) => {
    connections++;
    serveRequests(socket, act, read);
  });
  defer(() => server.close());
  return { address: server.address, read, connections: () => connections };
}

function serveRequests(socket: Socket, act: (n: number) => Act, read: string[]): void {
  let buffered = Buffer.alloc(0);
  let n = 0;
  let started = false;
  socket.on('data', (chunk: Buffer) => {
    if (!started) {
      started = true;
      if (act(n + 1) === 'reset-unread') {
        socket.resetAndDestroy();
        return;
      }
    }
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffered.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffered.length < end + 4 + length) return;
      buffered = buffered.subarray(end + 4 + length);
      n++;
      started = buffered.length > 0;
      read.push(new URL(head.split(' ')[1] ?? '/', 'http://x').searchParams.get('id') ?? '');
      if (act(n) === 'close-after-read') {
        socket.end();
        return;
      }
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok');
    }
  });
}

async function gateway(endpoints: string[], service: Record<string, unknown> = {}): Promise<RunningGateway> {
  const gw = await startGateway(shopConfig(endpoints, { healthCheck: false, ...service }));
  defer(() => gw.stop());
  return gw;
}

async function post(gw: RunningGateway, id: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${gw.url}/orders?id=${id}`, { method: 'POST', body: `order ${id}`, headers: { 'content-type': 'text/plain' } });
  return { status: res.status, body: await res.text() };
}

interface Cluster { retries: Record<string, number>; endpoints: Array<{ id: string; responses?: Record<string, number> }> }

test('a POST on a reused connection the endpoint resets unread is sent again on a new connection: 200, read once', async () => {
  // Every connection serves one request, then resets the next unread: as an endpoint that closed
  // the connection (idle timeout) just as the gateway reused it.
  const up = await rawUpstream((n) => (n === 1 ? 'answer' : 'reset-unread'));
  const gw = await gateway([up.address]);
  assert.equal((await post(gw, 'a')).status, 200);
  const second = await post(gw, 'b');
  assert.deepEqual(second, { status: 200, body: 'ok' });
  assert.deepEqual(up.read, ['a', 'b']);
  assert.equal(up.connections(), 2);
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.equal(cluster.retries['stale-connection'], 1);
  assert.equal(cluster.retries.reset, 0);
});

test('with retry: false too (the request never reached the endpoint), and the endpoint is not charged a failure', async () => {
  const up = await rawUpstream((n) => (n === 1 ? 'answer' : 'reset-unread'));
  const gw = await gateway([up.address], { retry: false });
  // Without retries a body is streamed, not kept: only a request without one can go again (Go's
  // transport too resends only a body it can rewind).
  for (const id of ['a', 'b', 'c', 'd']) assert.equal((await fetch(`${gw.url}/orders?id=${id}`, { method: 'POST' })).status, 200, id);
  assert.deepEqual(up.read, ['a', 'b', 'c', 'd']);
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.equal(cluster.retries['stale-connection'], 3);
  // Not a failure of the endpoint: no 'error' outcome for outlier detection and the dashboard.
  assert.equal(cluster.endpoints[0]!.responses!.error, 0);
  const withBody = await post(gw, 'e');
  assert.equal(withBody.status, 502);
  assert.deepEqual(up.read, ['a', 'b', 'c', 'd']);
});

test('an endpoint that read the POST and then closed without answering: 502, the POST is not sent again', async () => {
  const up = await rawUpstream((n) => (n === 1 ? 'answer' : 'close-after-read'));
  const gw = await gateway([up.address]);
  assert.equal((await post(gw, 'a')).status, 200);
  const second = await post(gw, 'b');
  assert.equal(second.status, 502);
  assert.match(second.body, /TANDEM_ERR_UPSTREAM_RESET/);
  assert.deepEqual(up.read, ['a', 'b']);
  assert.equal(up.connections(), 1);
});

test('a reset on a connection used for the first time is not a stale connection: the POST is not sent again', async () => {
  // An endpoint that resets every new connection would otherwise be sent each POST twice.
  const up = await rawUpstream(() => 'reset-unread');
  const gw = await gateway([up.address]);
  const res = await post(gw, 'a');
  assert.equal(res.status, 502);
  assert.equal(up.connections(), 1);
  assert.equal((await clusterService<Cluster>(gw, 'shop')).retries['stale-connection'], 0);
});

/**
 * The nginx race itself, made deterministic at the level of one exchange: the endpoint closes
 * the idle connection (a FIN, nothing unread) after undici's last look at the idle socket and
 * before it writes the request — the endpoint's kernel then resets the connection for our data,
 * and undici reports "other side closed". undici 7 reuses an idle socket only in an Immediate
 * queued one event-loop turn after the dispatch (its check for a close already received); the
 * poll phase of that turn has read the socket by then. So: an Immediate queued at the dispatch
 * writes a byte on a helper connection, whose 'data' comes in the next poll phase — after the
 * socket was read, before undici's Immediate — and there the endpoint's socket is closed.
 */
async function exchangeRace(closeAt: 'before-write' | 'after-read'): Promise<{ error: TandemError | undefined; status: number; read: string[] }> {
  const read: string[] = [];
  const sockets: Socket[] = [];
  const server = await startRawBackend((socket) => {
    sockets.push(socket);
    serveRequests(socket, (n) => (n === 1 || closeAt === 'before-write' ? 'answer' : 'close-after-read'), read);
  });
  defer(() => server.close());
  const endpoint = new Endpoint({ host: '127.0.0.1', port: server.port, weight: 1 }, { maxConnections: 1, connectTimeoutMs: 5000, keepAliveTimeoutMs: 60_000, maxResponseHeaderSize: 16 * 1024 });
  defer(() => endpoint.pool.destroy());
  const send = (id: string) => new Promise<{ error?: TandemError; status: number }>((resolve) => {
    let status = 0;
    const request: UpstreamRequest = { method: 'POST', path: `/orders?id=${id}`, headers: ['content-type', 'text/plain'], body: Buffer.from(`order ${id}`), hashKey: undefined, bodyLimit: Infinity };
    Attempt.send(endpoint, request, {
      onStart() {},
      onHeaders: (code) => { status = code; return true; },
      onData: () => true,
      onComplete: () => resolve({ status }),
      onError: (error) => resolve({ error, status }),
    }, 5000);
  });
  const helper = await socketPair();
  helper.inbound.once('data', () => sockets[0]!.destroy());
  // The second request is dispatched right as the first completes (in the same turn), as a
  // proxy does under load: undici has not released the connection yet, and reuses it later.
  assert.equal((await send('a')).status, 200);
  if (closeAt === 'before-write') setImmediate(() => helper.outbound.write('x'));
  const second = await send('b');
  return { error: second.error, status: second.status, read };
}

/** Two ends of one loopback TCP connection. */
async function socketPair(): Promise<{ inbound: Socket; outbound: Socket }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const outbound = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [inbound] = await accepted;
  server.close();
  defer(async () => { outbound.destroy(); inbound.destroy(); });
  return { inbound, outbound };
}

test('the race: a FIN that lands between undici\'s idle check and its write, then the reset for our data: a stale connection', async () => {
  const { error, read } = await exchangeRace('before-write');
  assert.ok(error !== undefined, 'the exchange fails');
  assert.equal(error.code, 'TANDEM_ERR_UPSTREAM_RESET');
  assert.match(String((error.cause as Error).message), /other side closed/);
  assert.equal(isStaleConnection(error), true, error.message);
  assert.deepEqual(read, ['a']);
});

test('the same FIN after the endpoint read the request (no reset): not a stale connection', async () => {
  const { error, read } = await exchangeRace('after-read');
  assert.ok(error !== undefined, 'the exchange fails');
  assert.match(String((error.cause as Error).message), /other side closed/);
  assert.equal(isStaleConnection(error), false, error.message);
  assert.deepEqual(read, ['a', 'b']);
});

test('a connection that cannot be made leaves the ledger alone: the exchange fails with TANDEM_ERR_UPSTREAM_CONNECT', async () => {
  // undici calls the connector back with the error alone; the ledger must not take it for a socket.
  const closed = await startRawBackend(() => {});
  const port = closed.port;
  await closed.close();
  const endpoint = new Endpoint({ host: '127.0.0.1', port, weight: 1 }, { maxConnections: 1, connectTimeoutMs: 5000, keepAliveTimeoutMs: 60_000, maxResponseHeaderSize: 16 * 1024 });
  defer(() => endpoint.pool.destroy());
  const error = await new Promise<TandemError>((resolve, reject) => {
    const request: UpstreamRequest = { method: 'POST', path: '/', headers: [], body: Buffer.from('x'), hashKey: undefined, bodyLimit: Infinity };
    Attempt.send(endpoint, request, { onStart() {}, onHeaders: () => true, onData: () => true, onComplete: () => reject(new Error('answered')), onError: resolve }, 5000);
  });
  assert.equal(error.code, 'TANDEM_ERR_UPSTREAM_CONNECT');
});
