import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isTandemError, TandemError } from '../core/errors.js';
import type { EmbeddedRegistry } from '../discovery/embedded.js';
import { forbiddenAddress } from '../discovery/address-policy.js';
import { checkRegistration } from '../discovery/registration.js';

/** The prefix of every registry route on the admin listener. */
export const REGISTRY_API_PREFIX = '/registry/v1/';

export interface RegistryApiOptions {
  /**
   * Why an instance may not have this address (an IP literal), or undefined. The gateway
   * refuses its own listeners: an instance registered there would make the gateway proxy
   * public requests to itself — to its admin listener, as a loopback peer.
   */
  refuseAddress?: (ip: string, port: number) => string | undefined;
  /** Longest wait for a JSON request body, from the headers on (a slow body is cut with 408). */
  bodyTimeout?: number;
}

type Handler = (registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, param: string, options: RegistryApiOptions) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  write: boolean;
  handler: Handler;
}

const ROUTES: Route[] = [
  { method: 'POST', pattern: /^instances$/, write: true, handler: register },
  { method: 'POST', pattern: /^leases\/([^/]+)\/keepalive$/, write: true, handler: keepAlive },
  { method: 'POST', pattern: /^leases\/([^/]+)\/heartbeat$/, write: true, handler: heartbeat },
  { method: 'PUT', pattern: /^leases\/([^/]+)\/state$/, write: true, handler: setState },
  { method: 'DELETE', pattern: /^leases\/([^/]+)$/, write: true, handler: deregister },
  { method: 'GET', pattern: /^services$/, write: false, handler: services },
  { method: 'GET', pattern: /^services\/([^/]+)$/, write: false, handler: service },
  { method: 'GET', pattern: /^services\/([^/]+)\/watch$/, write: false, handler: watch },
];

/**
 * Serves the embedded registry over HTTP (JSON) under /registry/v1/ on the admin listener; see
 * docs/registry.md. Returns false when the path is not a registry route. Who may call it is
 * decided before, by the admin listener's guard (admin-guard.ts).
 */
export function handleRegistryApi(registry: EmbeddedRegistry, options: RegistryApiOptions, req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (!path.startsWith(REGISTRY_API_PREFIX)) return false;
  const rest = path.slice(REGISTRY_API_PREFIX.length);
  const candidates = ROUTES.filter((r) => r.pattern.test(rest));
  const route = candidates.find((r) => r.method === req.method || (r.method === 'GET' && req.method === 'HEAD'));
  if (!route) {
    if (candidates.length > 0) {
      const allow = candidates.map((r) => r.method).join(', ');
      fail(res, new TandemError('TANDEM_ERR_REGISTRY_INVALID', `method ${req.method} not allowed here (allowed: ${allow})`, { status: 405 }), { allow });
    } else fail(res, new TandemError('TANDEM_ERR_REGISTRY_INVALID', `no registry route ${req.method} ${path} — see docs/registry.md`, { status: 404 }));
    req.resume();
    return true;
  }
  const match = route.pattern.exec(rest);
  let param = '';
  try {
    param = decodeURIComponent(match?.[1] ?? '');
  } catch {
    fail(res, new TandemError('TANDEM_ERR_REGISTRY_INVALID', 'malformed percent-encoding in the path', { status: 400 }));
    return true;
  }
  new Promise<void>((resolve) => resolve(route.handler(registry, req, res, param, options))).catch((err: unknown) => {
    req.resume();
    fail(res, err);
  });
  return true;
}

function peerOf(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

async function register(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, _param: string, options: RegistryApiOptions): Promise<void> {
  const body = await readJson(req, res, registry.limits.maxMetadataSize + 4096, options.bodyTimeout);
  // Field checks first, so a malformed registration gets its precise answer before any lookup.
  const { instance } = checkRegistration(body, registry.limits);
  await vetAddress(instance.host, instance.port, options);
  const lease = registry.registerNow(body, { peer: peerOf(req) });
  json(res, 201, { lease: { id: lease.id, ttl: lease.ttl }, instance: lease.instance });
}

function heartbeat(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, lease: string): void {
  req.resume();
  const entry = registry.heartbeatNow(lease);
  json(res, 200, { ttl: entry.ttl });
}

async function setState(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, lease: string, options: RegistryApiOptions): Promise<void> {
  const body = await readJson(req, res, 1024, options.bodyTimeout);
  const keys = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body) : [];
  const unknown = keys.find((k) => k !== 'state');
  if (unknown !== undefined) throw new TandemError('TANDEM_ERR_REGISTRY_INVALID', `${unknown}: unknown field (known: state)`, { status: 400 });
  const instance = registry.setStateNow(lease, (body as { state?: unknown } | null)?.state);
  // Answered after the gateway's upstreams applied the change (synchronous subscribers).
  json(res, 200, { instance });
}

function deregister(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, lease: string): void {
  req.resume();
  registry.deregisterNow(lease);
  res.writeHead(204).end();
}

function services(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const list = registry.serviceNames().map((name) => {
    const s = registry.snapshotNow(name);
    return { service: name, revision: s.revision, instances: s.instances.length };
  });
  json(res, 200, { revision: registry.currentRevision, instances: registry.size, services: list });
}

function service(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, name: string): void {
  req.resume();
  json(res, 200, registry.snapshotNow(name));
}

/**
 * The lease's heartbeats as one long request: every chunk of the request body renews the lease
 * (a few bytes on an open connection instead of a request per beat). The response is NDJSON:
 * `{"kind":"ok","ttl":N,"ack":true}` at once, `{"kind":"ok"}` for every chunk after (so the
 * instance can tell a frozen or vanished gateway from a quiet one: HttpRegistry's answer
 * check), `{"kind":"expired"}` if the lease ends. When the connection breaks before the body
 * ended — the process died and its kernel closed the socket — the lease ends at once instead
 * of at its TTL.
 */
function keepAlive(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, lease: string): void {
  const entry = registry.heartbeatNow(lease);
  req.socket.setNoDelay(true);
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.write(`{"kind":"ok","ttl":${entry.ttl},"ack":true}\n`);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    dispose();
    res.end('{"kind":"expired"}\n');
  };
  const dispose = registry.onLeaseEnd(lease, () => end());
  req.on('data', () => {
    if (ended) return;
    if (!registry.has(lease)) return end();
    registry.heartbeatNow(lease);
    res.write(BEAT_ACK);
  });
  req.once('end', () => {
    // A clean end: the instance stopped beating on purpose; the lease runs out on its TTL
    // (or was deregistered).
    if (!ended) {
      ended = true;
      dispose();
      res.end();
    }
  });
  req.once('close', () => {
    if (ended || req.complete) return;
    ended = true;
    dispose();
    registry.expireNow(lease);
  });
}

const BEAT_ACK = '{"kind":"ok"}\n';

/** A watch stream with no change says so this often, so a watcher can tell a quiet registry from a dead connection. */
export const WATCH_PING_INTERVAL = 15_000;

async function watch(registry: EmbeddedRegistry, req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
  req.resume();
  const abort = new AbortController();
  const ping = setInterval(() => res.write('{"kind":"ping"}\n'), WATCH_PING_INTERVAL);
  ping.unref();
  res.once('close', () => {
    clearInterval(ping);
    abort.abort();
  });
  req.socket.setNoDelay(true);
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  for await (const snapshot of registry.watch(name, { signal: abort.signal })) {
    if (!res.write(`${JSON.stringify(snapshot)}\n`)) {
      // A slow reader: wait, and the registry keeps only the newest snapshot meanwhile.
      await new Promise<void>((resolve) => {
        res.once('drain', resolve);
        res.once('close', resolve);
      });
    }
  }
  res.end();
}

/**
 * Refuses an address by every IP it stands for: a name is looked up now, so one that resolves
 * to a listener of this gateway or to a link-local address is refused like the literal. (What
 * a name resolves to later is DNS's business; docs/security.md recommends IP addresses.)
 */
async function vetAddress(host: string, port: number, options: RegistryApiOptions): Promise<void> {
  let ips: string[];
  if (isIP(host) !== 0) ips = [host];
  else {
    try {
      ips = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch (err) {
      throw new TandemError('TANDEM_ERR_REGISTRY_INVALID', `address: "${host}" does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); register an IP address`, { status: 400 });
    }
  }
  for (const ip of ips) {
    const why = forbiddenAddress(ip) ?? options.refuseAddress?.(ip, port);
    if (why !== undefined) throw new TandemError('TANDEM_ERR_REGISTRY_INVALID', `address: ${host === ip ? '' : `${host} is ${ip}: `}${why}`, { status: 400 });
  }
}

function readJson(req: IncomingMessage, res: ServerResponse, limit: number, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolveBody, rejectBody) => {
    // The whole body (a few KiB at most) within the timeout: one byte a second does not hold a
    // connection. The answer closes it: the rest of the body is not read.
    const timer = setTimeout(() => {
      req.removeAllListeners('data');
      if (!res.headersSent) res.setHeader('connection', 'close');
      rejectBody(new TandemError('TANDEM_ERR_REGISTRY_INVALID', `the request body did not arrive within ${timeoutMs} ms`, { status: 408 }));
    }, timeoutMs);
    timer.unref();
    const resolve = (value: unknown) => {
      clearTimeout(timer);
      resolveBody(value);
    };
    const reject = (err: unknown) => {
      clearTimeout(timer);
      rejectBody(err);
    };
    req.once('close', () => clearTimeout(timer));
    const declared = Number(req.headers['content-length'] ?? -1);
    if (declared > limit) {
      req.resume();
      reject(tooLarge(declared, limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(tooLarge(size, limit));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => {
      if (size > limit) return;
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return reject(new TandemError('TANDEM_ERR_REGISTRY_INVALID', 'the request body is empty: send JSON', { status: 400 }));
      try {
        resolve(JSON.parse(text) as unknown);
      } catch (err) {
        reject(new TandemError('TANDEM_ERR_REGISTRY_INVALID', `the body is not valid JSON: ${(err as Error).message}`, { status: 400 }));
      }
    });
    req.once('error', reject);
  });
}

function tooLarge(size: number, limit: number): TandemError {
  return new TandemError('TANDEM_ERR_REGISTRY_LIMIT', `the request body (${size} bytes or more) is larger than ${limit} bytes — is the metadata too large? (registry.maxMetadataSize)`, { status: 413 });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(body)}\n`);
}

function fail(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const e = isTandemError(err) ? err : new TandemError('TANDEM_ERR_INTERNAL', (err as Error).message, { status: 500 });
  res.writeHead(e.status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
    .end(`${JSON.stringify({ error: { code: e.code, message: e.message } })}\n`);
}
