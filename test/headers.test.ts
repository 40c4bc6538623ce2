import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { eachRequest, startBackend, startRawBackend, type Backend } from './helpers/backend.js';
import { GUARD_MS, waitFor } from './helpers/wait.js';

/**
 * Header hygiene through the real gateway process. Requests are written byte for byte on raw
 * sockets (fetch would drop or rewrite hop-by-hop headers before they ever reached the
 * gateway); the backend records the raw header list it received.
 */

type RawBackend = Awaited<ReturnType<typeof startRawBackend>>;

let backend: Backend;
let rawBackend: RawBackend;
let gw: RunningGateway;
const gateways: RunningGateway[] = [];

/** The exact response the raw backend sends: hop-by-hop headers of every kind, chunked body. */
const RAW_RESPONSE = [
  'HTTP/1.1 200 OK',
  'Content-Type: text/plain',
  'Connection: keep-alive, X-Hop-Resp',
  'Connection: X-Hop-Resp-2',
  'Keep-Alive: timeout=5, max=100',
  'X-Hop-Resp: must-go',
  'X-Hop-Resp-2: must-go',
  'Proxy-Connection: keep-alive',
  'Proxy-Authenticate: Basic realm="x"',
  'Trailer: X-Checksum',
  'Upgrade: h2c',
  'Transfer-Encoding: chunked',
  'X-Keep-Resp: stays',
  '',
  '5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
].join('\r\n');

before(async () => {
  backend = await startBackend('hdr');
  rawBackend = await startRawBackend((socket) => eachRequest(socket, () => socket.write(RAW_RESPONSE, 'latin1')));
  gw = await startGateway({
    services: { shop: { endpoints: [backend.address] }, raw: { endpoints: [rawBackend.address] } },
    routes: [{ prefix: '/', service: 'shop' }, { prefix: '/raw', service: 'raw' }],
  });
});

after(async () => {
  await Promise.all([gw, ...gateways].map((g) => g.stop()));
  await backend.close();
  await rawBackend.close();
});

interface RawResponse { status: number; headers: Array<[string, string]>; body: string }

/** Writes `lines` (a request head, CRLF-joined, plus an empty line) and reads until the gateway closes. */
function rawRequest(port: number, lines: string[], timeoutMs = GUARD_MS): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => { data += d; });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${timeoutMs} ms; got ${JSON.stringify(data)}`));
    }, timeoutMs);
    socket.on('error', (err) => { clearTimeout(timer); reject(err); });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(data));
      } catch (err) {
        reject(err as Error);
      }
    });
    socket.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  });
}

function parseResponse(text: string): RawResponse {
  const split = text.indexOf('\r\n\r\n');
  assert.ok(split > 0, `not an HTTP response: ${JSON.stringify(text)}`);
  const [statusLine, ...headerLines] = text.slice(0, split).split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine!)?.[1]);
  const headers = headerLines.map((l): [string, string] => {
    const colon = l.indexOf(':');
    return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
  });
  let body = text.slice(split + 4);
  if (headers.some(([k, v]) => k === 'transfer-encoding' && v === 'chunked')) body = dechunk(body);
  return { status, headers, body };
}

function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, eol), 16);
    assert.ok(Number.isInteger(size), `bad chunk size in ${JSON.stringify(text)}`);
    if (size === 0) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** All values of a header (lower-case name) in a raw [name, value, …] list. */
function valuesOf(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

function lastSeen(url: string): { rawHeaders: string[] } {
  const hit = backend.seen.filter((s) => s.url === url).at(-1);
  assert.ok(hit, `the backend never saw ${url}`);
  return hit;
}

test('request: hop-by-hop headers and those named in Connection are removed, the rest pass', async () => {
  const res = await rawRequest(gw.port, [
    'GET /hop HTTP/1.1',
    'Host: shop.test',
    'Connection: close, X-Custom-Hop',
    'Connection: X-Second-Hop',
    'Keep-Alive: timeout=5',
    'X-Custom-Hop: secret',
    'X-Second-Hop: secret',
    'Proxy-Connection: keep-alive',
    'Proxy-Authorization: Basic dXNlcjpwYXNz',
    'TE: gzip',
    'Trailer: X-Checksum',
    'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    'X-Keep: yes',
    'Accept: text/plain',
  ]);
  assert.equal(res.status, 200);
  const raw = lastSeen('/hop').rawHeaders;
  for (const name of ['connection', 'keep-alive', 'x-custom-hop', 'x-second-hop', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'upgrade', 'http2-settings']) {
    // undici adds its own "connection: keep-alive" for the pooled upstream connection; only the
    // client's value may not arrive.
    if (name === 'connection') {
      assert.ok(valuesOf(raw, name).every((v) => v.toLowerCase() === 'keep-alive'), `client Connection leaked: ${JSON.stringify(raw)}`);
      continue;
    }
    assert.deepEqual(valuesOf(raw, name), [], `${name} reached the backend: ${JSON.stringify(raw)}`);
  }
  assert.deepEqual(valuesOf(raw, 'x-keep'), ['yes']);
  assert.deepEqual(valuesOf(raw, 'accept'), ['text/plain']);
  assert.deepEqual(valuesOf(raw, 'host'), ['shop.test']);
});

test('request: "TE: trailers" is the one TE value that is forwarded', async () => {
  await rawRequest(gw.port, ['GET /te HTTP/1.1', 'Host: shop.test', 'Connection: close', 'TE: trailers']);
  assert.deepEqual(valuesOf(lastSeen('/te').rawHeaders, 'te'), ['trailers']);
});

test('request: Connection cannot strip the gateway\'s own forwarding headers or the request id', async () => {
  await rawRequest(gw.port, ['GET /conn-strip HTTP/1.1', 'Host: shop.test', 'Connection: close, X-Forwarded-For, X-Request-Id, Host', 'X-Request-Id: keep-me']);
  const raw = lastSeen('/conn-strip').rawHeaders;
  assert.deepEqual(valuesOf(raw, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(valuesOf(raw, 'x-request-id'), ['keep-me']);
  assert.deepEqual(valuesOf(raw, 'host'), ['shop.test']);
});

test('response: hop-by-hop headers and those named in the upstream\'s Connection are removed', async () => {
  const res = await rawRequest(gw.port, ['GET /raw/x HTTP/1.1', 'Host: shop.test', 'Connection: close']);
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello world');
  const names = res.headers.map(([k]) => k);
  for (const name of ['keep-alive', 'x-hop-resp', 'x-hop-resp-2', 'proxy-connection', 'proxy-authenticate', 'trailer', 'upgrade']) {
    assert.ok(!names.includes(name), `${name} reached the client: ${JSON.stringify(res.headers)}`);
  }
  // The gateway's own framing and connection handling only.
  const connection = res.headers.filter(([k]) => k === 'connection').map(([, v]) => v.toLowerCase());
  assert.deepEqual(connection, ['close']);
  assert.ok(res.headers.filter(([k]) => k === 'transfer-encoding').every(([, v]) => v === 'chunked'));
  assert.deepEqual(res.headers.filter(([k]) => k === 'x-keep-resp'), [['x-keep-resp', 'stays']]);
  assert.deepEqual(res.headers.filter(([k]) => k === 'content-type'), [['content-type', 'text/plain']]);
});

test('untrusted client: X-Forwarded-* are replaced, Forwarded and X-Real-IP dropped', async () => {
  await rawRequest(gw.port, [
    'GET /untrusted HTTP/1.1',
    'Host: shop.test:8080',
    'Connection: close',
    'X-Forwarded-For: 6.6.6.6',
    'X-Forwarded-For: 7.7.7.7',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Host: evil.test',
    'Forwarded: for=6.6.6.6;proto=https;host=evil.test',
    'X-Real-IP: 6.6.6.6',
  ]);
  const raw = lastSeen('/untrusted').rawHeaders;
  assert.deepEqual(valuesOf(raw, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(valuesOf(raw, 'x-forwarded-proto'), ['http']);
  assert.deepEqual(valuesOf(raw, 'x-forwarded-host'), ['shop.test:8080']);
  assert.deepEqual(valuesOf(raw, 'forwarded'), []);
  assert.deepEqual(valuesOf(raw, 'x-real-ip'), []);
});

test('no client forwarding headers: the gateway sets X-Forwarded-For/-Proto/-Host', async () => {
  await rawRequest(gw.port, ['GET /plain HTTP/1.1', 'Host: shop.test', 'Connection: close']);
  const raw = lastSeen('/plain').rawHeaders;
  assert.deepEqual(valuesOf(raw, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(valuesOf(raw, 'x-forwarded-proto'), ['http']);
  assert.deepEqual(valuesOf(raw, 'x-forwarded-host'), ['shop.test']);
});

for (const trusted of [['127.0.0.1'], ['10.0.0.0/8', '127.0.0.0/8']]) {
  test(`trusted proxy ${JSON.stringify(trusted)}: X-Forwarded-For is appended to, proto, host and Forwarded kept`, async () => {
    const g = await startGateway({ trustedProxies: trusted, services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] });
    gateways.push(g);
    const url = `/trusted-${trusted.length}`;
    await rawRequest(g.port, [
      `GET ${url} HTTP/1.1`,
      'Host: internal.test',
      'Connection: close',
      'X-Forwarded-For: 203.0.113.7',
      'X-Forwarded-For: 198.51.100.1',
      'X-Forwarded-Proto: https',
      'X-Forwarded-Host: public.example.com',
      'Forwarded: for=203.0.113.7;proto=https',
      'X-Real-IP: 203.0.113.7',
    ]);
    const raw = lastSeen(url).rawHeaders;
    assert.deepEqual(valuesOf(raw, 'x-forwarded-for'), ['203.0.113.7, 198.51.100.1, 127.0.0.1']);
    assert.deepEqual(valuesOf(raw, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(valuesOf(raw, 'x-forwarded-host'), ['public.example.com']);
    assert.deepEqual(valuesOf(raw, 'forwarded'), ['for=203.0.113.7;proto=https']);
    assert.deepEqual(valuesOf(raw, 'x-real-ip'), ['203.0.113.7']);
  });
}

test('a trusted-proxy list that does not include the peer does not make it trusted', async () => {
  const g = await startGateway({ trustedProxies: ['10.0.0.0/8', '127.0.0.2'], services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] });
  gateways.push(g);
  await rawRequest(g.port, ['GET /not-trusted HTTP/1.1', 'Host: internal.test', 'Connection: close', 'X-Forwarded-For: 203.0.113.7', 'X-Forwarded-Proto: https', 'Forwarded: for=203.0.113.7']);
  const raw = lastSeen('/not-trusted').rawHeaders;
  assert.deepEqual(valuesOf(raw, 'x-forwarded-for'), ['127.0.0.1']);
  assert.deepEqual(valuesOf(raw, 'x-forwarded-proto'), ['http']);
  assert.deepEqual(valuesOf(raw, 'forwarded'), []);
});

test('x-request-id: added when absent (unique per request), kept when present', async () => {
  await rawRequest(gw.port, ['GET /rid-1 HTTP/1.1', 'Host: shop.test', 'Connection: close']);
  await rawRequest(gw.port, ['GET /rid-2 HTTP/1.1', 'Host: shop.test', 'Connection: close']);
  await rawRequest(gw.port, ['GET /rid-3 HTTP/1.1', 'Host: shop.test', 'Connection: close', 'X-Request-Id: client-chosen-42']);
  const first = valuesOf(lastSeen('/rid-1').rawHeaders, 'x-request-id');
  const second = valuesOf(lastSeen('/rid-2').rawHeaders, 'x-request-id');
  assert.equal(first.length, 1);
  assert.equal(second.length, 1);
  assert.match(first[0]!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.notEqual(first[0], second[0]);
  assert.deepEqual(valuesOf(lastSeen('/rid-3').rawHeaders, 'x-request-id'), ['client-chosen-42']);
});

test('the generated request id is the one on a gateway error answer', async () => {
  const g = await startGateway({ services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/only', service: 'shop' }] });
  gateways.push(g);
  const res = await rawRequest(g.port, ['GET /elsewhere HTTP/1.1', 'Host: shop.test', 'Connection: close', 'X-Request-Id: trace-me']);
  assert.equal(res.status, 404);
  assert.deepEqual(res.headers.filter(([k]) => k === 'x-request-id'), [['x-request-id', 'trace-me']]);
  assert.equal((JSON.parse(res.body) as { error: { requestId: string } }).error.requestId, 'trace-me');
});

test('a reload that trusts the peer takes effect on an open keep-alive connection too', async () => {
  const config = (trustedProxies: string[]) => ({ listen: '127.0.0.1:0', admin: '127.0.0.1:0', trustedProxies, services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] });
  const g = await startGateway(config([]));
  gateways.push(g);
  const socket = connect(g.port, '127.0.0.1');
  let data = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => { data += d; });
  socket.on('error', () => {});
  try {
    const ask = async (url: string) => {
      const before = backend.seen.length;
      socket.write(`GET ${url} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n`);
      await waitFor('an answer on the keep-alive connection', () => backend.seen.length > before && data.endsWith('\r\n0\r\n\r\n'));
      data = '';
      return valuesOf(lastSeen(url).rawHeaders, 'x-forwarded-for');
    };
    assert.deepEqual(await ask('/reload-trust-1'), ['127.0.0.1']);
    writeFileSync(g.configFile, JSON.stringify(config(['127.0.0.1'])));
    g.proc.kill('SIGHUP');
    await g.waitForLog((l) => l.msg === 'reloaded');
    assert.deepEqual(await ask('/reload-trust-2'), ['203.0.113.7, 127.0.0.1']);
  } finally {
    socket.destroy();
  }
});
