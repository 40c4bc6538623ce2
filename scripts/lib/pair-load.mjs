// drill:gateways — open-loop load on the virtual address, run inside the client's namespace.
// Usage: node pair-load.mjs '{"origin","rate","durationS","idPrefix","out"}'
// Request i is sent at t0 + i/rate whatever happened to the earlier ones (half GET, half POST
// with its id in x-drill-id). A request that failed with no response byte because the connection
// was refused or reset is sent once more on a new connection, and both outcomes are kept: the
// drill reports failures raw and for a caller that retries such a failure once.
import { writeFileSync } from 'node:fs';
import { Pool, Client } from 'undici';

const o = JSON.parse(process.argv[2]);
const TIMEOUT_MS = 5000;
const pool = new Pool(o.origin, { connections: 4096, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS, connect: { timeout: TIMEOUT_MS } });
const total = Math.round(o.rate * o.durationS);
const results = new Array(total);
let settled = 0;
let done;
const all = new Promise((r) => { done = r; });

function kind(err) {
  const code = err?.code ?? err?.cause?.code;
  if (err?.name === 'TimeoutError' || err?.name === 'AbortError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
  if (code === 'ECONNREFUSED') return 'refused';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'reset';
  return code ?? err?.name ?? 'error';
}

/** One attempt; resolves { status, err, gotBytes }. */
async function attempt(dispatcher, method, id, sched) {
  let gotBytes = false;
  try {
    const res = await dispatcher.request({
      path: `/shop/${method === 'POST' ? 'orders' : 'items'}?id=${id}`, method,
      headers: { 'x-drill-id': id, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? `{"order":"${id}"}` : undefined,
      signal: globalThis.AbortSignal.timeout(Math.max(1, Math.ceil(TIMEOUT_MS - (performance.now() - sched)))),
    });
    gotBytes = true;
    await res.body.text();
    return { status: res.statusCode, err: null, gotBytes };
  } catch (err) {
    return { status: 0, err: kind(err), gotBytes };
  }
}

const t0 = performance.now();
const startedAt = Date.now();
function fire(i, sched) {
  const id = `${o.idPrefix}-${i}`;
  const method = i % 2 ? 'POST' : 'GET';
  attempt(pool, method, id, sched).then(async (first) => {
    const r = { id, method, t: Math.round(sched - t0), status: first.status, err: first.err, lat: 0, retry: null };
    // The caller of the issue: a refused connection (it reached no one) is retried once, whatever
    // the method; a reset before any response byte only for a GET — a POST may have reached an
    // instance through a gateway that died (SIGKILL) before it answered.
    if (first.status === 0 && !first.gotBytes && (first.err === 'refused' || (first.err === 'reset' && method === 'GET'))) {
      const client = new Client(o.origin, { connect: { timeout: TIMEOUT_MS }, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
      const again = await attempt(client, method, id, sched);
      client.destroy().catch(() => {});
      r.retry = { status: again.status, err: again.err };
    }
    r.lat = Math.round(performance.now() - sched);
    results[i] = r;
    if (++settled === total) done();
  });
}

let i = 0;
const tick = () => {
  const due = Math.min(total, Math.floor(((performance.now() - t0) * o.rate) / 1000) + 1);
  while (i < due) { fire(i, t0 + (i * 1000) / o.rate); i++; }
  if (i < total) setTimeout(tick, 1);
};
process.stdout.write(`${JSON.stringify({ msg: 'started', at: startedAt })}\n`);
tick();
const hard = setTimeout(done, o.durationS * 1000 + 2 * TIMEOUT_MS + 2000);
await all;
clearTimeout(hard);
await pool.destroy().catch(() => {});
writeFileSync(o.out, JSON.stringify({ startedAt, results: results.map((r, k) => r ?? { id: `${o.idPrefix}-${k}`, method: '?', t: null, status: 0, err: 'unsettled', lat: TIMEOUT_MS, retry: null }) }));
process.exit(0);
