import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { after, before } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { GUARD_MS } from './wait.js';

/** Debian's chromium, driven by playwright-core (no browser download from elsewhere). */
export const CHROMIUM = process.env.TANDEM_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Installs Debian's chromium when it is missing (as .ci/run does): apt-get as root, or through
 * sudo when it needs no password. Throws with the command to run otherwise.
 */
export function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  const root = process.getuid?.() === 0;
  const sudo = root ? [] : ['sudo', '-n'];
  const run = (args: string[]) => spawnSync(sudo[0] ?? args[0]!, [...sudo.slice(1), ...(root ? args.slice(1) : args)], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 600_000 });
  run(['apt-get', 'update']);
  run(['apt-get', 'install', '-y', '--no-install-recommends', 'chromium']);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing and could not be installed: run \`apt-get update && apt-get install -y chromium\` as root`);
}

export async function launchBrowser(): Promise<Browser> {
  ensureChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
    timeout: GUARD_MS,
  });
}

/**
 * One browser for a test file: launched before its tests; after them, everything pushed on
 * `cleanup` is undone, last first (a step that fails does not stop the others), the browser last.
 */
export function browserForFile(): { browser: () => Browser; cleanup: Array<() => Promise<unknown>> } {
  const cleanup: Array<() => Promise<unknown>> = [];
  let browser: Browser | undefined;
  before(async () => {
    browser = await launchBrowser();
    cleanup.push(() => browser!.close());
  });
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => {});
  });
  return { browser: () => browser!, cleanup };
}
