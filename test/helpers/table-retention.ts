// Run as a child process (test/stream-tables.test.ts):
//   node --expose-gc --min-semi-space-size=64 --max-semi-space-size=64 table-retention.js MODE
// Measures what a long-lived table keeps of the objects that went through it: after a full
// collection (which leaves the table in the old generation), a batch of objects goes in and
// out of it, each holding an 8 KB array; once all are out, one minor collection runs, and the
// bytes per object it left in the young generation are printed as JSON (`bytesPerItem`).
//   coarse        tandem's CoarseTimers: waits started and stopped, 16 pending at a time
//   set           the same churn through a Set that lives as long as the process (the control)
//   http2-plain   node:http2 requests from one long-lived session to a server in this process
//   http2-renewed the same, with the stream tables renewed after each full collection
//   tables-plain  a stand-in for a node:http2 session (its state's stream Map and Set, under a
//                 symbol described 'state'), long-lived, with entries going through its Map
//   tables-renewed the same, its tables renewed after each full collection (as the gateway does)
//   writable      bare stream.Writable objects, no table at all: whether this Node keeps every
//                 Writable past a scavenge by itself (Node 24 does: each one's `onwrite` is a
//                 function literal assigned to a property, which V8 allocates in the old
//                 generation, and its scope holds the stream)
import type { ClientHttp2Stream, Http2Session } from 'node:http2';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { getHeapSpaceStatistics } from 'node:v8';
import { CoarseTimers, type CoarseWait } from '../../src/core/coarse-timers.js';
import { installLeanAsyncBind } from '../../src/core/lean-async-bind.js';
import { installStreamTableRenewal, streamTableRenewals, trackStreamTables } from '../../src/core/stream-tables.js';
import { answeringPair } from './young-retention.js';

const mode = process.argv[2] ?? '';
const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');
const ITEMS = 300;
const LIVE = 16;
const pad = (): number[] => new Array<number>(1024).fill(1.5);

const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** One batch through the table under test; resolves once every item is out of it. */
let batch: () => Promise<void>;
let settle: () => Promise<void> = async () => {};
let close = (): void => {};

if (mode === 'coarse' || mode === 'set') {
  const timers = new CoarseTimers();
  const set = new Set<object>();
  batch = async () => {
    const live: Array<CoarseWait & { pad: number[] }> = [];
    for (let i = 0; i < ITEMS; i++) {
      const wait = { pad: pad(), expire(): void {} };
      if (mode === 'coarse') timers.start(wait, 60_000);
      else set.add(wait);
      live.push(wait);
      if (live.length > LIVE) {
        const done = live.shift()!;
        if (mode === 'coarse') timers.stop(done);
        else set.delete(done);
      }
    }
    for (const done of live) {
      if (mode === 'coarse') timers.stop(done);
      else set.delete(done);
    }
  };
} else if (mode === 'tables-plain' || mode === 'tables-renewed') {
  if (mode === 'tables-renewed' && !installStreamTableRenewal()) throw new Error('this Node reports no collections to observers');
  const state = { streams: new Map<number, object>(), pendingStreams: new Set<object>() };
  const session = Object.assign(new EventEmitter(), { destroyed: false, [Symbol('state')]: state });
  trackStreamTables(session as unknown as Http2Session);
  let id = 0;
  batch = async () => {
    for (let i = 0; i < ITEMS; i++) {
      state.streams.set(++id, { pad: pad() });
      if (state.streams.size > LIVE) state.streams.delete(id - LIVE);
    }
    for (let i = id - LIVE + 1; i <= id; i++) state.streams.delete(i);
  };
  if (mode === 'tables-renewed') {
    settle = async () => {
      const before = streamTableRenewals();
      gc();
      while (streamTableRenewals() === before) await turn();
    };
  }
} else if (mode === 'writable') {
  batch = async () => {
    for (let i = 0; i < ITEMS; i++) {
      const writable = new Writable({ write(_chunk, _encoding, done): void { done(); } }) as Writable & { pad?: number[] };
      writable.pad = pad();
    }
  };
} else if (mode === 'http2-plain' || mode === 'http2-renewed') {
  installLeanAsyncBind();
  if (mode === 'http2-renewed' && !installStreamTableRenewal()) throw new Error('this Node reports no collections to observers');
  const { server, session } = await answeringPair(trackStreamTables);
  trackStreamTables(session);
  batch = () => {
    let closed = 0;
    return new Promise((resolve) => {
      for (let i = 0; i < ITEMS; i++) {
        const stream = session.request({ ':method': 'POST', ':path': '/t' }) as ClientHttp2Stream & { pad?: number[] };
        stream.pad = pad();
        stream.resume();
        stream.on('close', () => { if (++closed === ITEMS) resolve(); });
        stream.end('body');
      }
    });
  };
  if (mode === 'http2-renewed') {
    // The renewal runs after the full collection, from the observer's callback: wait for it.
    settle = async () => {
      const before = streamTableRenewals();
      gc();
      while (streamTableRenewals() === before) await turn();
    };
  }
  close = () => {
    session.close();
    server.close();
  };
} else {
  throw new Error(`unknown mode ${mode}`);
}

for (let i = 0; i < 3; i++) await batch();
const perItem: number[] = [];
for (let round = 0; round < 5; round++) {
  gc();
  gc();
  await settle();
  await turn();
  const empty = young();
  await batch();
  // node:http2 lets go of a closed stream's native side in the turn after it closed.
  for (let i = 0; i < 3; i++) await turn();
  gc({ type: 'minor' });
  perItem.push((young() - empty) / ITEMS);
}
perItem.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ mode, bytesPerItem: Math.round(perItem[2]!) })}\n`);
close();
