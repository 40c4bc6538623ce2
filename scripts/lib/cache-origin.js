// The origin of the cache drill (scripts/drill-cache.js): GET /k/N answers a small JSON body with
// `Cache-Control: max-age=1, stale-if-error=60`, an ETag per generation (a 304 when it matches) and
// `x-gen` (the generation, so the drill can tell an old answer from a fresh one). Control, on
// the same port: POST /__fail (every request 503 from now on), POST /__recover (200 again, next
// generation), GET /__count (requests served outside /__ and /healthz).
// Usage: node cache-origin.js PORT [GENERATION [LOG]]
//   LOG: a file each counted request is appended to as it is answered (written at once, so a
//   SIGKILL loses none): `<Date.now()> <path> <1 if conditional, else 0> <status>`.
import { appendFileSync } from 'node:fs';
import http from 'node:http';

const port = Number(process.argv[2]);
let gen = Number(process.argv[3] ?? 1);
const log = process.argv[4];
let failing = false;
let count = 0;

const server = http.createServer((req, res) => {
  req.resume();
  if (req.url === '/__fail') { failing = true; res.end('ok'); return; }
  if (req.url === '/__recover') { failing = false; gen++; res.end(String(gen)); return; }
  if (req.url === '/__count') { res.end(String(count)); return; }
  if (req.url === '/healthz') { res.writeHead(failing ? 503 : 200); res.end(); return; }
  count++;
  const conditional = req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined;
  if (log !== undefined) res.on('finish', () => appendFileSync(log, `${Date.now()} ${req.url} ${conditional ? 1 : 0} ${res.statusCode}\n`));
  if (failing) {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('unavailable');
    return;
  }
  const etag = `"g${gen}"`;
  const headers = { 'cache-control': 'max-age=1, stale-if-error=60', etag, 'x-gen': String(gen) };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-type': 'application/json' });
  res.end(JSON.stringify({ path: req.url, gen, items: Array.from({ length: 8 }, (_, i) => ({ id: i, price: 100 + i })) }));
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => console.log(`origin on ${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
