// TLS and HTTP/2 to upstreams (issue 15): https:// endpoints behind a real `tandem gateway`
// process and behind the service client, with certificates from throwaway CAs made by openssl;
// real https and http2 servers as endpoints.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createSecureServer, constants as h2, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { TLSSocket, type PeerCertificate } from 'node:tls';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse, Server as HttpServer } from 'node:http';
import { serve } from '../src/node/serve.js';
import { adminFetch, clusterService, startGateway, tempDir, type RunningGateway } from './helpers/gateway.js';
import { makeServerPki } from './helpers/tls-pki.js';
import { validateConfig } from '../src/config/validate.js';
import { ConfigError } from '../src/config/problems.js';
import { createClient } from '../src/client/client.js';
import { EmbeddedRegistry } from '../src/discovery/embedded.js';
import { tokenFor } from '../src/core/secret.js';
import { until } from './helpers/sdk.js';

const pki = makeServerPki();
const other = makeServerPki();
/**
 * Gateways are killed first, then everything else is undone (last first): a server's close waits
 * for its connections, which a live gateway would hold open.
 */
const gateways: RunningGateway[] = [];
const undo: Array<() => Promise<unknown>> = [];
const defer = (fn: () => Promise<unknown>): void => { undo.push(fn); };
after(async () => {
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  for (const fn of undo.reverse()) await fn().catch(() => {});
  pki.remove();
  other.remove();
});
const up = pki.issue('up', '/CN=localhost', 'subjectAltName=DNS:localhost,DNS:shop.internal,IP:127.0.0.1');
const client = pki.issue('client', '/CN=gateway-one', 'basicConstraints=CA:FALSE', 'clientAuth');
const client2 = pki.issue('client2', '/CN=gateway-two', 'basicConstraints=CA:FALSE', 'clientAuth');
const caFile = join(pki.dir, 'ca.pem');
const otherCaFile = join(other.dir, 'ca.pem');

/** What an upstream saw of one request. */
interface Seen { sni: string | false | null; version: string; clientCn: string | undefined; socket: object; url: string; method: string; body: string }

interface TlsUpstream { port: number; seen: Seen[]; sessions: () => number; close(): Promise<void> }

/** Reads what the request carried over TLS, then lets `answer` reply (default: 200 naming `name`). */
function recorder(name: string, seen: Seen[], answer?: (req: IncomingMessage, res: ServerResponse) => void) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket as TLSSocket;
    const peer: PeerCertificate | undefined = socket.getPeerCertificate?.();
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => { body += d; });
    req.on('end', () => {
      if (req.url === '/healthz') return void res.writeHead(200).end('ok');
      seen.push({ sni: socket.servername, version: req.httpVersion, clientCn: peer?.subject?.CN as string | undefined, socket, url: req.url!, method: req.method!, body });
      if (answer) return answer(req, res);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
      res.end(name);
    });
  };
}

/** An HTTPS endpoint with the test CA's certificate; `mtls` asks for (and requires) a client certificate from that CA. */
async function httpsUpstream(name: string, opts: { mtls?: boolean; answer?: (req: IncomingMessage, res: ServerResponse) => void } = {}): Promise<TlsUpstream> {
  const seen: Seen[] = [];
  let sessions = 0;
  const server: HttpsServer = createHttpsServer({
    cert: readFileSync(up.cert), key: readFileSync(up.key),
    ...(opts.mtls ? { ca: pki.ca, requestCert: true, rejectUnauthorized: true } : {}),
  }, recorder(name, seen, opts.answer));
  server.on('secureConnection', () => { sessions++; });
  server.on('tlsClientError', () => {});
  return listen(server, seen, () => sessions);
}

/**
 * An HTTP/2 (and HTTP/1.1) endpoint over TLS. `refuse` resets every stream with REFUSED_STREAM
 * before reading it. `goaway` answers the first stream of a connection, then meets the next one
 * with a GOAWAY whose last stream id is `below` it (not processed) or `at` it (taken: the
 * endpoint would process it, and the request is noted in `taken`).
 */
async function h2Upstream(name: string, opts: { refuse?: boolean; goaway?: 'below' | 'at'; taken?: string[]; h2only?: boolean } = {}): Promise<TlsUpstream> {
  const seen: Seen[] = [];
  let sessions = 0;
  const server: Http2SecureServer = createSecureServer({ cert: readFileSync(up.cert), key: readFileSync(up.key), allowHTTP1: opts.h2only !== true });
  const open = new Set<ServerHttp2Session>();
  server.on('session', (session) => {
    sessions++;
    open.add(session);
    session.once('close', () => open.delete(session));
  });
  const handled = new WeakSet<object>();
  server.on('stream', (stream, headers) => {
    if (headers[':path'] === '/healthz') return;
    stream.on('error', () => {});
    if (opts.refuse) {
      handled.add(stream);
      stream.close(h2.NGHTTP2_REFUSED_STREAM);
    } else if (opts.goaway !== undefined && stream.id !== undefined && stream.id > 1) {
      handled.add(stream);
      if (opts.goaway === 'at') opts.taken?.push(String(headers[':path']));
      stream.session?.goaway(h2.NGHTTP2_NO_ERROR, opts.goaway === 'below' ? stream.id - 2 : stream.id);
    }
  });
  server.on('request', (req, res) => {
    if (handled.has(req.stream)) return;
    recorder(name, seen)(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  });
  const upstream = await listen(server, seen, () => sessions);
  // Undone before the server's close (last first), which waits for its sessions.
  defer(async () => { for (const session of open) session.destroy(); });
  return upstream;
}

async function listen(server: HttpsServer | Http2SecureServer, seen: Seen[], sessions: () => number): Promise<TlsUpstream> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const close = async () => {
    (server as HttpsServer).closeAllConnections?.();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  defer(close);
  return { port, seen, sessions, close };
}

async function gateway(services: Record<string, unknown>, file?: string): Promise<RunningGateway> {
  const gw = await startGateway({ log: { level: 'debug' }, services, routes: [{ prefix: '/', service: 'shop' }] }, file === undefined ? {} : { file });
  gateways.push(gw);
  return gw;
}

async function get(gw: RunningGateway, path = '/', init: RequestInit = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(`${gw.url}${path}`, init);
  return { status: res.status, body: await res.text() };
}

async function reload(gw: RunningGateway): Promise<Record<string, unknown>> {
  const from = gw.logs.length;
  gw.proc.kill('SIGHUP');
  return gw.waitForLog((l) => gw.logs.indexOf(l) >= from && (l.msg === 'reloaded' || /reload rejected/.test(String(l.msg))));
}

interface Cluster { retries: Record<string, number>; endpoints: Array<{ id: string; state: string; responses: Record<string, number> }> }

test('config: https:// endpoints and a service\'s tls are read and checked at load, each problem with its path', () => {
  const check = (service: Record<string, unknown>): string[] => {
    try {
      validateConfig({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['https://localhost:7001'], ...service } }, routes: [{ prefix: '/', service: 'shop' }] });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => `${p.path}: ${p.message}`);
    }
    return [];
  };
  const missing = join(pki.dir, 'missing.pem');
  assert.deepEqual(check({ tls: { ca: missing } }), [`services.shop.tls.ca: cannot read "${missing}": ENOENT`]);
  assert.deepEqual(check({ tls: { ca: up.key } }), [`services.shop.tls.ca: "${up.key}" holds no PEM certificate`]);
  assert.deepEqual(check({ tls: { key: client.key } }), ['services.shop.tls.cert: a client certificate needs its key: give tls.cert and tls.key together']);
  assert.deepEqual(check({ tls: { cert: client.cert } }), ['services.shop.tls.key: a client certificate needs its key: give tls.cert and tls.key together']);
  assert.deepEqual(check({ tls: { cert: client.cert, key: client2.key } }), [`services.shop.tls.key: "${client2.key}" is not the private key of the certificate in "${client.cert}"`]);
  assert.match(check({ tls: { servername: '10.0.0.1' } })[0]!, /^services\.shop\.tls\.servername: "10\.0\.0\.1" is not a host name — SNI never carries an IP address/);
  assert.deepEqual(check({ tls: { ca: caFile, insecureSkipVerify: true } }), ['services.shop.tls.ca: has no effect with insecureSkipVerify: true (no certificate is checked)']);
  assert.deepEqual(check({ tls: { verify: false } }), ['services.shop.tls.verify: unknown key (known keys: ca, cert, key, servername, insecureSkipVerify)']);

  const ok = validateConfig({ listen: '127.0.0.1:0', services: { shop: { endpoints: ['https://localhost:7001', '127.0.0.1:7002'], tls: { ca: caFile, cert: client.cert, key: client.key, servername: 'Shop.Internal' }, http2: true } }, routes: [{ prefix: '/', service: 'shop' }] });
  const shop = ok.services.get('shop')!;
  assert.deepEqual(shop.endpoints, [{ host: 'localhost', port: 7001, weight: 1, tls: true }, { host: '127.0.0.1', port: 7002, weight: 1 }]);
  assert.equal(shop.tls.ca!.pem, pki.ca);
  assert.equal(shop.tls.cert!.file, client.cert);
  assert.equal(shop.tls.servername, 'shop.internal');
  assert.equal(shop.tls.insecureSkipVerify, false);
  assert.equal(shop.http2, true);
});

test('an https:// endpoint with a private CA: verified, SNI is the endpoint\'s name (never the Host header\'s, never an IP), one connection for every Host', async () => {
  const named = await httpsUpstream('named');
  const byIp = await httpsUpstream('by-ip');
  const gw = await gateway({
    shop: { endpoints: [`https://localhost:${named.port}`], tls: { ca: caFile } },
    ip: { endpoints: [`https://127.0.0.1:${byIp.port}`], tls: { ca: caFile }, healthCheck: false },
  });
  for (const host of ['a.example', 'b.example', 'c.example']) {
    const res = await get(gw, '/', { headers: { host } });
    assert.deepEqual(res, { status: 200, body: 'named' });
  }
  assert.deepEqual(named.seen.map((s) => s.sni), ['localhost', 'localhost', 'localhost']);
  assert.equal(new Set(named.seen.map((s) => s.socket)).size, 1, 'requests with different Host headers share the connection');
  assert.equal(named.seen[0]!.version, '1.1', 'HTTP/1.1 unless http2 is set');
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.deepEqual(cluster.endpoints.map((e) => [e.id, e.state]), [[`https://localhost:${named.port}`, 'healthy']], 'the health checks went over TLS too');
  // The IP endpoint: no SNI at all, and its certificate is checked against the IP (it lists it).
  const routed = await startGateway({ services: { ip: { endpoints: [`https://127.0.0.1:${byIp.port}`], tls: { ca: caFile }, healthCheck: false } }, routes: [{ prefix: '/', service: 'ip' }] });
  gateways.push(routed);
  assert.deepEqual(await get(routed, '/', { headers: { host: 'shop.example' } }), { status: 200, body: 'by-ip' });
  assert.equal(byIp.seen[0]!.sni, false);
});

test('tls.servername names the SNI and the certificate to expect for an IP endpoint', async () => {
  const upstream = await httpsUpstream('pinned');
  const gw = await gateway({ shop: { endpoints: [`https://127.0.0.1:${upstream.port}`], tls: { ca: caFile, servername: 'shop.internal' }, healthCheck: false } });
  assert.deepEqual(await get(gw), { status: 200, body: 'pinned' });
  assert.equal(upstream.seen[0]!.sni, 'shop.internal');
});

test('a wrong CA: a clear 502, the endpoint counted failed and the request goes to the next one; the gateway lives on', async () => {
  const good = await httpsUpstream('good');
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${good.port}`], tls: { ca: otherCaFile }, healthCheck: false, retry: false } });
  const res = await get(gw);
  assert.equal(res.status, 502);
  assert.match(res.body, /TANDEM_ERR_UPSTREAM_CONNECT/);
  assert.match(res.body, /TLS with https:\/\/localhost:\d+ failed: .*certificate/i);
  assert.equal(good.seen.length, 0, 'nothing reached the endpoint\'s application');
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.equal(cluster.endpoints[0]!.responses.error, 1);
  // The same endpoint beside a plaintext one that answers: a POST goes there (a handshake that
  // failed never reached the application), and the failing endpoint is ejected after enough.
  const plain = await (await import('./helpers/backend.js')).startBackend('plain');
  defer(() => plain.close());
  const mixed = await gateway({ shop: { endpoints: [`https://localhost:${good.port}`, plain.address], tls: { ca: otherCaFile }, healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 2 } } });
  for (let i = 0; i < 10; i++) assert.equal((await get(mixed, '/', { method: 'POST', body: 'x' })).status, 200);
  const after = await clusterService<Cluster>(mixed, 'shop');
  const tlsEndpoint = after.endpoints.find((e) => e.id.startsWith('https://'))!;
  assert.ok(tlsEndpoint.responses.error! >= 1);
  assert.equal(tlsEndpoint.state, 'ejected');
  assert.ok(after.retries.connect! >= 1);
});

test('mutual TLS: an endpoint that requires a client certificate accepts ours and refuses a gateway without one', async () => {
  const upstream = await httpsUpstream('mtls', { mtls: true });
  const withCert = await gateway({ shop: { endpoints: [`https://localhost:${upstream.port}`], tls: { ca: caFile, cert: client.cert, key: client.key } } });
  assert.deepEqual(await get(withCert), { status: 200, body: 'mtls' });
  assert.equal(upstream.seen.at(-1)!.clientCn, 'gateway-one');
  // The health checks present the certificate too: they pass, and the endpoint comes out of probation.
  await until(async () => (await clusterService<Cluster>(withCert, 'shop')).endpoints[0]!.state === 'healthy', 'the endpoint healthy by its checks');

  const without = await gateway({ shop: { endpoints: [`https://localhost:${upstream.port}`], tls: { ca: caFile }, healthCheck: false } });
  const seenBefore = upstream.seen.length;
  const res = await get(without, '/', { method: 'POST', body: 'order' });
  assert.equal(res.status, 502);
  // With TLS 1.3 the endpoint's refusal comes after our side of the handshake, as an alert and
  // the connection's end: undici reports whichever it reads first — the alert (a connect
  // failure), or the end ("other side closed", after the request was written: a reset).
  assert.match(res.body, /TANDEM_ERR_UPSTREAM_CONNECT.*TLS with https:\/\/localhost:\d+ failed|TANDEM_ERR_UPSTREAM_RESET.*other side closed/);
  assert.equal(upstream.seen.length, seenBefore, 'the endpoint\'s application never saw the request');
});

test('SIGHUP reloads the CA and the client certificate from their files: new connections use them', async () => {
  const upstream = await httpsUpstream('reloaded', { mtls: true });
  const dir = tempDir();
  defer(async () => (await import('node:fs')).rmSync(dir, { recursive: true, force: true }));
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client.key') };
  copyFileSync(otherCaFile, files.ca); // the wrong CA at first
  copyFileSync(client.cert, files.cert);
  copyFileSync(client.key, files.key);
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${upstream.port}`], tls: files, healthCheck: false, retry: false } }, join(dir, 'gateway.json'));
  assert.equal((await get(gw)).status, 502);

  copyFileSync(caFile, files.ca);
  assert.equal((await reload(gw)).msg, 'reloaded');
  assert.deepEqual(await get(gw), { status: 200, body: 'reloaded' });
  assert.equal(upstream.seen.at(-1)!.clientCn, 'gateway-one');

  copyFileSync(client2.cert, files.cert);
  copyFileSync(client2.key, files.key);
  assert.equal((await reload(gw)).msg, 'reloaded');
  assert.deepEqual(await get(gw), { status: 200, body: 'reloaded' });
  assert.equal(upstream.seen.at(-1)!.clientCn, 'gateway-two', 'the renewed client certificate is presented');

  // A reload with a key that is not the certificate's is refused; the running one keeps working.
  copyFileSync(client.key, files.key);
  assert.match(JSON.stringify(await reload(gw)), /services\.shop\.tls\.key/);
  assert.deepEqual(await get(gw), { status: 200, body: 'reloaded' });
});

test('http2: requests go over HTTP/2 (ALPN), multiplexed on one connection per endpoint, and spread over the endpoints', async () => {
  const a = await h2Upstream('a');
  const b = await h2Upstream('b');
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${a.port}`, `https://localhost:${b.port}`], tls: { ca: caFile }, http2: true, balancer: 'round-robin', healthCheck: false } });
  // Until a connection has agreed on h2 it takes one request, as HTTP/1.1 would: a burst on a
  // cold pool opens several. Once one has, requests share it.
  for (let i = 0; i < 2; i++) assert.equal((await get(gw)).status, 200);
  const before = [a.sessions(), b.sessions()];
  const answers = await Promise.all(Array.from({ length: 40 }, () => get(gw)));
  assert.ok(answers.every((r) => r.status === 200));
  assert.deepEqual(new Set(answers.map((r) => r.body)), new Set(['a', 'b']));
  for (const u of [a, b]) {
    assert.ok(u.seen.length >= 10, `${u.seen.length} requests`);
    assert.ok(u.seen.every((s) => s.version === '2.0'));
  }
  assert.deepEqual([a.sessions(), b.sessions()], before, '40 concurrent requests, no new connection');
  // Without http2 the same endpoints are spoken to in HTTP/1.1.
  const h1 = await gateway({ shop: { endpoints: [`https://localhost:${a.port}`], tls: { ca: caFile } } });
  await get(h1);
  assert.equal(a.seen.at(-1)!.version, '1.1');
  // An endpoint that speaks only h2 passes its health checks (they may agree on h2 too) and answers.
  const only = await h2Upstream('only', { h2only: true });
  const checked = await gateway({ shop: { endpoints: [`https://localhost:${only.port}`], tls: { ca: caFile }, http2: true } });
  await until(async () => (await clusterService<Cluster>(checked, 'shop')).endpoints[0]!.state === 'healthy', 'the h2-only endpoint healthy by its checks');
  assert.deepEqual(await get(checked), { status: 200, body: 'only' });
});

test('http2: a stream the endpoint refuses (REFUSED_STREAM) was not processed: a POST goes to another endpoint', async () => {
  const refusing = await h2Upstream('refusing', { refuse: true });
  const good = await h2Upstream('good');
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${refusing.port}`, `https://localhost:${good.port}`], tls: { ca: caFile }, http2: true, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 } } });
  for (let i = 0; i < 6; i++) assert.deepEqual(await get(gw, `/orders?i=${i}`, { method: 'POST', body: `order ${i}` }), { status: 200, body: 'good' });
  assert.deepEqual(good.seen.map((s) => s.body), [0, 1, 2, 3, 4, 5].map((i) => `order ${i}`), 'each POST processed once');
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.ok(cluster.retries['refused-stream']! >= 1, JSON.stringify(cluster.retries));
  assert.equal(cluster.retries.reset, 0);
});

test('http2: a GOAWAY whose last stream id is below the request\'s: not processed, a POST goes elsewhere; at or above it: not sent twice', async () => {
  const draining = await h2Upstream('draining', { goaway: 'below' });
  const good = await h2Upstream('good');
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${draining.port}`, `https://localhost:${good.port}`], tls: { ca: caFile }, http2: true, balancer: 'round-robin', healthCheck: false, outlier: { consecutiveFailures: 1000 } } });
  // A connection to each (the first stream of a connection is answered).
  for (let i = 0; i < 2; i++) assert.equal((await get(gw)).status, 200);
  for (let i = 0; i < 6; i++) assert.equal((await get(gw, `/orders?i=${i}`, { method: 'POST', body: `order ${i}` })).status, 200, `POST ${i}`);
  const processed = [...draining.seen, ...good.seen].filter((x) => x.method === 'POST').map((x) => x.body).sort();
  assert.deepEqual(processed, [0, 1, 2, 3, 4, 5].map((i) => `order ${i}`), 'each POST processed once');
  const cluster = await clusterService<Cluster>(gw, 'shop');
  assert.ok(cluster.retries['refused-stream']! >= 1, JSON.stringify(cluster.retries));

  // The endpoint took the stream before its GOAWAY (undici still drops the connection): the POST
  // may have been processed, so it is answered 502 rather than sent again.
  const taken: string[] = [];
  const closing = await h2Upstream('closing', { goaway: 'at', taken });
  const other = await h2Upstream('other');
  const gw2 = await gateway({ shop: { endpoints: [`https://localhost:${closing.port}`, `https://localhost:${other.port}`], tls: { ca: caFile }, http2: true, balancer: 'round-robin', healthCheck: false, outlier: { consecutiveFailures: 1000 } } });
  for (let i = 0; i < 2; i++) assert.equal((await get(gw2)).status, 200);
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await get(gw2, `/orders?i=${i}`, { method: 'POST', body: `order ${i}` })).status);
  assert.ok(taken.length >= 1, 'a POST met the GOAWAY');
  assert.equal(statuses.filter((st) => st === 502).length, taken.length, `${JSON.stringify(statuses)} ${JSON.stringify(taken)}`);
  const sentTwice = other.seen.filter((x) => taken.includes(x.url));
  assert.deepEqual(sentTwice, [], 'a POST the endpoint took is not sent to another');
  assert.equal((await clusterService<Cluster>(gw2, 'shop')).retries['refused-stream'], 0);
});

/**
 * An HTTP/1.1 endpoint over TLS on raw sockets: the first request of a connection is answered;
 * then `second` says what happens to the next one: reset with the request unread (the TCP socket
 * under the TLS one), or read and closed without an answer.
 */
async function rawTlsUpstream(second: 'reset-unread' | 'close-after-read'): Promise<{ port: number; read: string[] }> {
  const read: string[] = [];
  const raws = new Set<Socket>();
  const server = createNetServer((raw: Socket) => {
    raws.add(raw);
    raw.once('close', () => raws.delete(raw));
    const socket = new TLSSocket(raw, { isServer: true, cert: readFileSync(up.cert), key: readFileSync(up.key) });
    socket.on('error', () => {});
    let n = 0;
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      if (n === 1 && second === 'reset-unread') return void raw.resetAndDestroy();
      buffered += chunk.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffered.slice(0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buffered.length < end + 4 + length) return;
      buffered = buffered.slice(end + 4 + length);
      read.push(new URL(head.split(' ')[1] ?? '/', 'http://x').searchParams.get('id') ?? '');
      if (n++ === 1) return void socket.end();
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(() => new Promise((resolve) => {
    for (const raw of raws) raw.destroy();
    server.close(resolve);
  }));
  return { port: (server.address() as AddressInfo).port, read };
}

test('over TLS, the stale-connection rule holds: reset unread on reuse → sent again; read, then closed → not sent again', async () => {
  const stale = await rawTlsUpstream('reset-unread');
  const gw = await gateway({ shop: { endpoints: [`https://localhost:${stale.port}`], tls: { ca: caFile }, healthCheck: false } });
  for (const id of ['a', 'b']) assert.equal((await get(gw, `/orders?id=${id}`, { method: 'POST', body: id })).status, 200, id);
  assert.deepEqual(stale.read, ['a', 'b']);
  assert.equal((await clusterService<Cluster>(gw, 'shop')).retries['stale-connection'], 1);

  const closing = await rawTlsUpstream('close-after-read');
  const gw2 = await gateway({ shop: { endpoints: [`https://localhost:${closing.port}`], tls: { ca: caFile }, healthCheck: false } });
  assert.equal((await get(gw2, '/orders?id=a', { method: 'POST', body: 'a' })).status, 200);
  assert.equal((await get(gw2, '/orders?id=b', { method: 'POST', body: 'b' })).status, 502);
  assert.deepEqual(closing.read, ['a', 'b'], 'the POST the endpoint read is not sent twice');
});

test('tandem/node: an https.Server registers as https://host:port, and the gateway reaches it over TLS', async () => {
  const server = createHttpsServer({ cert: readFileSync(up.cert), key: readFileSync(up.key) }, (req, res) => { req.resume(); res.end('sdk over tls'); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  defer(async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => resolve())); });
  const gw = await gateway({ shop: { tls: { ca: caFile } } });
  const instance = await serve(server as unknown as HttpServer, { service: 'shop', registry: gw.adminUrl, host: 'localhost', handleSignals: false, logger: { info: () => {}, warn: () => {} } });
  defer(() => instance.close());
  assert.equal(instance.address, `https://localhost:${(server.address() as AddressInfo).port}`);
  assert.deepEqual(await get(gw), { status: 200, body: 'sdk over tls' });
});

test('a registered https:// instance is reached over TLS, through the gateway and through the service client', async () => {
  const upstream = await httpsUpstream('registered');
  const gw = await gateway({ shop: { tls: { ca: caFile } } });
  const url = `${gw.adminUrl}/registry/v1/instances`;
  const token = tokenFor(new URL(url));
  const reg = await adminFetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    body: JSON.stringify({ service: 'shop', id: 'r1', address: `https://localhost:${upstream.port}` }),
  });
  assert.equal(reg.status, 201, await reg.clone().text());
  assert.deepEqual(((await reg.json()) as { instance: { address: string; tls?: boolean } }).instance, {
    service: 'shop', id: 'r1', address: `https://localhost:${upstream.port}`, host: 'localhost', port: upstream.port, tls: true, weight: 1, metadata: {}, state: 'ready',
  });
  assert.deepEqual(await get(gw), { status: 200, body: 'registered' });
  assert.equal(upstream.seen.at(-1)!.sni, 'localhost');

  // The service client: fixed https:// endpoints, and one from a registry.
  const fixed = createClient('shop', { endpoints: [`https://localhost:${upstream.port}`], settings: { tls: { ca: caFile }, healthCheck: false } });
  defer(() => fixed.close());
  const res = await fixed.request({ path: '/direct', headers: { host: 'not-the-sni.example' } });
  assert.equal(res.status, 200);
  assert.equal(res.endpoint, `https://localhost:${upstream.port}`);
  assert.equal(upstream.seen.at(-1)!.sni, 'localhost');

  const registry = new EmbeddedRegistry();
  defer(() => registry.close());
  await registry.register({ service: 'shop', id: 'i1', address: `https://localhost:${upstream.port}` });
  const viaRegistry = createClient('shop', { registries: [registry], settings: { tls: { ca: caFile }, healthCheck: false } });
  defer(() => viaRegistry.close());
  assert.equal((await viaRegistry.request({ path: '/registered' })).text(), 'registered');

  // A client without the CA fails the handshake: a clear error, no answer.
  const untrusting = createClient('shop', { endpoints: [`https://localhost:${upstream.port}`], settings: { tls: { ca: otherCaFile }, healthCheck: false, retry: false } });
  defer(() => untrusting.close());
  await assert.rejects(untrusting.request({ path: '/' }), (err: Error & { code?: string }) => err.code === 'TANDEM_ERR_UPSTREAM_CONNECT' && /TLS with https:\/\/localhost:\d+ failed/.test(err.message));
  const status = await adminFetch(`${gw.adminUrl}/admin/cluster`);
  assert.equal(status.status, 200);
});
