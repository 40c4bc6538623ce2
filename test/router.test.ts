import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Router, prefixMatches, stripPrefix } from '../src/gateway/router.js';
import type { RouteConfig } from '../src/config/types.js';
import type { Upstream } from '../src/upstream/upstream.js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { startBackend, type Backend } from './helpers/backend.js';

/** The router only carries the upstream through; a tagged stand-in is enough to see which won. */
function routerFor(routes: Array<Partial<RouteConfig> & { prefix: string; service: string }>): Router {
  const upstreams = new Map<string, Upstream>();
  for (const r of routes) upstreams.set(r.service, { name: r.service } as unknown as Upstream);
  return new Router(routes.map((r) => ({ host: undefined, stripPrefix: false, ...r })), upstreams);
}

const serviceOf = (router: Router, host: string | undefined, path: string) => router.match(host, path)?.service;

test('prefixMatches is segment-aware', () => {
  assert.equal(prefixMatches('/api', '/api'), true);
  assert.equal(prefixMatches('/api', '/api/x'), true);
  assert.equal(prefixMatches('/api', '/api/'), true);
  assert.equal(prefixMatches('/api', '/api?q=1'), true);
  assert.equal(prefixMatches('/api', '/apiary'), false);
  assert.equal(prefixMatches('/api', '/ap'), false);
  assert.equal(prefixMatches('/api', '/API'), false);
  assert.equal(prefixMatches('/api', '/v1/api'), false);
  // A prefix ending in "/" matches whatever starts with it, and not the bare segment.
  assert.equal(prefixMatches('/api/', '/api/x'), true);
  assert.equal(prefixMatches('/api/', '/api/'), true);
  assert.equal(prefixMatches('/api/', '/api'), false);
  assert.equal(prefixMatches('/', '/anything/at?all'), true);
  assert.equal(prefixMatches('/', '/'), true);
});

test('stripPrefix keeps a leading slash and the query', () => {
  assert.equal(stripPrefix('/api', '/api/users?x=1'), '/users?x=1');
  assert.equal(stripPrefix('/api', '/api'), '/');
  assert.equal(stripPrefix('/api', '/api/'), '/');
  assert.equal(stripPrefix('/api', '/api?q=1'), '/?q=1');
  assert.equal(stripPrefix('/api/', '/api/users'), '/users');
  assert.equal(stripPrefix('/api/', '/api/'), '/');
  assert.equal(stripPrefix('/', '/users?x'), '/users?x');
  assert.equal(stripPrefix('/a/b', '/a/b/c/d'), '/c/d');
});

test('the longest matching prefix wins, whatever the config order', () => {
  const router = routerFor([
    { prefix: '/', service: 'root' },
    { prefix: '/api', service: 'api' },
    { prefix: '/api/v2', service: 'v2' },
    { prefix: '/apiary', service: 'bees' },
  ]);
  assert.equal(serviceOf(router, 'x.test', '/'), 'root');
  assert.equal(serviceOf(router, 'x.test', '/api'), 'api');
  assert.equal(serviceOf(router, 'x.test', '/api/v1/users'), 'api');
  assert.equal(serviceOf(router, 'x.test', '/api/v2'), 'v2');
  assert.equal(serviceOf(router, 'x.test', '/api/v2/users?x'), 'v2');
  assert.equal(serviceOf(router, 'x.test', '/api/v20'), 'api');
  assert.equal(serviceOf(router, 'x.test', '/apiary/honey'), 'bees');
  assert.equal(serviceOf(router, 'x.test', '/apix'), 'root');
  // Same routes in the opposite order: same answers.
  const reversed = routerFor([
    { prefix: '/apiary', service: 'bees' },
    { prefix: '/api/v2', service: 'v2' },
    { prefix: '/api', service: 'api' },
    { prefix: '/', service: 'root' },
  ]);
  for (const path of ['/', '/api', '/api/v2/x', '/api/v20', '/apiary', '/apix']) {
    assert.equal(serviceOf(reversed, 'x.test', path), serviceOf(router, 'x.test', path), path);
  }
});

test('no route for a path outside every prefix', () => {
  const router = routerFor([{ prefix: '/api', service: 'api' }]);
  assert.equal(router.match('x.test', '/apiary'), undefined);
  assert.equal(router.match('x.test', '/'), undefined);
  assert.equal(router.match(undefined, '/other'), undefined);
});

test('host routes: exact and "*.example.com"; specific hosts win over any host', () => {
  const router = routerFor([
    { prefix: '/', service: 'any' },
    { prefix: '/api', service: 'any-api' },
    { prefix: '/', host: 'shop.example.com', service: 'shop' },
    { prefix: '/', host: '*.example.com', service: 'wild' },
    { prefix: '/admin', host: '*.example.com', service: 'wild-admin' },
  ]);
  assert.equal(serviceOf(router, 'shop.example.com', '/x'), 'shop');
  // Host matching ignores case, the port and a trailing dot.
  assert.equal(serviceOf(router, 'SHOP.Example.COM:8080', '/x'), 'shop');
  assert.equal(serviceOf(router, 'shop.example.com.', '/x'), 'shop');
  // Specific-host routes win even when an any-host route has the longer prefix.
  assert.equal(serviceOf(router, 'shop.example.com', '/api/x'), 'shop');
  assert.equal(serviceOf(router, 'blog.example.com', '/x'), 'wild');
  assert.equal(serviceOf(router, 'a.b.example.com', '/x'), 'wild');
  assert.equal(serviceOf(router, 'blog.example.com', '/admin/users'), 'wild-admin');
  // The wildcard needs a subdomain: the bare domain and look-alikes fall through.
  assert.equal(serviceOf(router, 'example.com', '/x'), 'any');
  assert.equal(serviceOf(router, 'notexample.com', '/x'), 'any');
  assert.equal(serviceOf(router, 'example.com.evil.test', '/api'), 'any-api');
  assert.equal(serviceOf(router, undefined, '/api'), 'any-api');
});

test('host routes for IP literals, IPv6 included', () => {
  const router = routerFor([
    { prefix: '/', host: '10.1.2.3', service: 'v4' },
    { prefix: '/', host: '::1', service: 'v6' },
  ]);
  assert.equal(serviceOf(router, '10.1.2.3:8080', '/'), 'v4');
  assert.equal(serviceOf(router, '[::1]:8080', '/'), 'v6');
  assert.equal(serviceOf(router, '[::1]', '/'), 'v6');
  assert.equal(serviceOf(router, '[::2]', '/'), undefined);
});

let backends: Backend[] = [];
let gw: RunningGateway | undefined;

after(async () => {
  await gw?.stop();
  await Promise.all(backends.map((b) => b.close()));
});

/** The body of a whole raw response, chunked or not. */
function bodyOf(response: string): string {
  const split = response.indexOf('\r\n\r\n');
  const body = response.slice(split + 4);
  if (!/\r\ntransfer-encoding: chunked\r\n/i.test(response.slice(0, split + 2))) return body;
  let out = '';
  for (let at = 0; ;) {
    const eol = body.indexOf('\r\n', at);
    const size = parseInt(body.slice(at, eol), 16);
    if (!(size > 0)) return out;
    out += body.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** GET over a raw socket so the Host header is exactly what the test says. */
function get(port: number, host: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => { data += d; });
    socket.on('error', reject);
    socket.on('close', () => {
      resolve({ status: Number(data.slice(9, 12)), body: bodyOf(data) });
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
}

test('through the gateway: longest prefix, host routes and prefix stripping', async () => {
  backends = await Promise.all(['root', 'api', 'v2', 'shop', 'wild'].map((n) => startBackend(n)));
  const [root, api, v2, shop, wild] = backends.map((b) => b.address);
  gw = await startGateway({
    services: { root: { endpoints: [root] }, api: { endpoints: [api] }, v2: { endpoints: [v2] }, shop: { endpoints: [shop] }, wild: { endpoints: [wild] } },
    routes: [
      { prefix: '/api', service: 'api' },
      { prefix: '/', service: 'root' },
      { prefix: '/api/v2', service: 'v2', stripPrefix: true },
      { prefix: '/', host: 'shop.example.com', service: 'shop' },
      { prefix: '/static/', host: '*.example.com', service: 'wild', stripPrefix: true },
    ],
  });
  const cases: Array<[host: string, path: string, backend: string, url: string]> = [
    ['x.test', '/api/users?id=1', 'api', '/api/users?id=1'],
    ['x.test', '/api?q=1', 'api', '/api?q=1'],
    ['x.test', '/apiary', 'root', '/apiary'],
    ['x.test', '/api/v2/users?id=2', 'v2', '/users?id=2'],
    ['x.test', '/api/v2', 'v2', '/'],
    ['x.test', '/api/v2?x', 'v2', '/?x'],
    ['x.test', '/api/v20', 'api', '/api/v20'],
    ['shop.example.com', '/api/users', 'shop', '/api/users'],
    ['Shop.Example.com:80', '/cart', 'shop', '/cart'],
    ['cdn.example.com', '/static/app.js', 'wild', '/app.js'],
    ['cdn.example.com', '/api', 'api', '/api'],
    ['example.com', '/static/app.js', 'root', '/static/app.js'],
  ];
  for (const [host, path, backend, url] of cases) {
    const res = await get(gw.port, host, path);
    assert.equal(res.status, 200, `${host}${path}`);
    assert.deepEqual(JSON.parse(res.body), { backend, url }, `${host}${path}`);
  }
});

test('through the gateway: an absolute-form request target routes by its own authority', async () => {
  assert.ok(gw);
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = connect(gw!.port, '127.0.0.1');
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => { data += d; });
    socket.on('error', reject);
    socket.on('close', () => resolve({ status: Number(data.slice(9, 12)), body: bodyOf(data) }));
    socket.write('GET http://shop.example.com/cart?x=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n');
  });
  assert.equal(res.status, 200);
  assert.deepEqual(JSON.parse(res.body), { backend: 'shop', url: '/cart?x=1' });
});
