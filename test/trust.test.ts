// Issue 10, "Trust": nobody without the gateway's secret can steer traffic or read the cluster,
// and a browser page cannot act for somebody who has it. Every attack is sent byte for byte on
// a raw socket to a real `tandem gateway` process; instances are real child processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { adminFetch, runCli, startGateway, writeConfig, type RunningGateway } from './helpers/gateway.js';
import { freePort, startBackend, type Backend } from './helpers/backend.js';
import { registrySnapshot, spawnInstance, until } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { tokenFor } from '../src/core/secret.js';

const { defer, track } = cleanupAfterAll();

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The gateway closed the connection after the answer. */
  closed: boolean;
}

/** Writes `text` on a fresh connection and reads one response (by Content-Length) or until close. */
function raw(port: number, text: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    let parsed: RawResponse | undefined;
    const finish = (closed: boolean) => {
      if (parsed) resolve({ ...parsed, closed });
      else reject(new Error(`no whole response; got ${JSON.stringify(data.slice(0, 300))}`));
    };
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      data += d;
      const end = data.indexOf('\r\n\r\n');
      if (end < 0 || parsed) return;
      const [statusLine, ...lines] = data.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const c = l.indexOf(':');
        headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
      }
      const length = Number(headers['content-length'] ?? -1);
      const body = data.slice(end + 4);
      if (length >= 0 && Buffer.byteLength(body, 'latin1') >= length) {
        parsed = { status: Number(statusLine!.split(' ')[1]), headers, body: body.slice(0, length), closed: false };
        // Give a closing gateway the chance to say so: the FIN follows the response at once.
        setImmediate(() => {
          socket.removeAllListeners('close');
          socket.once('close', () => finish(true));
          if (headers.connection !== 'close') {
            socket.destroy();
            finish(false);
          }
        });
      }
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      if (!parsed) {
        const end = data.indexOf('\r\n\r\n');
        if (end >= 0) {
          const head = data.slice(0, end);
          const body = data.slice(end + 4);
          const headers: Record<string, string> = {};
          for (const l of head.split('\r\n').slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
          parsed = { status: Number(data.split(' ')[1]), headers, body: headers['transfer-encoding'] === 'chunked' ? unchunk(body) : body, closed: true };
        }
      }
      finish(true);
    });
    socket.write(text);
  });
}

/** The body of a chunked message (whole, as read until the connection closed). */
function unchunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, nl), 16);
    if (!(size > 0)) return out;
    out += rest.slice(nl + 2, nl + 2 + size);
    rest = rest.slice(nl + 2 + size + 2);
  }
}

function post(path: string, host: string, body: string, headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

function get(path: string, host: string, headers: Record<string, string> = {}): string {
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;
}

const codeOf = (r: RawResponse) => (JSON.parse(r.body) as { error: { code: string } }).error.code;
const messageOf = (r: RawResponse) => (JSON.parse(r.body) as { error: { message: string } }).error.message;

/** A gateway fed by the registry, with one real instance; the attacker's server counts what reaches it. */
async function cluster(extra: Record<string, unknown> = {}): Promise<{ gw: RunningGateway; admin: string; adminPort: number; attacker: Backend; hits: () => number }> {
  const gw = await startGateway({ services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }], ...extra });
  defer(() => gw.stop('SIGKILL'));
  const attacker = await startBackend('attacker');
  defer(() => attacker.close());
  const admin = gw.adminUrl.slice('http://'.length);
  return { gw, admin, adminPort: Number(admin.slice(admin.lastIndexOf(':') + 1)), attacker, hits: () => attacker.seen.length };
}

test('case 1: a browser page cannot register (CSRF: foreign Origin, text/plain, no preflight) nor read through DNS rebinding (foreign Host)', async () => {
  const { gw, admin, adminPort, attacker, hits } = await cluster();
  const legit = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop' }));
  const hijack = JSON.stringify({ service: 'shop', id: 'x', address: attacker.address });
  const token = tokenFor(new URL(gw.adminUrl))!;

  // The request exactly: a CORS "simple request" from another site.
  const csrf = await raw(adminPort, post('/registry/v1/instances', admin, hijack, { Origin: 'http://evil.example', 'Content-Type': 'text/plain' }));
  assert.equal(csrf.status, 403);
  assert.equal(codeOf(csrf), 'TANDEM_ERR_FORBIDDEN');
  assert.match(messageOf(csrf), /another site \(Origin: http:\/\/evil\.example\)/);
  // Even a page that somehow had the secret: the Origin alone refuses it, and so does Sec-Fetch-Site.
  assert.equal((await raw(adminPort, post('/registry/v1/instances', admin, hijack, { Origin: 'http://evil.example', 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }))).status, 403);
  assert.equal((await raw(adminPort, post('/registry/v1/instances', admin, hijack, { 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }))).status, 403);
  // text/plain without an Origin (an old browser, a form): 415, writes are JSON only.
  const plain = await raw(adminPort, post('/registry/v1/instances', admin, hijack, { 'Content-Type': 'text/plain', Authorization: `Bearer ${token}` }));
  assert.equal(plain.status, 415);
  assert.match(messageOf(plain), /application\/json only \(got "text\/plain"\)/);
  const formPost = await raw(adminPort, post('/registry/v1/instances', admin, 'service=shop', { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Bearer ${token}` }));
  assert.equal(formPost.status, 415);

  // DNS rebinding: the page's own name in Host. Refused whatever else the request carries.
  for (const path of ['/admin/cluster', '/registry/v1/services/shop', '/', '/admin/dashboard', '/admin/stream']) {
    const r = await raw(adminPort, get(path, 'evil.example', { Authorization: `Bearer ${token}` }));
    assert.equal(r.status, 403, path);
    assert.equal(codeOf(r), 'TANDEM_ERR_FORBIDDEN');
    assert.match(messageOf(r), /Host "evil\.example" is not this admin listener.s address/);
  }
  assert.equal((await raw(adminPort, post('/registry/v1/instances', `evil.example:${adminPort}`, hijack, { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }))).status, 403);
  // The probes and the scrape stay open to any Host (Prometheus may name the host as it likes).
  assert.equal((await raw(adminPort, get('/metrics', 'prometheus.example'))).status, 200);
  assert.equal((await raw(adminPort, get('/healthz', 'lb.example'))).status, 200);

  // Nothing was registered, and every client request reached the real instance.
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances.map((i) => i.id), [legit.id]);
  for (let i = 0; i < 20; i++) assert.equal((await fetch(`${gw.url}/x`)).status, 200);
  assert.equal(hits(), 0, 'the attacker got no request');
  // A same-origin write with the secret still works (what `tandem/node` sends is exactly this).
  const own = await raw(adminPort, post('/registry/v1/instances', admin, JSON.stringify({ service: 'other', id: 'o1', address: '127.0.0.1:7001' }), { Origin: `http://${admin}`, 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }));
  assert.equal(own.status, 201);
});

test('case 2: a local process without the secret cannot join a service, even from loopback and even as another user of this host', async () => {
  // `hidden` exists only so that /admin is not served by shop: it has no member.
  const { gw, admin, adminPort, attacker, hits } = await cluster({ routes: [{ prefix: '/', service: 'shop' }, { prefix: '/admin', service: 'hidden' }], services: { shop: {}, hidden: {} } });
  const legit = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop' }));
  // The raw attempt from this very process, no token: 401, nothing registered.
  for (const service of ['shop', 'hidden']) {
    const r = await raw(adminPort, post('/registry/v1/instances', admin, JSON.stringify({ service, id: 'imp', address: attacker.address }), { 'Content-Type': 'application/json' }));
    assert.equal(r.status, 401, service);
    assert.equal(codeOf(r), 'TANDEM_ERR_UNAUTHORIZED');
    assert.match(r.headers['www-authenticate'] ?? '', /^Bearer/);
  }
  // A real SDK process that cannot read the secret file: as another user when the test runs as
  // root (CI does), else with a runtime directory of its own — both are "not this user".
  const asOther = process.getuid?.() === 0
    ? { uid: 65534, gid: 65534, env: { ...process.env, TANDEM_TOKEN: '', XDG_RUNTIME_DIR: '' } }
    : { env: { ...process.env, TANDEM_TOKEN: '', XDG_RUNTIME_DIR: '', TMPDIR: mkdtempSync(join(tmpdir(), 'tandem-other-')) } };
  const impostor = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', id: 'impostor' }, 'sdk-instance', asOther));
  const refused = await impostor.waitForLine((l) => l.msg === 'registration failed');
  assert.match(String(refused.error), /missing bearer token/);
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances.map((i) => i.id), [legit.id]);
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'hidden')).instances, []);
  // The hidden path stays hidden (no member: 503), and shop traffic goes only to the real instance.
  assert.equal((await fetch(`${gw.url}/admin`)).status, 503);
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) seen.add(((await (await fetch(`${gw.url}/x`)).json()) as { instance: string }).instance);
  assert.deepEqual([...seen], [legit.id]);
  assert.equal(hits(), 0);
});

test('case 2: an instance id held by a live lease cannot be taken by another registration (409); the holder keeps its traffic', async () => {
  const { gw, admin, adminPort, attacker } = await cluster();
  const legit = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', id: 'shop-1' }));
  const token = tokenFor(new URL(gw.adminUrl))!;
  const r = await raw(adminPort, post('/registry/v1/instances', admin, JSON.stringify({ service: 'shop', id: 'shop-1', address: attacker.address }), { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }));
  assert.equal(r.status, 409);
  assert.equal(codeOf(r), 'TANDEM_ERR_REGISTRY_CONFLICT');
  assert.match(messageOf(r), /shop\/shop-1 is held by another lease/);
  const snap = await registrySnapshot(gw.adminUrl, 'shop');
  assert.deepEqual(snap.instances.map((i) => [i.id, i.address]), [['shop-1', legit.address]]);
  // A second SDK process given the same id waits (logging why) and does not displace the first.
  const twin = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', id: 'shop-1' }));
  await twin.waitForLine((l) => l.msg === 'registration failed' && /held by another lease/.test(String(l.error)));
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances.map((i) => i.address), [legit.address]);
  // Once the holder is gone (SIGKILL: its keep-alive connection closes), the twin gets the id.
  legit.proc.kill('SIGKILL');
  await until(async () => (await registrySnapshot(gw.adminUrl, 'shop')).instances.some((i) => i.address === twin.address), 'the twin to take over the freed id');
});

test('cases 2 and 3: addresses no instance can have are refused — link-local, unspecified, multicast, broadcast, and the gateway\'s own listeners', async () => {
  const adminPort = await freePort();
  const { gw, admin } = await cluster({ admin: `127.0.0.1:${adminPort}` });
  const listenPort = gw.port;
  const token = tokenFor(new URL(gw.adminUrl))!;
  const cases: Array<[string, RegExp]> = [
    ['169.254.169.254:80', /link-local/],
    ['[::ffff:169.254.169.254]:80', /link-local/],
    ['[::ffff:a9fe:a9fe]:80', /link-local/],
    ['[fe80::1]:80', /link-local/],
    ['0.0.0.0:80', /unspecified/],
    ['[::]:80', /unspecified/],
    ['224.0.0.1:80', /multicast/],
    ['[ff02::1]:80', /multicast/],
    ['255.255.255.255:80', /broadcast/],
    [`127.0.0.1:${adminPort}`, /this gateway's own admin listener/],
    [`localhost:${adminPort}`, /localhost is 127\.0\.0\.1: .*own admin listener|localhost is ::1: .*own admin listener/],
    [`127.0.0.1:${listenPort}`, /this gateway's own listen listener/],
  ];
  for (const [address, why] of cases) {
    const r = await raw(adminPort, post('/registry/v1/instances', admin, JSON.stringify({ service: 'shop', id: 'x', address }), { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` }));
    assert.equal(r.status, 400, address);
    assert.equal(codeOf(r), 'TANDEM_ERR_REGISTRY_INVALID');
    assert.match(messageOf(r), why, address);
  }
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances, []);
});

test('case 3: the admin listener behind the public one (as a static endpoint) gives nothing away: the secret is still needed', async () => {
  const adminPort = await freePort();
  const gw = await startGateway({
    admin: `127.0.0.1:${adminPort}`,
    services: { shop: {}, adm: { endpoints: [`127.0.0.1:${adminPort}`], healthCheck: false } },
    routes: [{ prefix: '/', service: 'shop' }, { prefix: '/admin', service: 'adm' }, { prefix: '/registry', service: 'adm' }],
  });
  defer(() => gw.stop('SIGKILL'));
  const cluster = await fetch(`${gw.url}/admin/cluster`);
  assert.equal(cluster.status, 401);
  const write = await fetch(`${gw.url}/registry/v1/instances`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ service: 'shop', id: 'x', address: '127.0.0.1:7001' }) });
  assert.equal(write.status, 401);
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances, []);
});

test('case 9: with a secret, /admin and the dashboard need it (header, or the cookie the token URL sets); /healthz, /readyz, /metrics stay open; writes take the header only', async () => {
  const secret = 'a-configured-secret-0123456789';
  const gw = await startGateway({ services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }], registry: { token: secret } });
  defer(() => gw.stop('SIGKILL'));
  const port = Number(gw.adminUrl.slice(gw.adminUrl.lastIndexOf(':') + 1));
  const host = gw.adminUrl.slice('http://'.length);
  for (const path of ['/admin/cluster', '/admin/dashboard', '/admin/stream', '/', '/dashboard.js', '/registry/v1/services']) {
    const r = await raw(port, get(path, host));
    assert.equal(r.status, 401, path);
    assert.equal(codeOf(r), 'TANDEM_ERR_UNAUTHORIZED');
    assert.equal((await raw(port, get(path, host, { Authorization: 'Bearer wrong-secret-wrong-secret' }))).status, 401, path);
  }
  assert.equal((await raw(port, get('/admin/cluster', host, { Authorization: `Bearer ${secret}` }))).status, 200);
  // Open: /readyz answers (503 here: the registry-fed service has no member yet), never 401.
  for (const path of ['/healthz', '/readyz', '/metrics']) assert.ok([200, 503].includes((await raw(port, get(path, host))).status), path);

  // The browser flow: /?token=… once → a cookie, and the address bar loses the token.
  assert.equal((await raw(port, get('/?token=wrong-secret-wrong-secret', host))).status, 401);
  const login = await raw(port, get(`/?token=${secret}`, host));
  assert.equal(login.status, 303);
  assert.equal(login.headers.location, '/');
  const cookie = login.headers['set-cookie']!;
  assert.match(cookie, new RegExp(`^tandem-admin-${port}=${secret}; Path=/; HttpOnly; SameSite=Strict$`));
  const pair = cookie.split(';')[0]!;
  for (const path of ['/', '/dashboard.js', '/admin/dashboard', '/admin/cluster']) {
    assert.equal((await raw(port, get(path, host, { Cookie: pair }))).status, 200, path);
  }
  // A cookie named for another gateway's port is not this one's.
  assert.equal((await raw(port, get('/admin/cluster', host, { Cookie: `tandem-admin-1=${secret}` }))).status, 401);
  // Writes: the cookie is not enough (a browser sends cookies by itself; it cannot send the header cross-site).
  const body = JSON.stringify({ service: 'shop', id: 'c', address: '127.0.0.1:7001' });
  assert.equal((await raw(port, post('/registry/v1/instances', host, body, { Cookie: pair, 'Content-Type': 'application/json' }))).status, 401);
  assert.equal((await raw(port, post('/registry/v1/instances', host, body, { Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json' }))).status, 201);
});

test('case 9: the admin listener cuts a header slowloris and a slow registration body like the public listener does', async () => {
  const gw = await startGateway({ services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }], limits: { headersTimeout: '1s' } });
  defer(() => gw.stop('SIGKILL'));
  const port = Number(gw.adminUrl.slice(gw.adminUrl.lastIndexOf(':') + 1));
  const host = gw.adminUrl.slice('http://'.length);
  const token = tokenFor(new URL(gw.adminUrl))!;
  // Headers one byte at a time, never finished: the connection is closed (Node answers 408).
  const slowloris = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const head = `GET /admin/cluster HTTP/1.1\r\nHost: ${host}\r\nX-Slow: ${'a'.repeat(10_000)}`;
    let i = 0;
    const drip = setInterval(() => { if (!socket.destroyed) socket.write(head[i++ % head.length]!); }, 50);
    socket.setEncoding('latin1').on('data', (d: string) => { got += d; });
    socket.on('error', () => {});
    socket.once('close', () => { clearInterval(drip); resolve(got); });
  });
  assert.match(slowloris, /^HTTP\/1\.1 408|^$/);
  // A registration whose body trickles in is answered 408 and the connection closed.
  const trickle = await new Promise<string>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const body = JSON.stringify({ service: 'shop', id: 'slow', address: '127.0.0.1:7001' });
    socket.write(`POST /registry/v1/instances HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
    let i = 0;
    const drip = setInterval(() => { if (!socket.destroyed && i < body.length - 1) socket.write(body[i++]!); }, 200);
    socket.setEncoding('latin1').on('data', (d: string) => { got += d; });
    socket.on('error', () => {});
    socket.once('close', () => { clearInterval(drip); resolve(got); });
  });
  assert.match(trickle, /^HTTP\/1\.1 408/);
  assert.match(trickle, /did not arrive within 1000 ms/);
  assert.deepEqual((await registrySnapshot(gw.adminUrl, 'shop')).instances, []);
  // The listener still serves.
  assert.equal((await adminFetch(`${gw.adminUrl}/admin/cluster`)).status, 200);
});

test('an admin listener off loopback without a configured secret is a config error (exit 2, nothing bound)', async () => {
  const file = writeConfig({ listen: '127.0.0.1:0', admin: '0.0.0.0:0', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] });
  defer(async () => rmSync(dirname(file), { recursive: true, force: true }));
  const check = await runCli(['gateway', '--check', file]);
  assert.equal(check.code, 2);
  assert.match(check.stderr, /registry\.token: required when the admin listener \(0\.0\.0\.0:0\) is not on a loopback address/);
  const run = await runCli(['gateway', '--config', file]);
  assert.equal(run.code, 2);
});
