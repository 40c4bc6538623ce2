import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

/** What the admin listener shows; the gateway implements it. */
export interface AdminView {
  ready(): boolean;
  cluster(): unknown;
  registry: Registry;
  /** The registry API (registry-api.ts): answers and returns true for its own paths. */
  registryApi?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean;
}

/**
 * The admin listener: /healthz (the process is up), /readyz (it should get traffic: listening
 * and not draining), /metrics (Prometheus), /admin/cluster (JSON state), /registry/v1/ (the
 * embedded registry, docs/registry.md).
 */
export function createAdminServer(view: AdminView): Server {
  // requestTimeout 0: a registry keep-alive is one request that lasts as long as its lease.
  return createServer({ requestTimeout: 0, noDelay: true }, (req, res) => {
    handle(view, req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`internal error: ${(err as Error).message}\n`);
    });
  });
}

async function handle(view: AdminView, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
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
      const ready = view.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
      return;
    }
    case '/metrics': {
      const text = await view.registry.metrics();
      res.writeHead(200, { 'content-type': view.registry.contentType }).end(text);
      return;
    }
    case '/admin/cluster':
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        .end(`${JSON.stringify(view.cluster(), null, 2)}\n`);
      return;
    default:
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz /readyz /metrics /admin/cluster /registry/v1/services\n');
  }
}
