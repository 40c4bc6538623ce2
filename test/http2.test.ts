// HTTP/2 from clients (issue 15): h2c with prior knowledge and HTTP/1.1 on one plaintext port,
// h2 by ALPN on a TLS listener; a real gateway process, real node:http2 clients and curl.
import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { rmSync } from 'node:fs';
import { startGateway, tempDir, type RunningGateway } from './helpers/gateway.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { makeServerPki } from './helpers/tls-pki.js';
import { guarded, waitFor } from './helpers/wait.js';

const run = promisify(execFile);
const pki = makeServerPki();
const cert = pki.issue('a', '/CN=a.test', 'subjectAltName=DNS:a.test,IP:127.0.0.1');
after(() => pki.remove());

let gateways: RunningGateway[] = [];
let backends: Backend[] = [];
let dirs: string[] = [];
afterEach(async () => {
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  await Promise.all(backends.map((x) => x.close()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  gateways = [];
  backends = [];
  dirs = [];
});

/** A backend that echoes what it was sent, and holds requests to /hold until `release`. */
async function echoBackend(): Promise<{ backend: Backend; release: () => void }> {
  const held: Array<() => void> = [];
  const backend = await startBackend('echo', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-answer': 'yes', connection: 'keep-alive', 'keep-alive': 'timeout=30' });
        res.end(JSON.stringify({ version: req.httpVersion, method: req.method, url: req.url, body: Buffer.concat(chunks).toString(), rawHeaders: req.rawHeaders }));
      };
      if (req.url === '/hold') held.push(answer);
      else answer();
    });
  });
  backends.push(backend);
  return { backend, release: () => { for (const a of held.splice(0)) a(); } };
}

async function gateway(backend: Backend, tls: boolean): Promise<{ gw: RunningGateway; port: number }> {
  const dir = tempDir();
  dirs.push(dir);
  const gw = await startGateway({
    listen: [{ address: '127.0.0.1:0' }, ...(tls ? [{ address: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key } }] : [])],
    services: { shop: { endpoints: [backend.address], healthCheck: false } },
    routes: [{ prefix: '/shop', service: 'shop' }],
  });
  gateways.push(gw);
  const listening = gw.logs.find((l) => l.msg === 'listening')!;
  const urls = listening.listeners as string[];
  return { gw, port: Number(new URL(urls[tls ? 1 : 0]!).port) };
}

interface H2Answer { headers: IncomingHttpHeaders; body: string }

function h2request(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let got: IncomingHttpHeaders = {};
    let text = '';
    stream.on('response', (h) => { got = h; });
    stream.setEncoding('utf8').on('data', (d: string) => { text += d; });
    stream.on('end', () => resolve({ headers: got, body: text }));
    stream.on('error', reject);
    if (body !== undefined) {
      // Two DATA frames and no content-length: the body's end is the stream's.
      stream.write(body.slice(0, 3));
      stream.end(body.slice(3));
    }
  });
}

function h2c(port: number): ClientHttp2Session {
  const session = connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  return session;
}

function pairsOf(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
  return out;
}

test('h2c with prior knowledge and HTTP/1.1 on one plaintext port; pseudo-headers become a request line and Host', async () => {
  const { backend, release } = await echoBackend();
  const { gw, port } = await gateway(backend, false);
  const session = h2c(port);
  const post = await h2request(session, {
    ':method': 'POST', ':path': '/shop/x?y=1', ':authority': 'shop.test:8443', cookie: ['a=1', 'b=2'], te: 'trailers', 'x-custom': 'kept',
  }, 'hello h2');
  assert.equal(post.headers[':status'], 200);
  // The endpoint's hop-by-hop response headers do not cross (HTTP/2 forbids them).
  assert.equal(post.headers.connection, undefined);
  assert.equal(post.headers['keep-alive'], undefined);
  assert.equal(post.headers['x-answer'], 'yes');
  const seen = JSON.parse(post.body) as { version: string; method: string; url: string; body: string; rawHeaders: string[] };
  assert.equal(seen.version, '1.1');
  assert.equal(seen.method, 'POST');
  assert.equal(seen.url, '/shop/x?y=1');
  assert.equal(seen.body, 'hello h2');
  const headers = pairsOf(seen.rawHeaders);
  assert.ok(!headers.some(([n]) => n.startsWith(':')), 'no pseudo-header is forwarded');
  assert.deepEqual(headers.filter(([n]) => n === 'host'), [['host', 'shop.test:8443']]);
  assert.deepEqual(headers.filter(([n]) => n === 'cookie'), [['cookie', 'a=1; b=2']]);
  assert.deepEqual(headers.filter(([n]) => n === 'te'), [['te', 'trailers']]);
  assert.deepEqual(headers.filter(([n]) => n === 'x-forwarded-host'), [['x-forwarded-host', 'shop.test:8443']]);
  assert.ok(headers.some(([n, v]) => n === 'x-custom' && v === 'kept'));

  // Several streams at once on the one connection, one of them held by the endpoint.
  const held = h2request(session, { ':method': 'GET', ':path': '/shop/hold', ':authority': 'a' });
  const quick = await Promise.all([1, 2, 3].map((i) => h2request(session, { ':method': 'GET', ':path': `/shop/q${i}`, ':authority': 'a' })));
  assert.deepEqual(quick.map((q) => (JSON.parse(q.body) as { url: string }).url), ['/shop/q1', '/shop/q2', '/shop/q3']);
  // A request the gateway refuses ends its stream only: the connection carries the next one.
  const none = await h2request(session, { ':method': 'GET', ':path': '/nowhere', ':authority': 'a' });
  assert.equal(none.headers[':status'], 404);
  assert.match(none.body, /TANDEM_ERR_NO_ROUTE/);
  const bad = await h2request(session, { ':method': 'GET', ':path': '/shop/../../etc', ':authority': 'a' });
  assert.equal(bad.headers[':status'], 400);
  // A header list over limits.maxHeaderSize fails on that stream only (Node answers 431, or
  // nghttp2 refuses the stream when the list is far over), and never reaches the endpoint.
  const big = await h2request(session, { ':method': 'GET', ':path': '/shop/big', ':authority': 'a', 'x-big': 'a'.repeat(100_000) }).catch((err: NodeJS.ErrnoException) => err);
  assert.ok(big instanceof Error ? /REFUSED_STREAM/.test(big.message) : Number(big.headers[':status']) === 431, String(big instanceof Error ? big.message : big.headers[':status']));
  assert.ok(!backend.seen.some((x) => x.url === '/shop/big'));
  const again = await h2request(session, { ':method': 'GET', ':path': '/shop/after', ':authority': 'a' });
  assert.equal(again.headers[':status'], 200);
  release();
  assert.equal((await held).headers[':status'], 200);
  session.close();

  // HTTP/1.1 on the same port, kept alive as before.
  const one = await fetch(`http://127.0.0.1:${port}/shop/one`, { method: 'POST', body: 'b1' });
  assert.equal(one.status, 200);
  assert.equal((await one.json() as { body: string }).body, 'b1');
  assert.equal(await gw.stop('SIGTERM'), 0);
});

test('a gRPC-typed request to a plain HTTP service takes the core-API path and is answered as any HTTP/2 request', async () => {
  // content-type application/grpc sends the stream past Node's compatibility API
  // (gateway/grpc-stream.ts); the service here speaks HTTP/1.1, so the answer is an HTTP one.
  const { backend, release } = await echoBackend();
  const { gw, port } = await gateway(backend, false);
  const session = h2c(port);
  const headers = { ':method': 'POST', ':path': '/shop/call', ':authority': 'shop.test', 'content-type': 'application/grpc', te: 'trailers', cookie: ['a=1', 'b=2'] };
  const call = await h2request(session, headers, 'grpc-ish body');
  assert.equal(call.headers[':status'], 200);
  assert.equal(call.headers['x-answer'], 'yes');
  // The endpoint's connection-specific headers are left out, as the compatibility API does.
  assert.equal(call.headers.connection, undefined);
  assert.equal(call.headers['keep-alive'], undefined);
  const seen = JSON.parse(call.body) as { url: string; body: string; rawHeaders: string[] };
  assert.equal(seen.url, '/shop/call');
  assert.equal(seen.body, 'grpc-ish body');
  const lines = pairsOf(seen.rawHeaders);
  assert.deepEqual(lines.filter(([n]) => n === 'host'), [['host', 'shop.test']]);
  assert.deepEqual(lines.filter(([n]) => n === 'cookie'), [['cookie', 'a=1; b=2']]);
  // The same with Expect: 100-continue goes through the compatibility API (which answers it).
  const expecting = await h2request(session, { ...headers, expect: '100-continue' }, 'with expect');
  assert.equal((JSON.parse(expecting.body) as { body: string }).body, 'with expect');
  // No route: the gateway answers in gRPC's terms, Trailers-Only UNIMPLEMENTED, on this path too.
  const none = await h2request(session, { ...headers, ':path': '/nowhere' }, 'x');
  assert.equal(none.headers[':status'], 200);
  assert.equal(none.headers['grpc-status'], '12');
  // A client that resets its call with an error code (RST_STREAM INTERNAL_ERROR) while the
  // endpoint holds it: the stream errors at the gateway, which goes on serving.
  const held = session.request({ ...headers, ':path': '/shop/hold' });
  held.on('error', () => {});
  held.end('reset me');
  await waitFor('the endpoint holds the call', () => backend.seen.some((x) => x.url === '/shop/hold'));
  held.close(constants.NGHTTP2_INTERNAL_ERROR);
  const after = await h2request(session, headers, 'after the reset');
  assert.equal((JSON.parse(after.body) as { body: string }).body, 'after the reset');
  // A request the endpoint cannot take: the HTTP error the gateway sends, its stream only.
  release();
  await backend.close();
  const down = await h2request(session, headers, 'x');
  assert.equal(down.headers[':status'], 502);
  assert.match(down.body, /TANDEM_ERR_UPSTREAM/);
  session.close();
  assert.equal(await gw.stop('SIGTERM'), 0);
});

test('TLS: ALPN h2 through node:http2 and curl --http2, HTTP/1.1 over TLS still; X-Forwarded-Proto https', async () => {
  const { backend } = await echoBackend();
  const { gw, port } = await gateway(backend, true);
  const session = connect(`https://127.0.0.1:${port}`, { ca: pki.ca, servername: 'a.test' });
  session.on('error', () => {});
  const answer = await h2request(session, { ':method': 'GET', ':path': '/shop/tls', ':authority': 'a.test' });
  assert.equal((session.socket as unknown as { alpnProtocol: string }).alpnProtocol, 'h2');
  assert.equal(answer.headers[':status'], 200);
  const headers = pairsOf((JSON.parse(answer.body) as { rawHeaders: string[] }).rawHeaders);
  assert.deepEqual(headers.filter(([n]) => n === 'x-forwarded-proto'), [['x-forwarded-proto', 'https']]);
  session.close();

  const ca = `${pki.dir}/ca.pem`;
  // The backend runs in this process: curl runs beside it, not blocking it.
  const curl = async (...args: string[]) => (await run('curl', ['-s', '--cacert', ca, '--resolve', `a.test:${port}:127.0.0.1`, '-w', '\n%{http_version} %{http_code}', ...args])).stdout;
  assert.match(await curl('--http2', '-d', 'curl body', `https://a.test:${port}/shop/c`), /"body":"curl body"[\s\S]*\n2 200$/);
  assert.match(await curl('--http1.1', `https://a.test:${port}/shop/c`), /\n1\.1 200$/);
  // h2c with prior knowledge from curl on the plaintext listener.
  const plain = Number(new URL((gw.logs.find((l) => l.msg === 'listening')!.listeners as string[])[0]!).port);
  assert.match(await curl('--http2-prior-knowledge', `http://127.0.0.1:${plain}/shop/p`), /\n2 200$/);
  assert.equal(await gw.stop('SIGTERM'), 0);
});

test('a client that resets its HTTP/2 stream while the endpoint holds the request: the gateway gives up the endpoint\'s request too', async () => {
  let endpointGone!: () => void;
  const gone = new Promise<void>((resolve) => { endpointGone = resolve; });
  let arrived!: () => void;
  const atEndpoint = new Promise<void>((resolve) => { arrived = resolve; });
  const backend = await startBackend('held', (req, res) => {
    req.resume();
    res.on('close', () => { if (!res.writableEnded) endpointGone(); });
    arrived(); // never answered
  });
  backends.push(backend);
  const { port } = await gateway(backend, false);
  const session = h2c(port);
  try {
    const stream = session.request({ ':method': 'GET', ':path': '/shop/held', ':authority': 'a' });
    stream.on('error', () => {});
    await atEndpoint;
    stream.close(constants.NGHTTP2_CANCEL);
    await guarded(gone, 'the endpoint\'s request to be given up');
  } finally {
    session.destroy();
  }
});

test('SIGTERM: an HTTP/2 connection gets a GOAWAY, its request under way finishes, the gateway exits 0', async () => {
  const { backend, release } = await echoBackend();
  const { gw, port } = await gateway(backend, false);
  const session = h2c(port);
  const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
  const held = h2request(session, { ':method': 'GET', ':path': '/shop/hold', ':authority': 'a' });
  await waitFor('the held request at the endpoint', () => backend.seen.some((s) => s.url === '/shop/hold') || undefined);
  gw.proc.kill('SIGTERM');
  assert.equal(await goaway, constants.NGHTTP2_NO_ERROR);
  release();
  assert.equal((await held).headers[':status'], 200);
  assert.equal(await gw.exited, 0);
});

test('HTTP/2: a large body each way streams through (flow control both sides)', async () => {
  const size = 4 * 1024 * 1024;
  const backend = await startBackend('big', (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => { n += c.length; });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-received': String(n) });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let left = size;
      const pump = () => {
        while (left > 0) {
          left -= chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
  });
  backends.push(backend);
  const { gw, port } = await gateway(backend, false);
  const session = h2c(port);
  const answer = await new Promise<{ received: string; bytes: number }>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/shop/big', ':authority': 'a' });
    let received = '';
    let bytes = 0;
    stream.on('response', (h) => { received = String(h['x-received']); });
    stream.on('data', (c: Buffer) => { bytes += c.length; });
    stream.on('end', () => resolve({ received, bytes }));
    stream.on('error', reject);
    stream.end(Buffer.alloc(size, 1));
  });
  assert.deepEqual(answer, { received: String(size), bytes: size });
  session.close();
  assert.equal(await gw.stop('SIGTERM'), 0);
});
