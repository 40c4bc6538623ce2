import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Deadlines that follow a request through a service. The gateway tells every instance how long
 * it will wait, in `x-tandem-timeout-ms`; the node SDK turns that into a deadline for the
 * handling of the request (an AsyncLocalStorage context), and the service client gives its
 * calls only the time that is left — so a service never works on an answer nobody waits for.
 */

/** Request header: milliseconds the caller will wait for the response headers. */
export const TIMEOUT_HEADER = 'x-tandem-timeout-ms';

/**
 * What follows the handling of one request: its deadline, the last dependency (a service called
 * through tandem/client) that failed while handling it, and the request's response object, so
 * that a 5xx answer can say the failure was the dependency's, not this instance's
 * (core/dependency.ts).
 */
interface RequestContext {
  readonly deadline: number | undefined;
  readonly response: object | undefined;
  failedDependency: string | undefined;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** Told of a dependency failure while a request with a response object is handled (tandem/node). */
let onFailedDependency: ((response: object, service: string) => void) | undefined;

/** The deadline (performance.now() scale) of the request being handled, if it has one. */
export function currentDeadline(): number | undefined {
  return storage.getStore()?.deadline;
}

/**
 * Runs `fn` with `deadline` as the current deadline (undefined: none). `response` (tandem/node
 * passes the request's ServerResponse) is handed to the dependency-failure listener.
 */
export function runWithDeadline<T>(deadline: number | undefined, fn: () => T, response?: object): T {
  return storage.run({ deadline, response, failedDependency: undefined }, fn);
}

/** Notes, for the request being handled (if any), that a call to `service` failed. */
export function noteFailedDependency(service: string): void {
  const context = storage.getStore();
  if (context === undefined) return;
  context.failedDependency = service;
  if (context.response !== undefined) onFailedDependency?.(context.response, service);
}

/** The service whose call last failed while handling the current request, if any. */
export function currentFailedDependency(): string | undefined {
  return storage.getStore()?.failedDependency;
}

/** Installs the one listener for dependency failures (tandem/node marks the response). */
export function listenForFailedDependencies(listener: (response: object, service: string) => void): void {
  onFailedDependency = listener;
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
