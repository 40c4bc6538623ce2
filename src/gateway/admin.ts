import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import type { ClusterFeed } from './dashboard-feed.js';
import { DASHBOARD_HTML, dashboardScript } from './dashboard-page.js';
import { refuseAdmin, type AdminGuardView } from './admin-guard.js';
import { HOLDS_ADDRESS_HEADER } from './peer-watch.js';

/** What the admin listener shows; the gateway implements it. */
export interface AdminView {
  ready(): boolean;
  /**
   * A pair's handover is under way and has not released the address yet: the gateway decides
   * when it goes (its track file), so /readyz?address still says to hold it.
   */
  releasing?(): boolean;
  /** Whether this gateway holds the virtual address (null: none configured): said on /readyz for the peers. */
  holdsAddress?(): boolean | null;
  cluster(): unknown;
  registry: Registry;
  /** The registry API (registry-api.ts): answers and returns true for its own paths. */
  registryApi?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean;
  /** The dashboard's data: `/` (the page), /admin/dashboard (JSON), /admin/stream (server-sent events). */
  feed?: ClusterFeed;
  /** Who may use the listener (admin-guard.ts); every request passes it first. */
  guard: AdminGuardView;
}

/** The slow-client limits the admin listener shares with the public one. */
export interface AdminLimits {
  headersTimeout: number;
}

/**
 * The admin listener: /healthz (the process is up), /readyz (it should get traffic: listening
 * and not draining), /metrics (Prometheus), /admin/cluster (JSON state), /registry/v1/ (the
 * embedded registry, docs/registry.md), and the dashboard: / (the page), /dashboard/*.js (its
 * modules), /admin/dashboard (its data as JSON, also read by `tandem status`), /admin/history
 * (the last minutes of each service, for the charts), /admin/stream (the history once, then
 * the data live, as server-sent events).
 */
export function createAdminServer(view: AdminView, limits: AdminLimits): Server {
  // requestTimeout 0: a registry keep-alive is one request that lasts as long as its lease.
  // Its body and every other one are guarded by the registry API's own read timeout.
  const server = createServer({
    requestTimeout: 0,
    headersTimeout: limits.headersTimeout,
    // Node checks the header timeout this often; its 30 s default would let a slowloris
    // hold a connection far past the limit.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, limits.headersTimeout / 4)),
    noDelay: true,
  }, (req, res) => {
    handle(view, req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(`${JSON.stringify({ error: { code: 'TANDEM_ERR_INTERNAL', message: (err as Error).message } })}\n`);
    });
  });
  return server;
}

async function handle(view: AdminView, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (refuseAdmin(view.guard, req, res, path, q < 0 ? '' : url.slice(q))) {
    req.resume();
    return;
  }
  if (view.registryApi?.(req, res, path)) return;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    return;
  }
  switch (path) {
    case '/healthz':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    case '/readyz': {
      // ?address: whether this gateway should hold a pair's virtual address (keepalived's check and
      // tandem watchdog ask this): while ready, and during a handover until it released the address
      // by its track file — a 503 then would move the address before the open connections ended.
      const ready = view.ready();
      const hold = ready || (q >= 0 && url.slice(q + 1) === 'address' && view.releasing?.() === true);
      const holds = view.holdsAddress?.() ?? null;
      res.writeHead(hold ? 200 : 503, { 'content-type': 'text/plain', ...(holds === null ? {} : { [HOLDS_ADDRESS_HEADER]: String(holds) }) })
        .end(ready ? 'ready\n' : hold ? 'releasing the address\n' : 'not ready\n');
      return;
    }
    case '/metrics': {
      const text = await view.registry.metrics();
      res.writeHead(200, { 'content-type': view.registry.contentType }).end(text);
      return;
    }
    case '/':
      if (!view.feed) break;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(DASHBOARD_HTML);
      return;
    case '/dashboard.js':
      if (!view.feed) break;
      // The old entry point: the modules live under /dashboard/ (their imports are relative).
      script(res, "import './dashboard/app.js';\n");
      return;
    case '/admin/dashboard':
      if (!view.feed) break;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(view.feed.snapshot())}\n`);
      return;
    case '/admin/history':
      if (!view.feed) break;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(view.feed.history())}\n`);
      return;
    case '/admin/stream':
      if (!view.feed) break;
      stream(view.feed, req, res);
      return;
    case '/admin/cluster':
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(`${JSON.stringify(view.cluster(), null, 2)}\n`);
      return;
  }
  if (view.feed && path.startsWith('/dashboard/') && script(res, dashboardScript(path.slice('/dashboard/'.length)))) return;
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try / /healthz /readyz /metrics /admin/cluster /registry/v1/services\n');
}

/** One of the dashboard's modules; false when there is none of that name. */
function script(res: ServerResponse, text: string | undefined): boolean {
  if (text === undefined) return false;
  res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' }).end(text);
  return true;
}

/** Largest backlog a stream may have before snapshots are skipped for it (a slow viewer). */
const STREAM_BACKLOG = 1024 * 1024;
/** Each message is serialized once, however many viewers. */
const serialized = new WeakMap<object, string>();

/**
 * Server-sent events: the history (so the charts start full), the current snapshot, then a
 * snapshot each second and each timeline event as it happens.
 */
function stream(feed: ClusterFeed, req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
  res.socket?.setNoDelay(true);
  const send = (type: string, data: object) => {
    let text = serialized.get(data);
    if (text === undefined) {
      text = `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
      serialized.set(data, text);
    }
    res.write(text);
  };
  res.write('retry: 2000\n\n');
  res.write(`event: history\ndata: ${JSON.stringify(feed.history())}\n\n`);
  send('snapshot', feed.snapshot());
  const subscription = feed.subscribe((m) => {
    if (m.type === 'snapshot' && res.writableLength > STREAM_BACKLOG) return;
    send(m.type, m.data);
  });
  res.once('close', () => subscription.dispose());
}
