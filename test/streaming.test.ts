import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { startBackend, type Backend } from './helpers/backend.js';

/**
 * 1 GiB up and 1 GiB down through the gateway process in constant memory. Data is generated
 * on the fly from one reused buffer; the backend counts (upload) or generates (download); the
 * gateway's resident memory is read from /proc/<pid>/status.
 */

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(1024 * 1024, 'z');
/** Allowed growth of the gateway's peak RSS over its warmed-up baseline (the warm-up's peak, or the RSS at the start if higher). */
const BUDGET_BYTES = 50 * 1024 * 1024;

/**
 * The receiving end (backend on upload, client on download) stops reading for 10 ms after
 * every 16 MiB: a consumer slower than the producer, so that a gateway that ignored
 * backpressure would pile the difference up in memory instead of pausing the sender.
 */
function slowConsumer(stream: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown }, onBytes: (n: number) => void): void {
  let sincePause = 0;
  stream.on('data', (chunk: Buffer) => {
    onBytes(chunk.length);
    sincePause += chunk.length;
    if (sincePause >= 16 * 1024 * 1024) {
      sincePause = 0;
      stream.pause();
      setTimeout(() => stream.resume(), 10);
    }
  });
}

let up: Backend;
let down: Backend;
let gw: RunningGateway;

before(async () => {
  up = await startBackend('up', (req, res) => {
    let bytes = 0;
    slowConsumer(req, (n) => { bytes += n; });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ bytes }));
    });
  });
  down = await startBackend('down', (req, res) => {
    req.resume();
    const total = Number(new URL(req.url!, 'http://x').searchParams.get('bytes'));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
    let left = total;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  gw = await startGateway({
    limits: { maxBodySize: '2GiB' },
    services: { up: { endpoints: [up.address] }, down: { endpoints: [down.address] } },
    routes: [{ prefix: '/up', service: 'up' }, { prefix: '/down', service: 'down' }],
  });
});

after(async () => {
  await gw.stop();
  await up.close();
  await down.close();
});

/** VmRSS and VmHWM (peak) of a process, in bytes. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * Watches a process's memory during `run`: resets the kernel's peak counter first (writing 5
 * to clear_refs, where permitted) and also samples VmRSS every 20 ms, so the peak is right
 * either way.
 */
async function watchMemory<T>(pid: number, run: () => Promise<T>): Promise<{ result: T; baseline: number; peak: number; source: string }> {
  const baseline = Math.max(memoryOf(pid).rss, warmPeak);
  let hwmReset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    hwmReset = false;
  }
  let sampled = baseline;
  const timer = setInterval(() => { sampled = Math.max(sampled, memoryOf(pid).rss); }, 20);
  try {
    const result = await run();
    const end = memoryOf(pid);
    sampled = Math.max(sampled, end.rss);
    return { result, baseline, peak: hwmReset ? Math.max(end.hwm, sampled) : sampled, source: hwmReset ? 'VmHWM reset + VmRSS samples' : 'VmRSS samples' };
  } finally {
    clearInterval(timer);
  }
}

function upload(total: number, chunked: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
    if (!chunked) headers['content-length'] = String(total);
    const req = request({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/up', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    let left = total;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!req.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

function download(total: number): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gw.port, path: `/down?bytes=${total}`, agent: false }, (res) => {
      let bytes = 0;
      slowConsumer(res, (n) => { bytes += n; });
      res.on('end', () => resolve({ status: res.statusCode!, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const mb = (n: number) => (n / 1024 / 1024).toFixed(1);

/**
 * The gateway's peak RSS over the warm-up: what moving data costs it at all (buffers, JIT, heap
 * grown to its working size). A 1 GiB transfer in constant memory stays near it; the RSS at the
 * start of a transfer is no baseline on its own, since it falls whenever the heap shrinks
 * between transfers (a baseline taken after a shrink once made steady use look like 60 MiB of growth).
 */
let warmPeak = 0;

test('warm-up: transfers both ways', async (t) => {
  const { baseline, peak } = await watchMemory(gw.proc.pid!, async () => {
    for (let i = 0; i < 2; i++) {
      const u = await upload(64 * 1024 * 1024, i === 1);
      assert.equal(u.status, 200);
      assert.deepEqual(JSON.parse(u.body), { bytes: 64 * 1024 * 1024 });
      const d = await download(64 * 1024 * 1024);
      assert.equal(d.status, 200);
      assert.equal(d.bytes, 64 * 1024 * 1024);
    }
  });
  warmPeak = peak;
  t.diagnostic(`warm-up: gateway RSS ${mb(baseline)} MiB before, peak ${mb(peak)} MiB`);
});

test('a 1 GiB upload streams through in constant memory', async (t) => {
  const started = performance.now();
  const { result, baseline, peak, source } = await watchMemory(gw.proc.pid!, () => upload(GiB, false));
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(`upload 1 GiB in ${seconds.toFixed(1)} s; gateway RSS baseline ${mb(baseline)} MiB, peak ${mb(peak)} MiB, growth ${mb(peak - baseline)} MiB (${source})`);
  assert.equal(result.status, 200, result.body);
  assert.deepEqual(JSON.parse(result.body), { bytes: GiB }, 'the backend received every byte');
  assert.ok(peak - baseline < BUDGET_BYTES, `gateway RSS grew by ${mb(peak - baseline)} MiB`);
});

test('a 1 GiB download streams through in constant memory', async (t) => {
  const started = performance.now();
  const { result, baseline, peak, source } = await watchMemory(gw.proc.pid!, () => download(GiB));
  const seconds = (performance.now() - started) / 1000;
  t.diagnostic(`download 1 GiB in ${seconds.toFixed(1)} s; gateway RSS baseline ${mb(baseline)} MiB, peak ${mb(peak)} MiB, growth ${mb(peak - baseline)} MiB (${source})`);
  assert.equal(result.status, 200);
  assert.equal(result.bytes, GiB, 'the client received every byte');
  assert.ok(peak - baseline < BUDGET_BYTES, `gateway RSS grew by ${mb(peak - baseline)} MiB`);
});
