#!/usr/bin/env node
// Which of tandem's source files one plain GET through the gateway runs code in, and how often
// the path crosses from one file to another. A gateway (the minimal config: three endpoints) and
// its three backends run in this process; after warm-up GETs, V8's precise coverage is reset,
// one GET is sent on a raw socket, and the functions of dist/src that ran are listed by file
// with their call counts. The call order is not in the coverage: "crossings" is an upper bound
// from the files' call counts, not a trace.
// Usage: npm run build && node scripts/request-path-files.js
import http from 'node:http';
import net from 'node:net';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { relative } from 'node:path';
import { Gateway } from '../dist/src/gateway/gateway.js';
import { validateConfig } from '../dist/src/config/validate.js';
import { createLogger } from '../dist/src/observe/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const backends = await Promise.all([0, 1, 2].map(() => new Promise((resolve) => {
  const s = http.createServer((req, res) => { req.resume(); res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'); });
  s.listen(0, '127.0.0.1', () => resolve(s));
})));
const config = validateConfig({
  listen: '127.0.0.1:0',
  admin: '127.0.0.1:0',
  log: { access: 'off' },
  routes: [{ prefix: '/', service: 'shop' }],
  // No active health checks: their timers would run in the measured window too.
  services: { shop: { endpoints: backends.map((b) => `127.0.0.1:${b.address().port}`), healthCheck: false } },
});
const gateway = await Gateway.start(config, createLogger('error'));
const port = Number(gateway.listenAddress.split(':').pop());

/** One GET on a fresh raw socket (no src/ code on the client side). */
const get = () => new Promise((resolve, reject) => {
  const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /x HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n'));
  let data = '';
  socket.on('data', (d) => { data += d; }).on('end', () => resolve(data)).on('error', reject);
});

for (let i = 0; i < 200; i++) await get();
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: false });
await session.post('Profiler.takePreciseCoverage'); // resets the counts
const answer = await get();
const { result } = await session.post('Profiler.takePreciseCoverage');
await session.post('Profiler.stopPreciseCoverage');
if (!answer.startsWith('HTTP/1.1 200')) throw new Error(`the GET failed: ${answer.slice(0, 80)}`);

const byFile = new Map();
for (const script of result) {
  if (!script.url.includes('/dist/src/')) continue;
  const file = relative(root, fileURLToPath(script.url)).replace(/^dist\//, '').replace(/\.js$/, '.ts');
  for (const fn of script.functions) {
    const count = fn.ranges[0]?.count ?? 0;
    // The top-level function of a module has no name and the whole file as its range: skipped.
    if (count === 0 || (fn.functionName === '' && fn.ranges[0].startOffset === 0)) continue;
    const entry = byFile.get(file) ?? { calls: 0, functions: [] };
    entry.calls += count;
    entry.functions.push(`${fn.functionName || '(closure)'}×${count}`);
    byFile.set(file, entry);
  }
}
const files = [...byFile.entries()].sort((a, b) => a[0].localeCompare(b[0]));
for (const [file, e] of files) console.log(`${file.padEnd(44)} ${String(e.calls).padStart(3)}  ${e.functions.join(' ')}`);
console.log(`\none GET ran code in ${files.length} source files, ${files.reduce((n, [, e]) => n + e.calls, 0)} function calls`);
await gateway.shutdown();
for (const b of backends) b.close();
