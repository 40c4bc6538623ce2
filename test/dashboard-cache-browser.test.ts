// The dashboard's cache panel in a real browser (playwright-core driving Debian's chromium): a
// row per route with a cache — hit ratio, hits, misses, stale answers served — that follows the
// gateway's counters, and no panel for a gateway without caches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Page } from 'playwright-core';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { shopConfig, startBackend } from './helpers/backend.js';
import { browserForFile } from './helpers/browser.js';
import { artifact, openDashboard as open } from './helpers/dashboard.js';
import { GUARD_MS } from './helpers/wait.js';

const { browser, cleanup } = browserForFile();

function track(gw: RunningGateway): RunningGateway {
  cleanup.push(() => gw.stop('SIGKILL'));
  return gw;
}

const cell = (page: Page, route: string, column: string) => page.textContent(`#caches tr[data-route="${route}"] td.${column}`, { timeout: GUARD_MS });
/** Waits until the route's cell shows `text` (the page takes a snapshot a second). */
const shows = (page: Page, route: string, column: string, text: string) =>
  page.waitForSelector(`#caches tr[data-route="${route}"] td.${column}:text-is("${text}")`, { timeout: GUARD_MS });

test('the cache panel: a row per cached route with its hit ratio, hits, misses and stale answers, following the counters', async () => {
  let failing = false;
  const backend = await startBackend('shop', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (failing) {
      res.writeHead(503);
      res.end('down');
      return;
    }
    res.writeHead(200, { 'cache-control': req.url!.includes('/fresh') ? 'max-age=60' : 'max-age=0, stale-if-error=60' });
    res.end(`body of ${req.url}`);
  });
  cleanup.push(() => backend.close());
  const gw = track(await startGateway({ ...shopConfig([backend.address], { healthCheck: false }), routes: [{ prefix: '/c', service: 'shop', cache: true }, { prefix: '/', service: 'shop' }] }));
  const page = await open(browser(), gw, { cleanup });
  await page.waitForSelector('#caches:not([hidden]) tr[data-route="/c"]', { timeout: GUARD_MS });
  assert.equal(await cell(page, '/c', 'c-ratio'), '–', 'no request yet');
  assert.equal(await page.$$eval('#caches tbody tr', (rows) => rows.length), 1, 'the route without a cache has no row');

  for (let i = 0; i < 3; i++) assert.equal((await fetch(`${gw.url}/c/fresh`)).status, 200);
  await (await fetch(`${gw.url}/c/stale`)).text();
  await shows(page, '/c', 'c-hits', '2');
  // An answer is stored once its body is in, which may be after the client has it: a snapshot
  // can count the hits and misses of /c/stale before its entry.
  await shows(page, '/c', 'c-entries', '2');
  assert.deepEqual([await cell(page, '/c', 'c-misses'), await cell(page, '/c', 'c-ratio'), await cell(page, '/c', 'c-entries'), await cell(page, '/c', 'c-redis')], ['2', '50.0%', '2', '–']);

  failing = true;
  const stale = await fetch(`${gw.url}/c/stale`);
  assert.deepEqual([stale.status, stale.headers.get('x-tandem-cache')], [200, 'stale']);
  await shows(page, '/c', 'c-stale', '1');
  await page.screenshot({ path: artifact('cache-panel.png') });
});

test('no cache panel on a gateway whose routes do not cache', async () => {
  const backend = await startBackend('shop', (req: IncomingMessage, res: ServerResponse) => { req.resume(); res.end('ok'); });
  cleanup.push(() => backend.close());
  const gw = track(await startGateway(shopConfig([backend.address], { healthCheck: false })));
  const page = await open(browser(), gw, { cleanup });
  await page.waitForSelector('body[data-renders]', { timeout: GUARD_MS });
  assert.equal(await page.getAttribute('#caches', 'hidden'), '');
});
