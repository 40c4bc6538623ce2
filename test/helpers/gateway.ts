import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followJsonLines } from './json-lines.js';
import { GUARD_MS } from './wait.js';
import { tokenFor } from '../../src/core/secret.js';

/** Repo root (tests run from dist/test/…). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'tandem.js');

/** The minimal gateway file, verbatim (other tools rely on exactly these keys). */
export const MINIMAL_YAML = `listen: 127.0.0.1:8080
admin: 127.0.0.1:9901
services:
  shop:
    endpoints: [127.0.0.1:7001, 127.0.0.1:7002, 127.0.0.1:7003]
routes:
  - prefix: /
    service: shop
`;

export function tempDir(prefix = 'tandem-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a config (object → JSON, string → YAML as is) to a temp file and returns its path. */
export function writeConfig(config: object | string, dir = tempDir()): string {
  const file = join(dir, typeof config === 'string' ? 'gateway.yaml' : 'gateway.json');
  writeFileSync(file, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  return file;
}

export interface RunningGateway {
  proc: ChildProcess;
  /** http://host:port of the client listener */
  url: string;
  host: string;
  port: number;
  adminUrl: string;
  configFile: string;
  /** Every JSON log line so far. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  /** Waits until a log line satisfies the predicate. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, guardMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM (default) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Starts `tandem gateway` as a real child process. Unless the config says otherwise, both
 * listeners bind port 0 and the test reads the real ports from the "listening" log line.
 */
export async function startGateway(config: Record<string, unknown>, opts: { file?: string; args?: string[] } = {}): Promise<RunningGateway> {
  const full = { listen: '127.0.0.1:0', admin: '127.0.0.1:0', ...config };
  const configFile = opts.file ?? writeConfig(full);
  if (opts.file) writeFileSync(opts.file, JSON.stringify(full, null, 2));
  const proc = spawn(process.execPath, [BIN, 'gateway', '--config', configFile, ...(opts.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => {
    // The temp dir this helper made for the config goes with the process.
    if (!opts.file) rmSync(dirname(configFile), { recursive: true, force: true });
    resolve(code ?? signal ?? -1);
  }));
  const { lines: logs, stderr, waitFor: waitForLog } = followJsonLines(proc, exited, 'gateway');
  let listening: Record<string, unknown>;
  try {
    listening = await waitForLog((l) => l.msg === 'listening');
  } catch (err) {
    // Nobody holds this process yet: left running, it would keep the test file from ever ending.
    proc.kill('SIGKILL');
    throw err;
  }
  const listen = String(listening.listen);
  const colon = listen.lastIndexOf(':');
  return {
    proc,
    url: `http://${listen}`,
    host: listen.slice(0, colon),
    port: Number(listen.slice(colon + 1)),
    adminUrl: `http://${String(listening.admin)}`,
    configFile,
    logs,
    stderr,
    exited,
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], timeoutMs = GUARD_MS): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`tandem ${args.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The sum of the /metrics samples whose line matches `pattern` (0 when none does). */
export async function metricSum(gw: RunningGateway, pattern: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** One service's entry in /admin/cluster. */
export async function clusterService<T>(gw: RunningGateway, name: string): Promise<T> {
  const body = (await (await adminFetch(`${gw.adminUrl}/admin/cluster`)).json()) as { services: Array<{ name: string }> };
  return body.services.find((s) => s.name === name) as T;
}

/**
 * fetch() for the admin listener with the secret a client on this host finds by itself
 * (TANDEM_TOKEN, or the gateway's generated one): /admin, the registry and the dashboard need it.
 */
export function adminFetch(url: string, init: RequestInit = {}): Promise<Response> {
  const token = tokenFor(new URL(url));
  const headers = new Headers(init.headers);
  if (token !== undefined && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`);
  return fetch(url, { ...init, headers });
}
