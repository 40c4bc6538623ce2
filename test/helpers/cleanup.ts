import { after } from 'node:test';

/** A child process as the helpers return it: killable, with a promise of its exit. */
export interface Killable {
  proc: { kill(sig?: NodeJS.Signals): boolean };
  exited: Promise<unknown>;
}

/**
 * What a test file started, undone once all its tests ran (last started, first undone; a step
 * that fails does not stop the others): `defer(...fns)` for undo steps, `track(p)` to SIGKILL a
 * child process and wait for its exit.
 */
export function cleanupAfterAll(): { defer(...fns: Array<() => Promise<unknown>>): void; track<T extends Killable>(p: T): T } {
  const steps: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of steps.reverse()) await step().catch(() => {});
  });
  return {
    defer: (...fns) => { steps.push(...fns); },
    track: (p) => {
      steps.push(async () => {
        p.proc.kill('SIGKILL');
        await p.exited;
      });
      return p;
    },
  };
}
