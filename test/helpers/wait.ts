import { once, type EventEmitter } from 'node:events';

/**
 * How tests wait: for the thing itself, never for a fixed time (docs/testing.md). A loaded
 * 2-core CI machine stretches every duration, so a test that sleeps "long enough" or asserts
 * "within X ms" fails there while the code is right.
 */

/**
 * The only bound on a wait: it stands in for a test timeout (node's runner has none by
 * default), so that a broken test fails with what it waited for instead of hanging. It is
 * far above any event a test waits for, even on a loaded machine; a test never relies on it.
 */
export const GUARD_MS = 60_000;

export interface WaitOptions {
  /** How often a probe that has no event to listen to is asked again. */
  intervalMs?: number;
  guardMs?: number;
}

/**
 * Resolves with the first truthy value `probe` returns: asked at once, then every intervalMs.
 * `what` names the awaited state in the error when the guard ends the wait (a function: the
 * state as it last was).
 */
export async function waitFor<T>(what: string | (() => string), probe: () => T | Promise<T>, options: WaitOptions = {}): Promise<NonNullable<T>> {
  const { intervalMs = 10, guardMs = GUARD_MS } = options;
  const start = performance.now();
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (performance.now() - start > guardMs) throw new Error(`still waiting for ${typeof what === 'string' ? what : what()} after ${guardMs} ms (the guard, not a timing expectation)`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Resolves with the arguments of `emitter`'s next `event`, rejecting past the guard. The guard
 * is a timer of its own (guarded): an `AbortSignal.timeout()` handed to once() is held weakly
 * and may be collected before it fires, leaving the wait to hang instead of failing.
 */
export async function nextEvent(emitter: EventEmitter, event: string, guardMs = GUARD_MS): Promise<unknown[]> {
  const stop = new AbortController();
  try {
    return await guarded(once(emitter, event, { signal: stop.signal }), `'${event}'`, guardMs);
  } finally {
    stop.abort();
  }
}

/**
 * Measures how long `fn` takes, for a diagnostic line only: tests report durations, they do
 * not assert them against the wall clock.
 */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/** `promise`, or a rejection naming `what` past the guard: for a wait with no probe to poll. */
export async function guarded<T>(promise: Promise<T>, what: string, guardMs = GUARD_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still waiting for ${what} after ${guardMs} ms (the guard, not a timing expectation)`)), guardMs);
  });
  try {
    return await Promise.race([promise, guard]);
  } finally {
    clearTimeout(timer);
  }
}
