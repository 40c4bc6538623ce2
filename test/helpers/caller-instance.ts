// A service instance (node SDK) whose every request calls another service through tandem/client
// and answers with what it received and what the callee answered. For tests.
// Usage: node caller-instance.js '{"registry": url, "service": "front", "callee": "back"}'
// Answers {"timeout": its own x-tandem-timeout-ms, "traceparent": the one it received,
// "callee": <the callee's JSON answer>} or
// {"error": code} with status 502 when the call failed. ?sleep=MS waits before calling.
import { createServer } from 'node:http';
import { serve } from '../../src/node/index.js';
import { createClient } from '../../src/client/index.js';

const opts = JSON.parse(process.argv[2] ?? '{}') as { registry: string; service: string; callee: string };
const client = createClient(opts.callee, { registry: opts.registry });

const server = createServer((req, res) => {
  req.resume();
  const sleep = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('sleep') ?? 0);
  setTimeout(() => {
    client.request({ path: '/from-front' }).then(
      (answer) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ timeout: req.headers['x-tandem-timeout-ms'] ?? null, traceparent: req.headers.traceparent ?? null, callee: answer.json() })),
      (err: { code?: string }) => res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.code ?? String(err) })),
    );
  }, sleep);
});
server.listen(0, '127.0.0.1');
const instance = await serve(server, { service: opts.service, registry: opts.registry, logger: { info: () => {}, warn: () => {} } });
process.stdout.write(`${JSON.stringify({ msg: 'serving', id: instance.id, address: instance.address })}\n`);
