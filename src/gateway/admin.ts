import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

/** What the admin listener shows; the gateway implements it. */
export interface AdminView {
  ready(): boolean;
  cluster(): unknown;
  registry: Registry;
}

/**
 * The admin listener: /healthz (the process is up), /readyz (it should get traffic: listening
 * and not draining), /metrics (Prometheus), /admin/cluster (JSON state).
 */
export function createAdminServer(view: AdminView): Server {
  return createServer((req, res) => {
    handle(view, req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`internal error: ${(err as Error).message}\n`);
    });
  });
}

async function handle(view: AdminView, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
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
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /healthz /readyz /metrics /admin/cluster\n');
  }
}
