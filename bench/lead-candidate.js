#!/usr/bin/env node
// Leader-election drill and tests: one candidate process. Campaigns for the lease NAME in the
// PostgreSQL table LEASES and, while leader, appends (seq, token, holder) rows to ROWS through
// fenced transactions, seq = the table's max + 1, about every 20 ms. Prints JSON lines:
// started, elected {token}, wrote {seq, token}, refused {token, code}, demoted {why}, error.
// Usage: node bench/lead-candidate.js LEASES ROWS NAME ID TTL_MS [CONNECTION_STRING]
import { lead, postgresLeaseStore } from '../dist/src/lead/index.js';

const [leases, rows, name, id, ttlArg, connectionString] = process.argv.slice(2);
const ttl = Number(ttlArg);
const print = (o) => process.stdout.write(`${JSON.stringify({ ...o, id, at: Date.now() })}\n`);

const store = await postgresLeaseStore({ table: leases, ...(connectionString ? { connectionString } : {}) });
const leader = lead(name, { store, id, ttl, onError: (err) => print({ event: 'error', message: String(err) }) }, async (term) => {
  print({ event: 'elected', token: term.token });
  while (!term.signal.aborted) {
    // Right before the side effect: a process that was frozen learns here that it may no longer lead.
    if (!term.isLeader()) break;
    try {
      const seq = await store.fenced(term, async (tx) => {
        const r = await tx.query(`SELECT coalesce(max(seq), 0) + 1 AS next FROM ${rows}`);
        const next = Number(r.rows[0].next);
        await tx.query(`INSERT INTO ${rows} (seq, token, holder) VALUES ($1, $2, $3)`, [next, term.token, id]);
        return next;
      }, ttl);
      print({ event: 'wrote', seq, token: term.token });
    } catch (err) {
      print({ event: 'refused', token: term.token, code: err?.code ?? String(err) });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
});
leader.onDemoted((why) => print({ event: 'demoted', why }));
process.on('SIGTERM', () => { void leader.close().then(() => store.close()).then(() => process.exit(0)); });
print({ event: 'started' });
