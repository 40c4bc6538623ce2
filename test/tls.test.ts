// TLS on the client listener (issue 15): a real gateway process with a plaintext and a TLS
// listener, certificates from a throwaway CA made by openssl, real https clients.
import { test, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpsRequest, Agent } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { adminFetch, startGateway, runCli, tempDir, type RunningGateway } from './helpers/gateway.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { makeServerPki } from './helpers/tls-pki.js';
import { WebSocket, WebSocketServer } from 'ws';
import { validateConfig } from '../src/config/validate.js';
import { ConfigError } from '../src/config/problems.js';

const pki = makeServerPki();
const a = pki.issue('a', '/CN=a.test', 'subjectAltName=DNS:a.test,IP:127.0.0.1');
const b = pki.issue('b', '/CN=b.test', 'subjectAltName=DNS:b.test,DNS:*.b.test');
const aRenewed = pki.issue('a2', '/CN=a.test', 'subjectAltName=DNS:a.test,IP:127.0.0.1');
const nameless = pki.issue('nameless', '/O=nobody', 'basicConstraints=CA:FALSE');
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

interface Answer { status: number; body: string; serial: string; names: string; reused: boolean; socket: TLSSocket }

/** One https request to 127.0.0.1:port naming `servername` in SNI; the client checks the certificate against the test CA. */
function get(port: number, servername: string, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, servername, path: '/', ca: pki.ca, agent, headers: { host: servername } }, (res) => {
      // Read now: a keep-alive agent takes the socket back once the body ended.
      const socket = res.socket as TLSSocket;
      const peer = socket.getPeerCertificate();
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; });
      res.on('end', () => {
        resolve({ status: res.statusCode!, body, serial: peer.serialNumber, names: peer.subjectaltname ?? '', reused: req.reusedSocket, socket });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function tlsGateway(extra: Record<string, unknown> = {}): Promise<{ gw: RunningGateway; tlsPort: number; dir: string }> {
  const backend = await startBackend('shop', (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ proto: req.headers['x-forwarded-proto'] }));
  });
  backends.push(backend);
  const dir = tempDir();
  dirs.push(dir);
  // The gateway reads copies, so a test can replace a file and reload.
  copyFileSync(a.cert, join(dir, 'a.pem'));
  copyFileSync(a.key, join(dir, 'a.key'));
  const config = {
    listen: [
      { address: '127.0.0.1:0' },
      { address: '127.0.0.1:0', tls: { cert: join(dir, 'a.pem'), key: join(dir, 'a.key'), certificates: [{ cert: b.cert, key: b.key }] } },
    ],
    admin: '127.0.0.1:0',
    log: { level: 'debug' },
    services: { shop: { endpoints: [backend.address], healthCheck: false } },
    routes: [{ prefix: '/', service: 'shop' }],
    ...extra,
  };
  const gw = await startGateway(config, { file: join(dir, 'gateway.json') });
  gateways.push(gw);
  const listening = gw.logs.find((l) => l.msg === 'listening')!;
  const urls = listening.listeners as string[];
  assert.equal(urls.length, 2);
  assert.match(urls[0]!, /^http:\/\//);
  assert.match(urls[1]!, /^https:\/\//);
  return { gw, tlsPort: Number(new URL(urls[1]!).port), dir };
}

test('a plaintext and a TLS listener at once: SNI picks the certificate, X-Forwarded-Proto says the scheme', async () => {
  const { gw, tlsPort } = await tlsGateway();
  const plain = await fetch(`${gw.url}/`);
  assert.deepEqual(await plain.json(), { proto: 'http' });
  const cluster = await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json() as { gateway: { listeners: string[] } };
  assert.equal(cluster.gateway.listeners.length, 2);

  const first = await get(tlsPort, 'a.test');
  assert.equal(first.status, 200);
  assert.deepEqual(JSON.parse(first.body), { proto: 'https' });
  assert.match(first.names, /DNS:a\.test/);
  const second = await get(tlsPort, 'b.test');
  assert.match(second.names, /DNS:b\.test/);
  const wildcard = await get(tlsPort, 'shop.b.test');
  assert.match(wildcard.names, /DNS:\*\.b\.test/);
  // A name no certificate has gets the default one (and the client refuses it, rightly).
  await assert.rejects(get(tlsPort, 'c.test'), /does not match|altnames/i);
  // SIGTERM drains and closes both listeners.
  assert.equal(await gw.stop('SIGTERM'), 0);
});

test('ALPN offers h2 and http/1.1; TLS 1.1 is refused by the server', async () => {
  const { tlsPort } = await tlsGateway();
  const alpn = (offer: string[]) => new Promise<string | false | null>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: 'a.test', ca: pki.ca, ALPNProtocols: offer }, () => {
      resolve(s.alpnProtocol);
      s.end();
    });
    s.on('error', reject);
  });
  assert.equal(await alpn(['h2', 'http/1.1']), 'h2');
  assert.equal(await alpn(['http/1.1']), 'http/1.1');

  // The client allows TLS 1.0–1.1 (security level 0, or OpenSSL itself would refuse to offer them):
  // the refusal seen is the server's protocol_version alert.
  const err = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: 'a.test', ca: pki.ca, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => {
      s.end();
      reject(new Error(`a TLS ${String(s.getProtocol())} handshake succeeded`));
    });
    s.on('error', resolve);
  });
  assert.equal(err.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', err.message);
});

test('SIGHUP swaps a certificate: an open keep-alive connection stays up, new connections get the new certificate', async () => {
  const { gw, tlsPort, dir } = await tlsGateway();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const before = await get(tlsPort, 'a.test', agent);
    assert.equal(before.status, 200);
    copyFileSync(aRenewed.cert, join(dir, 'a.pem'));
    copyFileSync(aRenewed.key, join(dir, 'a.key'));
    const from = gw.logs.length;
    gw.proc.kill('SIGHUP');
    const outcome = await gw.waitForLog((l) => gw.logs.indexOf(l) >= from && (l.msg === 'reloaded' || /reload rejected/.test(String(l.msg))));
    assert.equal(outcome.msg, 'reloaded', JSON.stringify(outcome));

    const same = await get(tlsPort, 'a.test', agent);
    assert.equal(same.status, 200);
    assert.ok(same.reused, 'the keep-alive connection carried the request after the reload');
    assert.equal(same.socket, before.socket);
    assert.equal(same.serial, before.serial, 'an open session keeps its certificate');

    const fresh = await get(tlsPort, 'a.test');
    assert.notEqual(fresh.serial, before.serial, 'a new connection gets the renewed certificate');
    // The SNI certificates were made again from the files too.
    assert.match((await get(tlsPort, 'b.test')).names, /DNS:b\.test/);
  } finally {
    agent.destroy();
  }
});

test('a reload that breaks a certificate is refused with the path; the old certificates keep serving', async () => {
  const { gw, tlsPort, dir } = await tlsGateway();
  copyFileSync(b.key, join(dir, 'a.key'));
  const from = gw.logs.length;
  gw.proc.kill('SIGHUP');
  const outcome = await gw.waitForLog((l) => gw.logs.indexOf(l) >= from && (l.msg === 'reloaded' || /reload rejected/.test(String(l.msg))));
  assert.match(JSON.stringify(outcome), /listen\[1\]\.tls\.key/);
  assert.equal((await get(tlsPort, 'a.test')).status, 200);
});

test('a WebSocket over TLS (wss) is passed through; the endpoint sees X-Forwarded-Proto: https', async () => {
  let proto: string | undefined;
  const echo = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  echo.on('connection', (ws, req) => {
    proto = req.headers['x-forwarded-proto'] as string;
    ws.on('message', (m) => ws.send(m));
  });
  await new Promise((resolve) => echo.once('listening', resolve));
  const port = (echo.address() as { port: number }).port;
  try {
    const dir = tempDir();
    dirs.push(dir);
    const gw = await startGateway({
      listen: [{ address: '127.0.0.1:0', tls: { cert: a.cert, key: a.key } }],
      services: { ws: { endpoints: [`127.0.0.1:${port}`], healthCheck: false } }, routes: [{ prefix: '/', service: 'ws' }],
    }, { file: join(dir, 'gateway.json') });
    gateways.push(gw);
    const ws = new WebSocket(`wss://127.0.0.1:${gw.port}/chat`, { ca: pki.ca }); // no SNI for an IP: the default certificate, valid for 127.0.0.1
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const reply = new Promise<string>((resolve) => ws.once('message', (m: Buffer) => resolve(m.toString())));
    ws.send('over tls');
    assert.equal(await reply, 'over tls');
    assert.equal(proto, 'https');
    ws.close();
  } finally {
    echo.close();
  }
});

test('bad TLS config: unreadable file, key of another certificate, a certificate for no name — each with its path', () => {
  const problems = (tls: Record<string, unknown>): string[] => {
    try {
      validateConfig({ listen: [{ address: '127.0.0.1:0', tls }], services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => `${p.path}: ${p.message}`);
    }
    return [];
  };
  assert.deepEqual(problems({ cert: join(pki.dir, 'missing.pem'), key: a.key }), [`listen[0].tls.cert: cannot read "${join(pki.dir, 'missing.pem')}": ENOENT`]);
  assert.deepEqual(problems({ cert: a.cert, key: pki.strayKey() }), [`listen[0].tls.key: "${join(pki.dir, 'stray.key')}" is not the private key of the certificate in "${a.cert}"`]);
  assert.deepEqual(problems({ cert: a.cert, key: a.key, certificates: [{ cert: nameless.cert, key: nameless.key }] }),
    [`listen[0].tls.certificates[0].cert: the certificate in "${nameless.cert}" names no host (no DNS or IP entry in subjectAltName, no CN): no client could check it`]);
  assert.deepEqual(problems({ cert: a.key, key: a.key }), [`listen[0].tls.cert: "${a.key}" holds no PEM certificate`]);
  assert.deepEqual(problems({ cert: a.cert, key: a.key, minVersion: 'TLSv1.1' }), ['listen[0].tls.minVersion: "TLSv1.1" is not one of TLSv1.2, TLSv1.3 — did you mean TLSv1.2?']);

  const ok = validateConfig({ listen: [{ address: '127.0.0.1:0' }, { address: '127.0.0.1:0', tls: { cert: a.cert, key: a.key } }], services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] });
  assert.equal(ok.listen[0]!.tls, undefined);
  assert.deepEqual(ok.listen[1]!.tls!.certificates[0]!.names, ['a.test', '127.0.0.1']);
  assert.equal(ok.listen[1]!.tls!.minVersion, 'TLSv1.2');
  const clash = (): unknown => validateConfig({ listen: [{ address: '127.0.0.1:9000' }, { address: '0.0.0.0:9000', tls: { cert: a.cert, key: a.key } }], services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] });
  assert.throws(clash, (err: ConfigError) => err.problems.some((p) => p.path === 'listen[1].address' && /port 9000 is also listen\[0\]'s/.test(p.message)));
});

test('tandem gateway refuses to start on a bad certificate, naming the path; nothing binds', async () => {
  const dir = tempDir();
  dirs.push(dir);
  const file = join(dir, 'gateway.json');
  writeFileSync(file, JSON.stringify({
    listen: [{ address: '127.0.0.1:0', tls: { cert: a.cert, key: b.key } }], admin: '127.0.0.1:0',
    services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }],
  }));
  const run = await runCli(['gateway', '--config', file]);
  assert.equal(run.code, 2, run.stderr);
  assert.match(run.stderr, /listen\[0\]\.tls\.key: ".*b\.key" is not the private key of the certificate in ".*a\.pem"/);
});
