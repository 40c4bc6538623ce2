// W3C trace context through every hop: client → gateway → service (tandem/node) → tandem/client
// → service, with real processes; and the parsing rules of traceparent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { childContext, continueTrace, currentTrace, formatTraceparent, parseTraceparent, traceHeaders } from '../src/observe/trace.js';
import { startGateway } from './helpers/gateway.js';
import { spawnInstance } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

const { track } = cleanupAfterAll();


const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

test('a traceparent survives gateway → service → client → service, each hop a new span of the same trace', async () => {
  const gw = track(await startGateway({ services: { front: {}, back: {} }, routes: [{ prefix: '/', service: 'front' }], log: { level: 'info', access: 'all' } }));
  track(await spawnInstance({ registry: gw.adminUrl, service: 'back' }));
  track(await spawnInstance({ registry: gw.adminUrl, service: 'front', callee: 'back' }, 'caller-instance'));

  const res = await fetch(`${gw.url}/order`, { headers: { traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'vendor=abc' } });
  const body = (await res.json()) as { traceparent: string; callee: { traceparent: string } };
  assert.equal(res.status, 200, JSON.stringify(body));
  const atFront = parseTraceparent(body.traceparent);
  const atBack = parseTraceparent(body.callee.traceparent);
  assert.ok(atFront && atBack, JSON.stringify(body));
  assert.equal(atFront.traceId, TRACE, 'front is in the caller\'s trace');
  assert.equal(atBack.traceId, TRACE, 'back (called through tandem/client) is in the caller\'s trace');
  assert.equal(atFront.flags, 1);
  assert.equal(atBack.flags, 1);
  const spans = new Set([SPAN, atFront.spanId, atBack.spanId]);
  assert.equal(spans.size, 3, `the gateway and the client each send their own span id: ${[...spans].join(' ')}`);
  const line = await gw.waitForLog((l) => l.msg === 'request' && l.path === '/order');
  assert.equal(line.traceId, TRACE, 'the access log line carries the trace id');

  // No traceparent from the client: the gateway starts a trace, and it still reaches back.
  const fresh = (await (await fetch(`${gw.url}/order`)).json()) as { traceparent: string; callee: { traceparent: string } };
  const f1 = parseTraceparent(fresh.traceparent);
  const f2 = parseTraceparent(fresh.callee.traceparent);
  assert.ok(f1 && f2);
  assert.notEqual(f1.traceId, TRACE);
  assert.equal(f2.traceId, f1.traceId);
  assert.notEqual(f2.spanId, f1.spanId);

  // A malformed traceparent is not passed on: a new trace starts.
  const bad = (await (await fetch(`${gw.url}/order`, { headers: { traceparent: `00-${'0'.repeat(32)}-${SPAN}-01` } })).json()) as { traceparent: string };
  const b = parseTraceparent(bad.traceparent);
  assert.ok(b);
  assert.notEqual(b.traceId, '0'.repeat(32));
});

test('traceparent parsing follows W3C Trace Context; event envelopes carry the current trace', () => {
  assert.deepEqual(parseTraceparent(`00-${TRACE}-${SPAN}-01`), { traceId: TRACE, spanId: SPAN, flags: 1 });
  assert.deepEqual(parseTraceparent(`00-${TRACE.toUpperCase()}-${SPAN}-00`, 'a=1'), { traceId: TRACE, spanId: SPAN, flags: 0, tracestate: 'a=1' });
  // a future version may append fields; version ff is invalid; ids may not be all zero
  assert.equal(parseTraceparent(`01-${TRACE}-${SPAN}-01-extra`)?.traceId, TRACE);
  for (const bad of [undefined, '', `ff-${TRACE}-${SPAN}-01`, `00-${'0'.repeat(32)}-${SPAN}-01`, `00-${TRACE}-${'0'.repeat(16)}-01`,
    `00-${TRACE}-${SPAN}-01-extra`, `00-${TRACE.slice(1)}x-${SPAN}-01`, `00_${TRACE}-${SPAN}-01`]) {
    assert.equal(parseTraceparent(bad), undefined, String(bad));
  }
  const child = childContext({ traceId: TRACE, spanId: SPAN, flags: 1 });
  assert.equal(child.traceId, TRACE);
  assert.match(child.spanId, /^[0-9a-f]{16}$/);
  assert.notEqual(child.spanId, SPAN);
  assert.equal(formatTraceparent(child), `00-${TRACE}-${child.spanId}-01`);

  // What tandem/events puts in an envelope, and how a consumer continues it.
  assert.equal(currentTrace(), undefined);
  const envelope = continueTrace({ traceparent: `00-${TRACE}-${SPAN}-01`, tracestate: 'k=v' }, () => traceHeaders());
  const sent = parseTraceparent(envelope.traceparent);
  assert.equal(sent?.traceId, TRACE);
  assert.notEqual(sent?.spanId, SPAN);
  assert.equal(envelope.tracestate, 'k=v');
  const consumed = continueTrace(envelope, () => currentTrace());
  assert.equal(consumed?.traceId, TRACE);
  const root = parseTraceparent(traceHeaders().traceparent);
  assert.ok(root && root.traceId !== TRACE, 'outside any trace a new one starts');
});
