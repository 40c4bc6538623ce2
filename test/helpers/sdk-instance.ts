// A service instance as a real child process, using the node SDK. For tests.
// Usage: node sdk-instance.js '<json options>'
//   { registry: string | string[], service, token?, kind: 'http' | 'express', port?: number, id?: string,
//     ttl?, heartbeatInterval?, drainQuietPeriod? }
// Prints one JSON line {"msg":"serving","id","address"} once serve() resolved. Every request is
// answered with {"instance": id, "method", "url", "body", "timeout"} (timeout: the request's
// x-tandem-timeout-ms; traceparent: the request's traceparent); ?delay=MS delays the answer.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import express from 'express';
import { serve } from '../../src/node/index.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as {
  registry: string | string[]; service: string; token?: string; kind?: 'http' | 'express'; port?: number; id?: string;
  ttl?: number; heartbeatInterval?: number; drainQuietPeriod?: number;
};
let id = opts.id ?? '';

function answer(method: string, url: string, body: string, res: ServerResponse, delay: number, timeout?: string | string[]): void {
  const traceparent = res.req.headers.traceparent ?? null;
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ instance: id, method, url, body, timeout: timeout ?? null, traceparent }));
  }, delay);
}

function delayOf(url: string): number {
  return Number(new URL(url, 'http://x').searchParams.get('delay') ?? 0);
}

let server;
if (opts.kind === 'express') {
  const app = express();
  app.use(express.text({ type: '*/*' }));
  app.use((req, res) => {
    const body = typeof req.body === 'string' ? req.body : '';
    answer(req.method, req.originalUrl, body, res, delayOf(req.originalUrl), req.headers['x-tandem-timeout-ms']);
  });
  server = app.listen(opts.port ?? 0, '127.0.0.1');
} else {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => { body += d; });
    req.on('end', () => answer(req.method!, req.url!, body, res, delayOf(req.url!), req.headers['x-tandem-timeout-ms']));
  });
  server.listen(opts.port ?? 0, '127.0.0.1');
}

const instance = await serve(server, {
  service: opts.service,
  registry: opts.registry,
  token: opts.token,
  id: opts.id,
  ttl: opts.ttl,
  heartbeatInterval: opts.heartbeatInterval,
  drainQuietPeriod: opts.drainQuietPeriod,
  logger: {
    info: (f) => process.stdout.write(`${JSON.stringify(f)}\n`),
    warn: (f) => process.stdout.write(`${JSON.stringify({ level: 'warn', ...f })}\n`),
  },
});
id = instance.id;
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, address: instance.address })}\n`);
