// Issue 11 part C, in a real browser (playwright-core driving Debian's chromium) against real
// gateway and instance processes: the header badge tells the truth (ok; degraded for a service
// with no instance, for every endpoint failing in panic with 502s, for a high error rate;
// draining; disconnected once the gateway is gone, and back when one answers again), the
// charts keep the last minutes (there at once after a reload, and moving), the page fits a
// 390 px screen, and an instance's departure says why it left. Screenshots of each go to
// test-artifacts/dashboard/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Page } from 'playwright-core';
import { adminFetch, runCli, startGateway, type RunningGateway } from './helpers/gateway.js';
import { freePort, startBackend } from './helpers/backend.js';
import { spawnInstance, type SdkInstance } from './helpers/sdk.js';
import { browserForFile } from './helpers/browser.js';
import { artifact, load, openDashboard as open } from './helpers/dashboard.js';
import type { DashboardSnapshot } from '../src/gateway/dashboard-feed.js';
import { GUARD_MS, waitFor } from './helpers/wait.js';

// Page-side code (the functions passed to page.evaluate run in the browser) sees these.
interface PageElement { getAttribute(name: string): string | null; textContent: string | null }
declare const document: { documentElement: { scrollWidth: number }; querySelector(selector: string): PageElement | null };

const { browser, cleanup } = browserForFile();

function track<T extends RunningGateway | SdkInstance>(p: T): T {
  cleanup.push(async () => {
    p.proc.kill('SIGKILL');
    await p.exited;
  });
  return p;
}

const openDashboard = (gw: RunningGateway, width?: number): Promise<Page> => open(browser(), gw, { cleanup, width, height: width === undefined ? undefined : 844 });
const badge = (page: Page, health: string, timeout = GUARD_MS) => page.waitForSelector(`#gw-health[data-health="${health}"]`, { timeout });
const reason = async (page: Page) => (await page.textContent('#gw-reason')) ?? '';
/** Waits until the reason next to the badge matches. */
const reasonMatches = (page: Page, pattern: RegExp, timeout = GUARD_MS) =>
  page.waitForFunction((source) => new RegExp(source).test(document.querySelector('#gw-reason')?.textContent ?? ''), pattern.source, { timeout });
const snapshotOf = async (gw: RunningGateway) => (await (await adminFetch(`${gw.adminUrl}/admin/dashboard`)).json()) as DashboardSnapshot;

test('badge: degraded while a service has no instance, ok once one joined; departures say why: connection lost (SIGKILL), lease expired (SIGSTOP), drained (SIGTERM)', async () => {
  const shop = await startBackend('shop');
  cleanup.push(() => shop.close());
  const gw = track(await startGateway({
    services: { shop: { endpoints: [shop.address] }, orders: {} },
    routes: [{ prefix: '/orders', service: 'orders' }, { prefix: '/', service: 'shop' }],
  }));
  const page = await openDashboard(gw);
  await badge(page, 'degraded');
  assert.match(await reason(page), /^orders: no instance: every request gets 503$/);
  assert.match(await page.textContent('section[data-service="orders"] .why') ?? '', /no instance/);
  assert.equal((await snapshotOf(gw)).gateway.health, 'degraded');
  await page.screenshot({ path: artifact('badge-degraded-no-instance.png') });

  const options = { registry: gw.adminUrl, service: 'orders', ttl: 2000, drainQuietPeriod: 100 };
  const [killed, frozen, drained] = [track(await spawnInstance(options)), track(await spawnInstance(options)), track(await spawnInstance(options))];
  await badge(page, 'ok');
  assert.equal(await reason(page), '');
  const traffic = load(`${gw.url}/orders/x`, 20);
  cleanup.push(() => traffic.stop());
  await page.waitForFunction(() => Number(document.querySelector('section[data-service="orders"] .chart[data-metric="rate"] b')?.textContent) > 5, undefined, { timeout: GUARD_MS });
  for (const i of [killed, frozen, drained]) await page.waitForSelector(`tr[data-endpoint="${i.address}"][data-state="healthy"]`, { timeout: GUARD_MS });
  await page.screenshot({ path: artifact('badge-ok.png') });

  killed.proc.kill('SIGKILL');
  await page.waitForSelector(`#timeline li[data-kind="leave"][data-cause="connection-lost"] >> text=${killed.address}`, { timeout: GUARD_MS });
  await page.waitForSelector(`tr[data-endpoint="${killed.address}"][data-state="left"][data-cause="connection-lost"] >> text=connection lost`, { timeout: GUARD_MS });
  await gw.waitForLog((l) => l.msg === 'registry' && l.event === 'leave' && l.cause === 'connection-lost' && l.instance === killed.id);

  frozen.proc.kill('SIGSTOP');
  cleanup.push(async () => { frozen.proc.kill('SIGCONT'); });
  await page.waitForSelector(`#timeline li[data-kind="leave"][data-cause="lease-expired"] >> text=${frozen.address}`, { timeout: GUARD_MS });
  await page.waitForSelector(`tr[data-endpoint="${frozen.address}"][data-state="left"] >> text=lease expired`, { timeout: GUARD_MS });

  drained.proc.kill('SIGTERM');
  assert.equal(await drained.exited, 0);
  await page.waitForSelector(`#timeline li[data-kind="leave"][data-cause="drained"] >> text=${drained.address}`, { timeout: GUARD_MS });
  await page.waitForSelector(`tr[data-endpoint="${drained.address}"][data-state="left"] >> text=drained`, { timeout: GUARD_MS });
  await gw.waitForLog((l) => l.msg === 'registry' && l.event === 'leave' && l.cause === 'drained' && l.instance === drained.id);
  // Every instance gone: the service has none again.
  await badge(page, 'degraded');
  await traffic.stop();
  const orders = (await snapshotOf(gw)).services.find((s) => s.name === 'orders')!;
  assert.deepEqual(orders.departed?.map((d) => [d.instance, d.cause]), [[drained.id, 'drained'], [frozen.id, 'lease-expired'], [killed.id, 'connection-lost']]);
  await page.screenshot({ path: artifact('departures.png'), fullPage: true });
});

test('badge: degraded when every endpoint fails and the service is in panic, every request a 502; tandem status says the same', async () => {
  // Nothing listens on these ports: health checks fail, the passive detector ejects, every request is refused.
  const dead = [await freePort(), await freePort(), await freePort()].map((p) => `127.0.0.1:${p}`);
  const gw = track(await startGateway({ services: { shop: { endpoints: dead } }, routes: [{ prefix: '/', service: 'shop' }] }));
  const page = await openDashboard(gw);
  const traffic = load(`${gw.url}/x`, 20);
  cleanup.push(() => traffic.stop());
  await badge(page, 'degraded');
  await reasonMatches(page, /^shop: no eligible instance \(3 unhealthy\), in panic: traffic sent to instances out of rotation, 100 % of \d+ requests failed \(5xx or no answer\) in the last 10 s$/);
  await page.waitForSelector('section[data-service="shop"][data-health="degraded"] h2.panic', { timeout: GUARD_MS });
  await page.screenshot({ path: artifact('badge-degraded-panic.png') });
  const outcome = await traffic.stop();
  assert.equal(outcome.ok, 0, 'every request failed');
  const snap = await snapshotOf(gw);
  assert.equal(snap.gateway.health, 'degraded');
  assert.deepEqual(snap.gateway.reasons?.map((r) => `${r.service} ${r.kind}`), ['shop no-eligible', 'shop panic', 'shop errors']);

  const status = await runCli(['status', '--admin', gw.adminUrl, '--once']);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^tandem \d+\.\d+\.\d+ {2}degraded {2}listen/);
  assert.match(status.stdout, /^ {2}! shop: no eligible instance \(3 unhealthy\), in panic: .*, 100 % of \d+ requests failed/m);
});

test('badge: degraded at a high error rate, ok again once it is over; the charts keep the history across a reload and move', async () => {
  // Every request to /boom answers 500 (not retried: the endpoint answered); the rest 200.
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    res.writeHead(req.url?.startsWith('/boom') ? 500 : 200, { 'content-type': 'text/plain' }).end('x');
  };
  const a = await startBackend('a', handler);
  const b = await startBackend('b', handler);
  cleanup.push(() => a.close(), () => b.close());
  const gw = track(await startGateway({
    services: { shop: { endpoints: [a.address, b.address], outlier: { consecutiveFailures: 1000 } } },
    routes: [{ prefix: '/', service: 'shop' }],
  }));
  const page = await openDashboard(gw);
  await badge(page, 'ok');
  const good = load(`${gw.url}/ok`, 20);
  const bad = load(`${gw.url}/boom`, 5);
  cleanup.push(() => good.stop(), () => bad.stop());
  await badge(page, 'degraded');
  await reasonMatches(page, /^shop: \d+ % of \d+ requests failed \(5xx or no answer\) in the last 10 s$/);
  await page.screenshot({ path: artifact('badge-degraded-errors.png') });
  await bad.stop();
  await badge(page, 'ok');

  // Charts: the points the page has; a reload shows them at once (from the gateway's history).
  const chart = 'section[data-service="shop"] .chart[data-metric="rate"] svg';
  const points = async () => Number(await page.getAttribute(chart, 'data-points'));
  await page.waitForFunction((selector) => Number(document.querySelector(selector)?.getAttribute('data-points')) >= 8, chart, { timeout: GUARD_MS });
  const before = await points();
  await page.locator('section[data-service="shop"]').screenshot({ path: artifact('charts.png') });
  await page.reload();
  await page.waitForSelector('#gw-health[data-health="ok"]', { timeout: GUARD_MS });
  assert.ok(await points() >= before, `after the reload: ${await points()} points, had ${before}`);
  const last = await page.getAttribute(chart, 'data-last');
  await page.waitForFunction(([selector, seen]) => document.querySelector(selector!)?.getAttribute('data-last') !== seen, [chart, last], { timeout: GUARD_MS });
  const errorLine = await page.getAttribute('section[data-service="shop"] .chart[data-metric="errorRate"] .line', 'd');
  assert.match(errorLine ?? '', /^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+)+/, 'the error chart has a line');
  const history = (await (await adminFetch(`${gw.adminUrl}/admin/history`)).json()) as { services: Array<{ service: string; t: number[]; rate: number[] }>; errorRule: { share: number } };
  assert.equal(history.errorRule.share, 0.05);
  const shopHistory = history.services.find((s) => s.service === 'shop')!;
  assert.ok(shopHistory.t.length >= before && shopHistory.rate.some((r) => r > 10), 'the gateway keeps the history');
  await good.stop();
});

test('badge: draining while the gateway drains; disconnected (since when, retrying) once it is gone or SIGKILLed; back when a gateway answers again', async () => {
  const held: ServerResponse[] = [];
  let seen = 0;
  const backend = await startBackend('slow', (req, res) => {
    req.resume();
    if (req.url === '/hold') {
      seen++;
      held.push(res);
    } else res.writeHead(200).end('ok');
  });
  cleanup.push(() => backend.close());
  // A fixed admin port: the page reconnects to the next gateway there (same secret, same cookie).
  const config = { admin: `127.0.0.1:${await freePort()}`, drainTimeout: '60s', services: { shop: { endpoints: [backend.address] } }, routes: [{ prefix: '/', service: 'shop' }] };
  const gw = track(await startGateway(config));
  const page = await openDashboard(gw);
  await badge(page, 'ok');

  const slow = fetch(`${gw.url}/hold`).then((r) => r.text(), () => 'failed');
  await waitFor('the slow request to reach the backend', () => seen === 1);
  gw.proc.kill('SIGTERM');
  await badge(page, 'draining');
  await reasonMatches(page, /^the gateway is draining: no new connections, 1 request in flight$/);
  await page.screenshot({ path: artifact('badge-draining.png') });

  for (const res of held) res.writeHead(200).end('done');
  assert.equal(await slow, 'done', 'the drain let the request finish');
  assert.equal(await gw.exited, 0);
  await badge(page, 'disconnected');

  const second = track(await startGateway(config));
  await badge(page, 'ok');
  second.proc.kill('SIGKILL');
  await second.exited;
  await badge(page, 'disconnected');
  await reasonMatches(page, /^since \d\d:\d\d:\d\d · last data \d\d:\d\d:\d\d · .* · retrying \(\d+ attempts?\)$/);
  // It keeps trying: the count of attempts goes up while nothing answers.
  await reasonMatches(page, /retrying \(([2-9]|\d\d+) attempts\)$/);
  assert.equal(await page.getAttribute('body', 'class'), 'stale', 'the numbers on the page are marked stale');
  await page.screenshot({ path: artifact('badge-disconnected.png') });

  track(await startGateway(config));
  await badge(page, 'ok');
});

test('390 px wide: no horizontal scrolling of the page; tables scroll in their own box or drop columns', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  cleanup.push(() => a.close(), () => b.close());
  const dead = `127.0.0.1:${await freePort()}`;
  const gw = track(await startGateway({
    services: { shop: { endpoints: [a.address, b.address, dead] }, orders: {} },
    routes: [{ prefix: '/orders', service: 'orders' }, { prefix: '/', service: 'shop' }],
  }));
  const page = await openDashboard(gw, 390);
  const traffic = load(`${gw.url}/x`, 20);
  cleanup.push(() => traffic.stop());
  await page.waitForSelector(`tr[data-endpoint="${dead}"]:is([data-state="unhealthy"], [data-state="ejected"])`, { timeout: GUARD_MS });
  await page.waitForFunction(() => Number(document.querySelector('section[data-service="shop"] .chart[data-metric="rate"] svg')?.getAttribute('data-points')) >= 5, undefined, { timeout: GUARD_MS });
  // A departed instance's row too: its state is the longest text a row has.
  const gone = track(await spawnInstance({ registry: gw.adminUrl, service: 'orders' }));
  await page.waitForSelector(`tr[data-endpoint="${gone.address}"]`, { timeout: GUARD_MS });
  gone.proc.kill('SIGKILL');
  await page.waitForSelector(`tr[data-endpoint="${gone.address}"][data-state="left"]`, { timeout: GUARD_MS });
  await badge(page, 'degraded');
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `the page is ${width} px wide`);
  assert.equal(await page.isVisible('section[data-service="shop"] th.c-est'), false, 'the estimate column is dropped');
  await page.screenshot({ path: artifact('narrow-390.png'), fullPage: true });
  await traffic.stop();
});
