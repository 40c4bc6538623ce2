import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Deadlines that follow a request through a service. The gateway tells every instance how long
 * it will wait, in `x-tandem-timeout-ms`; the node SDK turns that into a deadline for the
 * handling of the request (an AsyncLocalStorage context), and the service client gives its
 * calls only the time that is left — so a service never works on an answer nobody waits for.
 */

/** Request header: milliseconds the caller will wait for the response headers. */
export const TIMEOUT_HEADER = 'x-tandem-timeout-ms';

const storage = new AsyncLocalStorage<number>();

/** The deadline (performance.now() scale) of the request being handled, if it has one. */
export function currentDeadline(): number | undefined {
  return storage.getStore();
}

/** Runs `fn` with `deadline` as the current deadline (undefined: none). */
export function runWithDeadline<T>(deadline: number | undefined, fn: () => T): T {
  return deadline === undefined ? storage.run(undefined as unknown as number, fn) : storage.run(deadline, fn);
}

/**
 * The deadline a request's `x-tandem-timeout-ms` sets, counted from `receivedAt`; undefined when
 * the header is absent or not a positive integer.
 */
export function deadlineOf(headers: Record<string, string | string[] | undefined>, receivedAt: number = performance.now()): number | undefined {
  const raw = headers[TIMEOUT_HEADER];
  const value = typeof raw === 'string' ? raw : undefined;
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined;
  const ms = Number(value);
  return ms > 0 ? receivedAt + ms : undefined;
}
