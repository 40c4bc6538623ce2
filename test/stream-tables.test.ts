// What a long-lived table keeps of what went through it, and what tandem does about it: its
// coarse timers keep their waits in a list linked through the waits (core/coarse-timers.ts),
// and the gateway renews node:http2's stream tables after collections (core/stream-tables.ts).
// Measured in child processes (helpers/table-retention.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { installStreamTableRenewal, renewStreamTables, streamStarted, trackStreamTables } from '../src/core/stream-tables.js';
import { EventEmitter } from 'node:events';
import { startGateway } from './helpers/gateway.js';
import { runRetentionChild } from './helpers/young-retention.js';

/** Young bytes per item a minor collection left (helpers/table-retention.ts); each item held 8 KB. */
async function retained(mode: string): Promise<number> {
  return (await runRetentionChild<{ bytesPerItem: number }>('table-retention.js', mode)).bytesPerItem;
}

test('a Set that outlives a full collection keeps what went through it past a scavenge; the coarse timers\' list keeps nothing', async () => {
  const [set, coarse] = await Promise.all([retained('set'), retained('coarse')]);
  // The control: with V8's tables, every wait that went through the Set is still there (8 KB each).
  assert.ok(set >= 6144, `through a long-lived Set: ${set} B per wait after a minor collection (expected the 8 KB each held)`);
  assert.ok(coarse <= 1024, `through the coarse timers: ${coarse} B per wait after a minor collection (the Set kept ${set} B)`);
});

test('a long-lived session\'s stream table keeps what went through it past a scavenge, unless it is renewed after the full collection (on every Node)', async () => {
  const [plain, renewed] = await Promise.all([retained('tables-plain'), retained('tables-renewed')]);
  assert.ok(plain >= 6144, `without renewal: ${plain} B per entry after a minor collection (expected the 8 KB each held)`);
  assert.ok(renewed <= 1024, `renewed: ${renewed} B per entry after a minor collection (without: ${plain} B)`);
});

test('node:http2 keeps every stream of a long-lived session past a scavenge, unless its tables are renewed after the full collection', async () => {
  const [plain, renewed, writable] = await Promise.all([retained('http2-plain'), retained('http2-renewed'), retained('writable')]);
  assert.ok(plain >= 6144, `without renewal: ${plain} B per request after a minor collection (expected the 8 KB each stream held)`);
  if (writable <= 1024) {
    // Node 20 and 22 (measured): nothing else keeps a closed stream; with its tables renewed,
    // next to nothing of a request is left.
    assert.ok(renewed <= 2048, `with the tables renewed: ${renewed} B per request after a minor collection (without: ${plain} B)`);
  } else {
    // Node 24 keeps every Writable by itself (${writable} B of a bare one with 8 KB): each
    // stream is kept either way, and the renewal must at least not add to it.
    assert.ok(renewed <= plain + 1024, `with the tables renewed: ${renewed} B per request (without: ${plain} B; a bare Writable: ${writable} B)`);
  }
});

test('a renewal carries over the streams in flight, in tables of node:http2\'s own classes, and both sessions go on', async (t) => {
  assert.equal(installStreamTableRenewal(), true);
  const held: ServerHttp2Stream[] = [];
  let arrived!: () => void;
  const first = new Promise<void>((resolve) => { arrived = resolve; });
  const server = createServer();
  server.on('session', trackStreamTables);
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.resume();
    stream.on('end', () => {
      held.push(stream);
      arrived();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  t.after(() => session.close());
  trackStreamTables(session);
  const call = (): Promise<{ status: unknown; body: string; trailers: unknown }> => new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': '/t' }, { waitForTrailers: false });
    let status: unknown;
    let body = '';
    let trailers: unknown;
    req.setEncoding('utf8');
    req.on('response', (h) => { status = h[':status']; });
    req.on('data', (d: string) => { body += d; });
    req.on('trailers', (tr) => { trailers = tr['x-done']; });
    req.on('end', () => resolve({ status, body, trailers }));
    req.on('error', reject);
    req.end('body');
  });
  const inFlight = call();
  await first;
  const stateKey = (s: object): symbol => Object.getOwnPropertySymbols(s).find((k) => k.description === 'state')!;
  const clientState = (session as unknown as Record<symbol, { streams: Map<number, unknown>; pendingStreams: Set<unknown> }>)[stateKey(session)]!;
  const before = { streams: clientState.streams, pending: clientState.pendingStreams };
  assert.equal(before.streams.size, 1, 'one stream in flight');

  assert.equal(renewStreamTables(), 2, 'the client session and the server session');
  assert.notEqual(clientState.streams, before.streams, 'a new table');
  assert.notEqual(clientState.pendingStreams, before.pending);
  assert.equal(clientState.streams.constructor, before.streams.constructor, 'of node:http2\'s own class');
  assert.equal(clientState.pendingStreams.constructor, before.pending.constructor);
  assert.deepEqual([...clientState.streams.entries()], [...before.streams.entries()], 'holding the same streams');

  // The stream in flight is answered through the renewed tables (response, data, trailers).
  const stream = held[0]!;
  stream.respond({ ':status': 200 }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'x-done': 'yes' }));
  stream.end('answered');
  assert.deepEqual(await inFlight, { status: 200, body: 'answered', trailers: 'yes' });
  // And new calls go on.
  server.removeAllListeners('stream');
  server.on('stream', (s: ServerHttp2Stream) => {
    s.resume();
    s.on('end', () => {
      s.respond({ ':status': 200 });
      s.end('again');
    });
  });
  assert.deepEqual(await call(), { status: 200, body: 'again', trailers: undefined });
});

test('after a scavenge, only the sessions that began a stream since their last renewal are renewed; after a full collection, all', () => {
  assert.equal(installStreamTableRenewal(), true);
  const sessions = [0, 1, 2].map(() => {
    const state = { streams: new Map([[1, 'one']]), pendingStreams: new Set(['pending']) };
    const session = Object.assign(new EventEmitter(), { destroyed: false, [Symbol('state')]: state }) as unknown as Http2Session;
    trackStreamTables(session);
    return { session, state };
  });
  // Sessions of other tests may still be tracked (closing); none closes within this test.
  const others = renewStreamTables(true) - 3;
  const tables = () => sessions.map((s) => s.state.streams);
  let before = tables();
  streamStarted(sessions[1]!.session);
  streamStarted(sessions[1]!.session);
  assert.equal(renewStreamTables(false), 1);
  assert.deepEqual(tables().map((t, i) => t !== before[i]), [false, true, false], 'the one that began a stream');
  assert.deepEqual([...sessions[1]!.state.streams], [[1, 'one']]);
  assert.deepEqual([...sessions[1]!.state.pendingStreams], ['pending']);
  assert.equal(renewStreamTables(false), 0, 'its mark is gone');
  before = tables();
  assert.equal(renewStreamTables(true), 3 + others);
  assert.deepEqual(tables().map((t, i) => t !== before[i]), [true, true, true]);
  sessions[2]!.session.emit('close');
  assert.equal(renewStreamTables(true), 2 + others, 'a closed session is no longer tracked');
});

test('the gateway process renews the stream tables', async () => {
  const gw = await startGateway({ log: { level: 'debug' }, services: { web: { endpoints: ['127.0.0.1:9'] } }, routes: [{ prefix: '/', service: 'web' }] });
  try {
    const line = await gw.waitForLog((l) => l.msg === 'stream tables');
    assert.equal(line.renewal, true);
  } finally {
    await gw.stop();
  }
});
