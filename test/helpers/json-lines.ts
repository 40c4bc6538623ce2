import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { GUARD_MS } from './wait.js';

/** The JSON lines a child process prints on stdout, and a wait for one that matches. */
export interface JsonLines {
  /** Every line so far, parsed; a line that is not JSON is kept as `{ raw }`. */
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  /**
   * Resolves with the first line (so far or to come) matching `pred`; rejects once the process
   * exited and its output ended without one, or past the guard (helpers/wait.ts).
   */
  waitFor(pred: (line: Record<string, unknown>) => boolean, guardMs?: number): Promise<Record<string, unknown>>;
}

/** Follows `proc`'s stdout (JSON lines) and stderr; `what` names it in error messages. */
export function followJsonLines(proc: ChildProcess, exited: Promise<unknown>, what: string): JsonLines {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const reader = createInterface({ input: proc.stdout! });
  // The last lines are read once stdout ends, which may come after the exit event.
  const ended = new Promise<void>((resolve) => reader.once('close', resolve));
  reader.on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ raw: line });
    }
    for (const w of waiters) w();
  });
  const waitFor = (pred: (line: Record<string, unknown>) => boolean, guardMs = GUARD_MS) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const hit = lines.find(pred);
        if (hit) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${what}: still waiting for a line after ${guardMs} ms; stderr: ${stderr}; lines: ${JSON.stringify(lines)}`));
      }, guardMs);
      waiters.add(check);
      void Promise.all([exited, ended]).then(() => {
        if (waiters.delete(check)) {
          clearTimeout(timer);
          reject(new Error(`${what} exited; stderr: ${stderr}; lines: ${JSON.stringify(lines)}`));
        }
      });
      check();
    });
  return { lines, stderr: () => stderr, waitFor };
}
