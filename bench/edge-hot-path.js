#!/usr/bin/env node
// Micro-benchmark of the gateway's per-request edge work, without sockets: header rewrite,
// the admission checks (Host, header count, target, path normalization) and routing, for a
// browser-like request (14 headers, a path with a query).
//
// Usage: node bench/edge-hot-path.js [BASE]
//   Measures this checkout's dist/ (build first). With BASE, a checkout of an older commit with
//   its own dist/, measures both, rounds interleaved so that load from other processes hits
//   both alike. A build without gateway/admission.js is measured as what handleRequest did
//   before the admission step: rewriteRequestHeaders, then Router.match.
// Prints ns per request: the minimum (the least disturbed round) and the median of 15 rounds.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROUNDS = 15;
const N = 300_000;

const rawHeaders = [
  'Host', 'shop.example.com',
  'Connection', 'keep-alive',
  'sec-ch-ua', '"Chromium";v="124", "Not-A.Brand";v="99"',
  'sec-ch-ua-mobile', '?0',
  'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
  'Accept', 'application/json, text/plain, */*',
  'Sec-Fetch-Site', 'same-origin',
  'Sec-Fetch-Mode', 'cors',
  'Sec-Fetch-Dest', 'empty',
  'Referer', 'https://shop.example.com/cart',
  'Accept-Encoding', 'gzip, deflate, br',
  'Accept-Language', 'en-GB,en;q=0.9',
  'Cookie', 'session=4f9a2c; theme=dark',
  // Present so that both sides skip randomUUID(), which would dominate the numbers.
  'X-Request-Id', '0f3c2a6e-5b7d-4e8f-9a1b-2c3d4e5f6a7b',
];
const url = '/api/orders/12345/items?page=2&sort=price';
const routes = [
  { prefix: '/', host: undefined, service: 'web', stripPrefix: false },
  { prefix: '/api', host: undefined, service: 'api', stripPrefix: true },
  { prefix: '/api/admin', host: undefined, service: 'admin', stripPrefix: false },
];
const req = { url, rawHeaders, httpVersionMajor: 1, httpVersionMinor: 1, httpVersion: '1.1' };

/** The benchmarks one build offers, by name. */
async function benchmarksOf(root, label) {
  const gateway = join(root, 'dist', 'src', 'gateway');
  const load = (file) => import(pathToFileURL(join(gateway, file)).href);
  const { rewriteRequestHeaders } = await load('headers.js');
  const { Router } = await load('router.js');
  const router = new Router(routes, new Map(routes.map((r) => [r.service, { name: r.service }])));
  const out = { [`${label}: rewriteRequestHeaders`]: () => rewriteRequestHeaders(rawHeaders, '10.0.0.7', false, 'http').headers.length };
  if (existsSync(join(gateway, 'admission.js'))) {
    const { admit } = await load('admission.js');
    const { normalizePath } = await load('path.js');
    const ctx = { router, maxHeaders: 100 };
    out[`${label}: edge = admit (rewrite, checks, normalize, route)`] = () => (admit(ctx, req, '10.0.0.7', false).route === undefined ? 0 : 1);
    out[`${label}: normalizePath, common path`] = () => normalizePath(url).length;
    out[`${label}: normalizePath, /a/./b//c/%7Ed/../e?x=1`] = () => normalizePath('/a/./b//c/%7Ed/../e?x=1').length;
  } else {
    out[`${label}: edge = rewrite + route`] = () => {
      const facts = rewriteRequestHeaders(rawHeaders, '10.0.0.7', false, 'http');
      return router.match(facts.host, url) === undefined ? 0 : 1;
    };
  }
  return out;
}

const here = fileURLToPath(new URL('..', import.meta.url));
const benches = await benchmarksOf(here, 'this');
if (process.argv[2]) Object.assign(benches, await benchmarksOf(resolve(process.argv[2]), 'base'));

let sink = 0;
for (const fn of Object.values(benches)) for (let i = 0; i < N; i++) sink += fn(); // warm-up
const samples = Object.fromEntries(Object.keys(benches).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, fn] of Object.entries(benches)) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) sink += fn();
    samples[name].push(Number(process.hrtime.bigint() - t0) / N);
  }
}
console.log(`node ${process.version}; ns per request, min / median of ${ROUNDS} rounds of ${N}${sink < 0 ? '' : ''}`);
for (const [name, values] of Object.entries(samples).sort(([a], [b]) => a.localeCompare(b))) {
  values.sort((a, b) => a - b);
  console.log(`${name.padEnd(62)} ${values[0].toFixed(0).padStart(5)} / ${values[ROUNDS >> 1].toFixed(0).padStart(5)}`);
}
