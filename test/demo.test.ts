// `tandem demo` (npm start) and `tandem demo --drill`, as a user runs them: real child
// processes — the gateway and six service instances using tandem/node and tandem/client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { adminFetch, BIN, runCli } from './helpers/gateway.js';
import { waitFor } from './helpers/wait.js';

const EPHEMERAL = ['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'];

test('tandem demo: catalog and orders answer through the gateway; Ctrl-C drains every instance and exits 0', async () => {
  const proc = spawn(process.execPath, [BIN, 'demo', ...EPHEMERAL], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  try {
    await waitFor(() => `the banner (so far: ${out})`, () => /tandem demo: gateway (http:\/\/\S+)\//.test(out) || proc.exitCode !== null, { intervalMs: 50 });
    assert.equal(proc.exitCode, null, out);
    const base = /tandem demo: gateway (http:\/\/\S+)\//.exec(out)![1]!;
    const admin = /cluster\s+(http:\/\/\S+)\/admin\/cluster/.exec(out)![1]!;
    // The banner's dashboard link carries the secret; the catalog and orders children found it without being told.
    const link = /dashboard\s+(http:\/\/\S+\/\?token=(\S+))/.exec(out)!;
    assert.equal((await fetch(`${admin}/admin/cluster`)).status, 401, 'the admin listener wants the secret');
    assert.equal((await fetch(`${admin}/admin/cluster`, { headers: { authorization: `Bearer ${decodeURIComponent(link[2]!)}` } })).status, 200);
    const item = await fetch(`${base}/catalog/items/apple`);
    assert.equal(item.status, 200);
    assert.equal(((await item.json()) as { sku: string }).sku, 'apple');
    const order = await fetch(`${base}/orders`, { method: 'POST', body: JSON.stringify({ sku: 'cheese', qty: 2 }), headers: { 'content-type': 'application/json' } });
    assert.equal(order.status, 201);
    assert.equal(((await order.json()) as { total: number }).total, 9.8, 'orders priced the item through the catalog');
    const unknown = await fetch(`${base}/orders`, { method: 'POST', body: '{"sku":"caviar"}' });
    assert.equal(unknown.status, 422);
    for (const service of ['catalog', 'orders']) {
      const snap = (await (await adminFetch(`${admin}/registry/v1/services/${service}`)).json()) as { instances: Array<{ state: string }> };
      assert.deepEqual(snap.instances.map((i) => i.state), ['ready', 'ready', 'ready'], service);
    }
    proc.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.match(out, /stopping: draining every instance, then the gateway/);
  } finally {
    proc.kill('SIGKILL');
  }
});

test('tandem demo --drill: a rolling deploy of orders and a SIGKILL of a catalog instance under 300 req/s fail no request', async (t) => {
  const r = await runCli(['demo', '--drill', '--duration', '8', '--rate', '300', ...EPHEMERAL], 90_000);
  t.diagnostic(r.stdout.split('\n').filter((l) => l.includes('|') || /PASS|FAIL|POSTs/.test(l)).join('\n'));
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /rolling deploy: orders-3 drained and exited 0/);
  assert.match(r.stdout, /SIGKILL catalog-\d/);
  assert.match(r.stdout, /PASS: 0 failed requests, 0 duplicates/);
  assert.match(r.stdout, /\| POST \/orders \| 800 \| 0 \|/);
});

test('tandem demo: bad flags are refused with the usage', async () => {
  const r = await runCli(['demo', '--rate', 'fast']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--rate must be a positive number, got "fast"/);
  const u = await runCli(['demo', '--drlil']);
  assert.equal(u.code, 2);
  assert.match(u.stderr, /Unknown option '--drlil' — did you mean --drill\?/);
});

test('tandem demo --drill: Ctrl-C stops every instance it started, not only itself', async () => {
  const proc = spawn(process.execPath, [BIN, 'demo', '--drill', '--duration', '60', ...EPHEMERAL], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  try {
    await waitFor(() => `the drill to start (so far: ${out})`, () => /drill: \d+ req\/s/.test(out) || proc.exitCode !== null, { intervalMs: 50 });
    assert.equal(proc.exitCode, null, out);
    const children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(proc.pid)], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter((n) => n > 0);
    assert.equal(children.length, 6, 'catalog ×3 and orders ×3');
    proc.kill('SIGINT');
    assert.equal(await exited, 130);
    const alive = children.filter((pid) => { try { process.kill(pid, 0); return true; } catch { return false; } });
    assert.deepEqual(alive, [], 'every instance is gone');
  } finally {
    proc.kill('SIGKILL');
  }
});
