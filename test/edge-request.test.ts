import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { startGateway, clusterService, type RunningGateway } from './helpers/gateway.js';
import { startBackend, startRawBackend, type Backend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { rawExchange, responses, type RawOutcome } from './helpers/raw-client.js';

/**
 * The request edge of the public listener (issue 10, "Trust"): what a client sends that the
 * gateway must not forward as it came — two Host headers, more header lines than the limit, an
 * absolute-form target, paths that route one way and resolve another, Transfer-Encoding on
 * HTTP/1.0. Each request is written byte for byte on a raw socket against a real gateway
 * process; the backends are real HTTP servers that record every request they get.
 */

const { defer, track } = cleanupAfterAll();
let gw: RunningGateway;
const backends: Record<'root' | 'admin' | 'api' | 'other', Backend> = {} as never;
/** Upgrade requests the raw WebSocket backend got: their request lines. */
const upgrades: string[] = [];

before(async () => {
  for (const name of ['root', 'admin', 'api', 'other'] as const) {
    backends[name] = await startBackend(name);
    defer(() => backends[name].close());
  }
  const ws = await startRawBackend((socket) => {
    let head = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      head += d;
      if (!head.includes('\r\n\r\n')) return;
      upgrades.push(head.slice(0, head.indexOf('\r\n')));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    });
  });
  defer(() => ws.close());
  const service = (b: { address: string }) => ({ endpoints: [b.address], healthCheck: false });
  gw = track(await startGateway({
    services: { root: service(backends.root), admin: service(backends.admin), api: service(backends.api), other: service(backends.other), ws: service(ws) },
    routes: [
      { prefix: '/', service: 'root' },
      { prefix: '/admin', service: 'admin' },
      { prefix: '/api', service: 'api', stripPrefix: true },
      { prefix: '/ws', service: 'ws' },
      { prefix: '/', host: 'other', service: 'other' },
    ],
  }));
});

/** Requests the backends have seen, over all of them. */
function forwarded(): number {
  return Object.values(backends).reduce((n, b) => n + b.seen.length, 0) + upgrades.length;
}

/** One request on its own connection; asserts it was refused with `status`, closed, and not forwarded. */
async function assertRefused(request: string, status: number, code: string): Promise<RawOutcome> {
  const before = forwarded();
  const out = await rawExchange(gw.port, [request]);
  const what = JSON.stringify(request.slice(0, 80));
  assert.equal(out.status, status, `${what}: got ${JSON.stringify(out.data.slice(0, 300))}`);
  assert.match(out.data, new RegExp(`"code":"${code}"`), what);
  assert.match(out.data, /\r\nconnection: close\r\n/i, what);
  assert.equal(out.end, 'closed', `${what}: the gateway kept the connection open`);
  // A request forwarded by mistake would be at the backend by now: its answer came back before
  // the connection was closed, and nothing else is in flight.
  assert.equal(forwarded(), before, `${what} reached a backend`);
  return out;
}

/** Sends one request on its own connection (Connection: close added) and returns the backend's view. */
async function forward(requestLine: string, headers: string[], backend: Backend): Promise<Backend['seen'][number]> {
  const before = backend.seen.length;
  const out = await rawExchange(gw.port, [`${requestLine}\r\n${[...headers, 'Connection: close'].join('\r\n')}\r\n\r\n`]);
  assert.equal(out.status, 200, `${requestLine}: ${out.data.slice(0, 300)}`);
  assert.equal(backend.seen.length, before + 1, `${requestLine} did not reach ${backend.address}: ${responses(out.data)[0]?.body}`);
  return backend.seen.at(-1)!;
}

test('two Host headers: 400 and close, never forwarded, and the endpoint is not charged', async () => {
  // Before: undici refused the header list ("duplicate host header"), the gateway took that
  // for an upstream reset — 502, retried on every endpoint, each attempt a failure on its
  // books; twelve of them from one client ejected a healthy instance.
  for (let i = 0; i < 12; i++) await assertRefused('GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  await assertRefused('GET /x HTTP/1.1\r\nHost: t\r\nhost: t\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  const root = await clusterService<{ endpoints: Array<{ state: string; responses: Record<string, number> }> }>(gw, 'root');
  assert.equal(root.endpoints[0]!.state === 'ejected', false);
  assert.equal(root.endpoints[0]!.responses.error, 0);
  assert.equal(root.endpoints[0]!.responses['5xx'], 0);
});

test('an empty or invalid Host: 400 and close, never forwarded; valid forms still pass', async () => {
  for (const host of ['', 'user@t', 'u:p@t', 't/x', 't x', 't:80x', 't:99999', '[::1', '[nope]', 't"x', 't{x}', ':80']) {
    await assertRefused(`GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 400, 'TANDEM_ERR_BAD_REQUEST');
  }
  for (const host of ['t', 'T.example.com.', 't:8080', '127.0.0.1:1', '[::1]:8080']) {
    const seen = await forward('GET /x HTTP/1.1', [`Host: ${host}`], backends.root);
    assert.equal(seen.headers.host, host);
  }
});

test('more header lines than limits.maxHeaders (100): 431 and close, never a truncated request', async () => {
  // 3000 lines of 4 bytes stay under the 16 KiB size limit. Before: Node kept the first 2000,
  // Content-Length (sent after them) was lost, and the endpoint got a POST without its body.
  const many = Array.from({ length: 3000 }, () => 'a:\r\n').join('');
  await assertRefused(`POST /x HTTP/1.1\r\nHost: t\r\n${many}Content-Length: 5\r\n\r\nhello`, 431, 'TANDEM_ERR_HEADERS_TOO_LARGE');
  const over = Array.from({ length: 100 }, (_, i) => `X-H${i}: v\r\n`).join('');
  await assertRefused(`GET /x HTTP/1.1\r\nHost: t\r\n${over}\r\n`, 431, 'TANDEM_ERR_HEADERS_TOO_LARGE');
  // Exactly the limit (Host, Connection and 98 more) is forwarded whole.
  const seen = await forward('GET /x HTTP/1.1', ['Host: t', ...Array.from({ length: 98 }, (_, i) => `X-H${i}: v`)], backends.root);
  assert.equal(Object.keys(seen.headers).filter((k) => k.startsWith('x-h')).length, 98);
});

test('absolute-form target: routed and forwarded with the URL authority as Host and X-Forwarded-Host', async () => {
  // Before: routed by the URL's authority, forwarded with the client's Host header.
  let seen = await forward('GET http://other/x?y=1 HTTP/1.1', ['Host: t'], backends.other);
  assert.equal(seen.url, '/x?y=1');
  assert.equal(seen.headers.host, 'other');
  assert.equal(seen.headers['x-forwarded-host'], 'other');
  seen = await forward('GET HTTP://t:8080/admin/%2e/z HTTP/1.1', ['Host: other'], backends.admin);
  assert.equal(seen.url, '/admin/z');
  assert.equal(seen.headers.host, 't:8080');
  assert.equal(seen.headers['x-forwarded-host'], 't:8080');
  // HTTP/1.0 needs no Host: the URL's authority is sent as one.
  seen = await forward('GET http://other HTTP/1.0', [], backends.other);
  assert.equal(seen.url, '/');
  assert.equal(seen.headers.host, 'other');
  await assertRefused('GET http://u@other/x HTTP/1.1\r\nHost: t\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  await assertRefused('GET ftp://other/x HTTP/1.1\r\nHost: t\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
});

test('path normalization: dot segments, %2e, //, %-encoded unreserved route and forward as their normal form', async () => {
  // Before: every one of these went to the service of "/" with the path as sent.
  for (const path of ['/x/../admin', '/%2e/admin', '/a/%2E%2e/admin', '//admin', '/./admin', '/%61dmin', '/admin/.', '/admin/x/..']) {
    const seen = await forward(`GET ${path} HTTP/1.1`, ['Host: t'], backends.admin);
    assert.match(seen.url, /^\/admin\/?$/, path);
  }
  // stripPrefix strips from the normalized path: /api/../admin/p is the admin service's /admin/p.
  assert.equal((await forward('GET /api/../admin/p HTTP/1.1', ['Host: t'], backends.admin)).url, '/admin/p');
  assert.equal((await forward('GET /api/x/%2e%2e//y/./%7eme HTTP/1.1', ['Host: t'], backends.api)).url, '/y/~me');
  // Other escapes stay (upper-case hex), %2F is no separator, the query is untouched.
  assert.equal((await forward('GET /a%2f..%2fadmin?q=/../%2e&r=%zz HTTP/1.1', ['Host: t'], backends.root)).url, '/a%2F..%2Fadmin?q=/../%2e&r=%zz');
  // Climbing above the root and malformed escapes are refused.
  for (const path of ['/..', '/../admin', '/%2e%2e/admin', '/a/../../admin', '/a%zz', '/a%2', '/%', '/x#frag']) {
    await assertRefused(`GET ${path} HTTP/1.1\r\nHost: t\r\n\r\n`, 400, 'TANDEM_ERR_BAD_REQUEST');
  }
});

test('path normalization applies to WebSocket upgrades too', async () => {
  const upgrade = (path: string) => `GET ${path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
  // The tunnel stays open: the client closes it once the 101 is in.
  const out = await rawExchange(gw.port, [upgrade('/x/..//ws/%61?q=%2e'), async (socket) => {
    await new Promise((resolve) => socket.once('data', resolve));
    socket.destroy();
  }]);
  assert.equal(out.status, 101, out.data);
  assert.equal(upgrades.at(-1), 'GET /ws/a?q=%2e HTTP/1.1');
  const before = upgrades.length;
  const refused = await rawExchange(gw.port, [upgrade('/%2e%2e/ws')]);
  assert.equal(refused.status, 400);
  assert.match(refused.data, /"code":"TANDEM_ERR_BAD_REQUEST"/);
  assert.equal(refused.end, 'closed');
  assert.equal(upgrades.length, before);
});

test('HTTP/1.0 with Transfer-Encoding: 400 and close, never forwarded, nor what is pipelined behind it', async () => {
  // Before: served, and the connection kept open for the next request (RFC 9112 §6.1 says the
  // framing of such a message is faulty and the connection must close).
  const before = forwarded();
  const out = await rawExchange(gw.port, [
    'POST /x HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n',
  ]);
  assert.equal(out.status, 400, out.data);
  assert.match(out.data, /"code":"TANDEM_ERR_BAD_REQUEST"/);
  assert.equal(out.end, 'closed');
  assert.equal(responses(out.data).length, 1, 'one answer, then the connection closed');
  assert.equal(forwarded(), before);
  await assertRefused('POST /x HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
});

test('what Node\'s parser refuses gets the same JSON error with a code, and the connection closes', async () => {
  // Before: a bare "HTTP/1.1 400 Bad Request" status line, no code, no request id.
  await assertRefused('GET /x HTTP/1.1\r\nHost: t\r\nX-Bad: nul \x00 here\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  await assertRefused('POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  const out = await assertRefused(`GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`, 431, 'TANDEM_ERR_HEADERS_TOO_LARGE');
  assert.match(out.data, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
});

test('limits.maxHeaders changes on reload, for connections already open too', async () => {
  // The file's gateway, its limit lowered and restored: one gateway start less on a busy machine.
  const reload = async (maxHeaders: number) => {
    const config = JSON.parse(readFileSync(gw.configFile, 'utf8')) as { limits?: Record<string, unknown> };
    writeFileSync(gw.configFile, JSON.stringify({ ...config, limits: { ...config.limits, maxHeaders } }));
    const from = gw.logs.length;
    gw.proc.kill('SIGHUP');
    const outcome = await gw.waitForLog((l) => gw.logs.indexOf(l) >= from && (l.msg === 'reloaded' || /reload rejected/.test(String(l.msg))));
    assert.equal(outcome.msg, 'reloaded', JSON.stringify(outcome));
  };
  const twenty = `GET /x HTTP/1.1\r\nHost: t\r\n${Array.from({ length: 19 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`;
  try {
    const out = await rawExchange(gw.port, [
      twenty,
      async (socket) => {
        await once(socket, 'data');
        await reload(10);
      },
      twenty,
    ], 15_000);
    assert.deepEqual(responses(out.data).map((r) => r.status), [200, 431], JSON.stringify(out.data));
    assert.equal(out.end, 'closed');
  } finally {
    await reload(100);
  }
});

test('an HTTP/1.1 request without Host: 400 with a code, and close; HTTP/1.0 may omit it', async () => {
  await assertRefused('GET /x HTTP/1.1\r\nAccept: */*\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  await assertRefused('GET http://other/x HTTP/1.1\r\nAccept: */*\r\n\r\n', 400, 'TANDEM_ERR_BAD_REQUEST');
  const seen = await forward('GET /x HTTP/1.0', [], backends.root);
  // Forwarded as HTTP/1.1, which needs one: undici names the endpoint.
  assert.equal(seen.headers.host, backends.root.address);
});
