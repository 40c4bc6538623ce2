import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { tokenFor } from '../../src/core/secret.js';
import { join } from 'node:path';
import { followJsonLines } from './json-lines.js';
import { request } from 'undici';
import { ROOT } from './gateway.js';
import { waitFor } from './wait.js';

export interface SdkInstance {
  proc: ChildProcess;
  id: string;
  address: string;
  lines: Array<Record<string, unknown>>;
  exited: Promise<number | string>;
  waitForLine(pred: (l: Record<string, unknown>) => boolean, guardMs?: number): Promise<Record<string, unknown>>;
}

/**
 * test/helpers/sdk-instance.ts (or another helper `script` that prints the same "serving" line)
 * as a real child process; resolves once serve() resolved in it.
 */
export async function spawnInstance(options: Record<string, unknown>, script = 'sdk-instance', spawnOptions: SpawnOptions = {}): Promise<SdkInstance> {
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'test', 'helpers', `${script}.js`), JSON.stringify(options)], { ...spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const { lines, waitFor: waitForLine } = followJsonLines(proc, exited, 'instance');
  const serving = await waitForLine((l) => l.msg === 'serving');
  return { proc, id: String(serving.id), address: String(serving.address), lines, exited, waitForLine };
}

export interface Snapshot {
  service: string;
  revision: number;
  instances: Array<{ id: string; address: string; state: string }>;
}

export async function registrySnapshot(adminUrl: string, service: string, token = tokenFor(new URL(adminUrl))): Promise<Snapshot> {
  const res = await request(`${adminUrl}/registry/v1/services/${service}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await res.body.json() as Snapshot;
  if (res.statusCode !== 200) throw new Error(`snapshot: ${res.statusCode} ${JSON.stringify(body)}`);
  return body;
}

/**
 * Polls until `pred` holds; returns the elapsed milliseconds, for a diagnostic (not for an
 * assertion: see helpers/wait.ts). The form with milliseconds before `what` is the old one,
 * still taken so that tests written against it keep compiling; the number is ignored: the
 * guard is the only bound.
 */
export async function until(pred: () => Promise<boolean> | boolean, ...args: [what?: string] | [ignoredMs: number, what?: string]): Promise<number> {
  const what = (typeof args[0] === 'number' ? args[1] : args[0]) ?? 'condition';
  const t0 = performance.now();
  await waitFor(what, pred, { intervalMs: 20 });
  return performance.now() - t0;
}
