#!/usr/bin/env node
// Leader-election drill (tandem issue 14, part 2): three candidate processes (bench/lead-candidate.js)
// campaign for one lease in PostgreSQL; the leader appends (seq, token) rows through fenced
// transactions. Faults, one after the other, each against the leader of the moment:
//   1. SIGKILL;
//   2. SIGSTOP for 5 s, then SIGCONT (it must not act on its stale leadership);
//   3. its PostgreSQL connection cut for 5 s: its own TCP proxy stops forwarding, silently (no
//      RST: queries hang, as behind a dead link), then forwards again.
// Per fault: the time until another candidate was elected and until it wrote its first row.
// At the end, from the table: rows written under a stale token (a token lower than one already
// written before it — target 0) and gaps in the sequence (target 0).
//
// Usage: npm run drill:lead [-- [--ttl MS] [--keep-tmp]]   (PostgreSQL at 127.0.0.1:5432, trust;
//   the drill works in a database of its own, dropped at the end)
import net from 'node:net';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createProcs, runDrillMain, sleep } from './lib/procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const TAG = 'drill:lead';
const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? Number(args[i + 1]) : dflt; };
const TTL = opt('--ttl', 1500);
const keepTmp = args.includes('--keep-tmp');
const procs = createProcs({ tag: TAG, root });
let tmp;

/** A TCP proxy to PostgreSQL that can be cut (stops forwarding, silently) and mended. */
function cuttableProxy() {
  const pairs = new Set();
  let cut = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(5432, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const forward = (from, to) => from.on('data', (d) => { if (!cut) to.write(d); });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  return {
    server,
    listen: () => new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port))),
    set cut(v) { cut = v; },
    close: () => { for (const p of pairs) { p.client.destroy(); p.upstream.destroy(); } server.close(); },
  };
}

function linesOf(proc) {
  if (!existsSync(proc.outFile)) return [];
  return readFileSync(proc.outFile, 'utf8').split('\n').filter(Boolean).flatMap((l) => { try { return [JSON.parse(l)]; } catch { return []; } });
}

async function waitLine(cands, pred, timeoutMs = 30_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    for (const c of cands) {
      const hit = linesOf(c.proc).find(pred);
      if (hit) return { c, line: hit };
    }
    await sleep(10);
  }
  return undefined;
}

async function main() {
  procs.installHandlers();
  tmp = mkdtempSync(join(os.tmpdir(), 'tandem-drill-lead-'));
  const suffix = randomBytes(4).toString('hex');
  const leases = `tandem_drill_leases_${suffix}`;
  const rowsTable = `tandem_drill_rows_${suffix}`;
  // A database of the drill's own in the machine's server, dropped at the end.
  const database = `tandem_drill_lead_${suffix}`;
  const admin = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres', max: 1 });
  await admin.query(`CREATE DATABASE ${database}`);
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:5432/${database}`, max: 2 });
  pool.on('error', () => {}); // a session ended by the drill's own DROP DATABASE at the end
  await pool.query(`CREATE TABLE ${rowsTable} (seq bigint PRIMARY KEY, token bigint NOT NULL, holder text NOT NULL)`);
  const cands = [];
  try {
    for (const id of ['c1', 'c2', 'c3']) {
      const proxy = cuttableProxy();
      const port = await proxy.listen();
      const proc = procs.start(id, process.execPath, [join(root, 'bench', 'lead-candidate.js'), leases, rowsTable, 'drill', id, String(TTL), `postgres://postgres@127.0.0.1:${port}/${database}`], { dir: tmp });
      cands.push({ id, proc, proxy });
    }
    console.log(`${TAG}: 3 candidates, lease ${TTL} ms (renewed every ${TTL / 3} ms, local deadline ${Math.round(TTL * 2 / 3)} ms)`);
    let leader = await waitLine(cands, (l) => l.event === 'elected');
    if (!leader) throw new Error('no candidate was elected');
    let token = leader.line.token;
    const results = [];
    const faults = [
      { name: 'SIGKILL', apply: (c) => procs.signalProc(c.proc, 'SIGKILL'), undo: async () => {} },
      { name: 'SIGSTOP 5 s', apply: (c) => procs.signalProc(c.proc, 'SIGSTOP'), undo: async (c) => { await sleep(5000); procs.signalProc(c.proc, 'SIGCONT'); } },
      { name: 'PostgreSQL cut 5 s', apply: (c) => { c.proxy.cut = true; }, undo: async (c) => { await sleep(5000); c.proxy.cut = false; } },
    ];
    for (const fault of faults) {
      await waitLine([leader.c], (l) => l.event === 'wrote' && l.token === token);
      await sleep(1000);
      const at = Date.now();
      fault.apply(leader.c);
      const undo = fault.undo(leader.c);
      const next = await waitLine(cands.filter((c) => c !== leader.c), (l) => l.event === 'elected' && l.token > token);
      if (!next) throw new Error(`no new leader after ${fault.name}`);
      const firstWrite = await waitLine([next.c], (l) => l.event === 'wrote' && l.token === next.line.token);
      await undo;
      const old = leader.c;
      // The old leader back (frozen or cut): did it say it stepped down before writing?
      const demoted = fault.name === 'SIGKILL' ? undefined : await waitLine([old], (l) => l.event === 'demoted', 10_000);
      results.push({ fault: fault.name, from: leader.c.id, to: next.c.id, electedMs: next.line.at - at, actedMs: firstWrite ? firstWrite.line.at - at : null, oldDemoted: demoted ? demoted.line.why : fault.name === 'SIGKILL' ? 'killed' : 'no' });
      leader = next;
      token = next.line.token;
    }
    await sleep(1000);
    const rows = (await pool.query(`SELECT seq, token FROM ${rowsTable} ORDER BY seq`)).rows.map((r) => ({ seq: Number(r.seq), token: Number(r.token) }));
    let stale = 0;
    let gaps = 0;
    let maxToken = 0;
    rows.forEach((r, i) => {
      if (r.token < maxToken) stale++;
      maxToken = Math.max(maxToken, r.token);
      if (r.seq !== i + 1) gaps++;
    });
    const refused = cands.flatMap((c) => linesOf(c.proc).filter((l) => l.event === 'refused')).length;
    console.log('\n| fault | leader | new leader | elected after (ms) | acted after (ms) | old leader |');
    console.log('|---|---|---|---:|---:|---|');
    for (const r of results) console.log(`| ${r.fault} | ${r.from} | ${r.to} | ${r.electedMs} | ${r.actedMs ?? '—'} | ${r.oldDemoted} |`);
    console.log(`\nrows: ${rows.length}, tokens ${[...new Set(rows.map((r) => r.token))].join(', ')}; written under a stale token: ${stale}; gaps in the sequence: ${gaps}; fenced writes refused: ${refused}`);
    const slow = results.filter((r) => r.actedMs === null || r.actedMs > 2000);
    const ok = stale === 0 && gaps === 0 && slow.length === 0;
    console.log(ok ? `${TAG}: PASS (a new leader acted within 2 s after every fault; 0 stale, 0 gaps)` : `${TAG}: FAIL`);
    return ok ? 0 : 1;
  } finally {
    for (const c of cands) { await procs.stop(c.proc, { graceMs: 2000 }); c.proxy.close(); }
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }
}

runDrillMain(main, { tag: TAG, procs, tmpDir: () => tmp, keepTmp: () => keepTmp });
