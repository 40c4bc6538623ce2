import { openDrainables } from '../core/drain.js';
import { TandemError } from '../core/errors.js';
import { RegistryLink, type LinkLogger } from './registry-link.js';
import type { Registration } from '../discovery/types.js';

/** A check passes when it returns (or resolves to) anything but `false` without throwing. */
export type Check = () => unknown;

/** Part of the drain (see ServeOptions.onDrain); may return a promise. */
export type DrainHook = () => unknown;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs one check: passed, or failed with the error's message when it threw. */
export async function runCheck(check: Check): Promise<{ ok: boolean; error?: string }> {
  try {
    return (await check()) === false ? { ok: false } : { ok: true };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

export async function allPass(checks: ReadonlyMap<string, Check>): Promise<boolean> {
  for (const check of checks.values()) {
    if (!(await runCheck(check)).ok) return false;
  }
  return true;
}

/**
 * The end of every drain, once no request is in flight: the open tandem/events buses (each
 * waits for its running handlers), then the application's hooks, last added first, within
 * `timeoutMs`. A hook that throws is logged and the others still run.
 */
export async function closeBusesAndHooks(hooks: readonly DrainHook[], timeoutMs: number, log: LinkLogger): Promise<void> {
  const work = (async () => {
    const buses = openDrainables();
    if (buses.length > 0) log.info({ msg: 'closing', what: buses.map((b) => b.drainName) });
    await Promise.all(buses.map((b) => b.close().catch((err: unknown) => log.warn({ msg: 'close failed', what: b.drainName, error: (err as Error).message }))));
    for (const hook of [...hooks].reverse()) {
      try {
        await hook();
      } catch (err) {
        log.warn({ msg: 'drain hook failed', error: (err as Error).message });
      }
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<true>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs); });
  const timedOut = await Promise.race([work.then(() => false), late]);
  clearTimeout(timer);
  if (timedOut) throw new TandemError('TANDEM_ERR_DRAIN_TIMEOUT', `buses and drain hooks still running after ${timeoutMs} ms (drainTimeout)`);
}

/**
 * Drains on SIGTERM and SIGINT, then exits 0 (1 when the drain failed). Installed before
 * anything else: a signal while starting drains too (nothing to deregister yet).
 */
export function drainOnSignals(close: () => Promise<void>, log: LinkLogger): void {
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ msg: 'signal', signal });
    close().then(() => process.exit(0), (err: unknown) => {
      log.warn({ msg: 'drain failed', error: (err as Error).message });
      process.exit(1);
    });
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

/** What registering needs of serve()'s and serveGrpc()'s options. */
export interface JoinOptions {
  registry: string | readonly string[];
  token?: string;
  heartbeatInterval: number;
  registryTimeout: number;
}

/** Registers with every registry of `options` and starts heartbeating; resolves once each took the registration. */
export async function joinRegistries(options: JoinOptions, registration: () => Registration, log: LinkLogger): Promise<RegistryLink[]> {
  const urls = typeof options.registry === 'string' ? [options.registry] : [...options.registry];
  const links = urls.map((url) => new RegistryLink({
    url, token: options.token, registration, heartbeatInterval: options.heartbeatInterval, answerTimeout: options.registryTimeout, log,
  }));
  await Promise.all(links.map((l) => l.start()));
  return links;
}
