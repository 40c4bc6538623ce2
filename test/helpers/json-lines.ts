import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The JSON lines a child process prints on stdout, and a wait for one that matches. */
export interface JsonLines {
  /** Every line so far, parsed; a line that is not JSON is kept as `{ raw }`. */
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  /** Resolves with the first line (so far or to come) matching `pred`; rejects on timeout or exit. */
  waitFor(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** Follows `proc`'s stdout (JSON lines) and stderr; `what` names it in error messages. */
export function followJsonLines(proc: ChildProcess, exited: Promise<unknown>, what: string): JsonLines {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      lines.push({ raw: line });
    }
    for (const w of waiters) w();
  });
  const waitFor = (pred: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000) =>
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
        reject(new Error(`${what}: timed out waiting for a line; stderr: ${stderr}; lines: ${JSON.stringify(lines)}`));
      }, timeoutMs);
      waiters.add(check);
      // A moment after the exit, for the last lines still in the pipe.
      void exited.then(() => setTimeout(() => {
        if (waiters.delete(check)) {
          clearTimeout(timer);
          reject(new Error(`${what} exited; stderr: ${stderr}; lines: ${JSON.stringify(lines)}`));
        }
      }, 50));
      check();
    });
  return { lines, stderr: () => stderr, waitFor };
}
