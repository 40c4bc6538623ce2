import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GUARD_MS } from './wait.js';

export const NATS_SERVER = process.env.TANDEM_NATS_SERVER ?? '/usr/sbin/nats-server';

/** A nats-server of the test's own (JetStream, file store in a temp dir, a free port) that it may stop and restart. */
export interface OwnNatsServer {
  url: string;
  port: number;
  start(): Promise<void>;
  /** SIGTERM (or SIGKILL) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops it and removes its store. */
  destroy(): Promise<void>;
}

/**
 * Starts nats-server and resolves with the port it listens on once it says it is ready; rejects
 * with its log when it exits first (a port taken meanwhile, a bad store). `port` -1 lets the
 * server pick a free port itself — no window in which another process could take it.
 */
function launch(dir: string, port: number): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(NATS_SERVER, ['-js', '-sd', dir, '-p', String(port), '-a', '127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise((resolve, reject) => {
    let log = '';
    let listening = port;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`nats-server not ready after ${GUARD_MS} ms (the guard): ${log.slice(-500)}`));
    }, GUARD_MS);
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
      if (m) listening = Number(m[1]);
      if (log.includes('Server is ready')) {
        clearTimeout(timer);
        proc.stderr!.removeAllListeners('data').resume();
        resolve({ proc, port: listening });
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`nats-server exited (${code}) before it was ready: ${log.slice(-500)}`));
    });
  });
}

export async function startNatsServer(): Promise<OwnNatsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-nats-'));
  // The first start picks its own port; restarts take the same one again.
  const first = await launch(dir, -1);
  let proc: ChildProcess | undefined = first.proc;
  const port = first.port;
  const server: OwnNatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    async start() {
      ({ proc } = await launch(dir, port));
    },
    async stop(signal = 'SIGTERM') {
      const p = proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    async destroy() {
      await server.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}
