import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { ROOT } from './gateway.js';

export interface Backend {
  server: Server;
  address: string;
  port: number;
  /** Requests seen, in order (health probes to /healthz left out). */
  seen: Array<{ method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[] }>;
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1, port 0. Default handler: 200 with JSON naming the backend. */
export async function startBackend(
  name: string,
  handler?: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Backend> {
  const seen: Backend['seen'] = [];
  const server = createServer((req, res) => {
    // The gateway's health probes are not traffic: tests count what clients sent.
    if (req.url !== '/healthz') seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders });
    if (handler) return handler(req, res);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(JSON.stringify({ backend: name, url: req.url }));
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** A raw TCP server: the test decides every byte (garbage, resets, silence). */
export async function startRawBackend(onSocket: (socket: Socket) => void): Promise<{ server: NetServer; address: string; port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/** Calls `onRequest` with the path of every request head on a keep-alive connection (GET, no body). */
export function eachRequest(socket: Socket, onRequest: (path: string) => void): void {
  let buffered = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    buffered += d;
    let end: number;
    while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
      const head = buffered.slice(0, end);
      buffered = buffered.slice(end + 4);
      onRequest(head.split(' ')[1] ?? '/');
    }
  });
}

/** Minimal config for one service named "shop" routed at "/". */
export function shopConfig(endpoints: string[], service: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    services: { shop: { endpoints, ...service } },
    routes: [{ prefix: '/', service: 'shop' }],
    ...extra,
  };
}

/** A port that was free a moment ago (for a process that must restart on the same port). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `n` distinct free ports on 127.0.0.1 for servers told their port: below the kernel's
 * ephemeral range, so no connection opened meanwhile takes one (scripts/lib/procs.js).
 */
export async function freePorts(n: number): Promise<number[]> {
  const procs = await import(pathToFileURL(join(ROOT, 'scripts', 'lib', 'procs.js')).href) as { freePorts(n: number): Promise<number[]> };
  return await procs.freePorts(n);
}

/** `node bench/backend.js PORT` as a real child process, resolved once it listens. */
export async function spawnBackend(port: number): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [join(ROOT, 'bench', 'backend.js'), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', () => resolve());
    proc.once('exit', (code) => reject(new Error(`backend on ${port} exited with ${code}`)));
  });
  return proc;
}

/** SIGKILL, and wait until the process is gone. */
export async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGKILL');
  await exited;
}

/** A handler that answers 200 with `name` as the body once the request body is read. */
export function answerOk(name: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(name));
  };
}
