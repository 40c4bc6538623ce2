// What the dashboard's browser tests share: steady load, and the page opened the way the demo
// prints its link (/?token=…, which sets the cookie and leaves the address bar).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { tokenFor } from '../../src/core/secret.js';
import { ROOT, type RunningGateway } from './gateway.js';
import { GUARD_MS } from './wait.js';

/** Screenshots of the dashboard (gitignored). */
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'dashboard');

export function artifact(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

/** Steady load until stopped: `rate` GETs a second, outcomes counted. */
export function load(url: string, rate: number): { stop(): Promise<{ ok: number; failed: number }> } {
  let ok = 0;
  let failed = 0;
  const inflight = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const p = fetch(url).then(async (r) => { await r.arrayBuffer(); if (r.status === 200) ok++; else failed++; }, () => { failed++; })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  }, 1000 / rate);
  // A test that fails before stop() must not keep its file running forever.
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(inflight);
      return { ok, failed };
    },
  };
}

export interface PageOptions {
  width?: number;
  height?: number;
  /** Undo steps, run after the file's tests (the page is closed there and checked for script errors). */
  cleanup: Array<() => Promise<unknown>>;
}

/** Opens the dashboard of `gw` and waits until its first snapshot is shown. */
export async function openDashboard(browser: Browser, gw: RunningGateway, options: PageOptions): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: options.width ?? 1400, height: options.height ?? 900 } });
  options.cleanup.push(() => page.close());
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  options.cleanup.push(async () => assert.deepEqual(errors, [], 'no script errors on the page'));
  await page.goto(`${gw.adminUrl}/?token=${encodeURIComponent(tokenFor(new URL(gw.adminUrl))!)}`);
  assert.equal(page.url(), `${gw.adminUrl}/`);
  await page.waitForSelector('#gw-health:is([data-health="ok"], [data-health="degraded"], [data-health="draining"])', { timeout: GUARD_MS });
  return page;
}
