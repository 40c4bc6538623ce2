// Optional OpenTelemetry spans: with @opentelemetry/api installed and a tracer provider
// registered (here a minimal recording one, standing in for an SDK), tandem/client calls are
// client spans whose ids go out in traceparent, and tandem/node runs handlers inside a server
// span made the active context.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { context, trace, SpanKind, ROOT_CONTEXT, type Context, type ContextManager, type Span, type SpanContext, type SpanOptions, type Tracer } from '@opentelemetry/api';
import { createClient } from '../src/client/index.js';
import { serve } from '../src/node/index.js';
import { currentTrace, parseTraceparent, runWithTrace, tracingReady } from '../src/observe/trace.js';
import { startBackend } from './helpers/backend.js';
import { startGateway } from './helpers/gateway.js';
import { waitFor } from './helpers/wait.js';

interface Recorded { name: string; kind: SpanKind | undefined; parent: SpanContext | undefined; ctx: SpanContext; attributes: Record<string, unknown>; status?: { code: number }; ended: boolean }
const recorded: Recorded[] = [];

class RecordingSpan {
  constructor(readonly rec: Recorded) {}
  spanContext(): SpanContext { return this.rec.ctx; }
  isRecording(): boolean { return true; }
  setAttribute(k: string, v: unknown): this { this.rec.attributes[k] = v; return this; }
  setAttributes(a: Record<string, unknown>): this { Object.assign(this.rec.attributes, a); return this; }
  setStatus(s: { code: number }): this { this.rec.status = s; return this; }
  end(): void { this.rec.ended = true; }
  addEvent(): this { return this; }
  addLink(): this { return this; }
  addLinks(): this { return this; }
  recordException(): void {}
  updateName(): this { return this; }
}

const tracer = {
  startSpan(name: string, options: SpanOptions = {}, ctx: Context = context.active()): Span {
    const parent = trace.getSpanContext(ctx);
    const rec: Recorded = {
      name, kind: options.kind, parent, ended: false, attributes: { ...(options.attributes ?? {}) },
      ctx: { traceId: parent?.traceId ?? randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), traceFlags: 1 },
    };
    recorded.push(rec);
    return new RecordingSpan(rec) as unknown as Span;
  },
} as unknown as Tracer;

/** Active context over AsyncLocalStorage (what @opentelemetry/context-async-hooks does). */
class AlsContextManager implements ContextManager {
  private readonly als = new AsyncLocalStorage<Context>();
  active(): Context { return this.als.getStore() ?? ROOT; }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.als.run(ctx, () => fn.apply(thisArg, args));
  }
  bind<T>(_ctx: Context, target: T): T { return target; }
  enable(): this { return this; }
  disable(): this { return this; }
}
const ROOT: Context = ROOT_CONTEXT;

const cleanup: Array<() => Promise<unknown>> = [];
before(async () => {
  context.setGlobalContextManager(new AlsContextManager());
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  await tracingReady;
});
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});

test('tandem/client: a client span per call, child of the current trace; its id is the traceparent sent', async () => {
  const backend = await startBackend('b', (req, res) => { req.resume(); res.writeHead(200).end(String(req.headers.traceparent)); });
  cleanup.push(() => backend.close());
  const client = createClient('shop', { endpoints: [backend.address], settings: { healthCheck: false } });
  cleanup.push(() => client.close());
  const parent = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), flags: 1 };
  const res = await runWithTrace(parent, () => client.request({ path: '/x' }));
  const sent = parseTraceparent(res.text());
  const span = recorded.find((r) => r.name === 'GET shop');
  assert.ok(span && sent, JSON.stringify(recorded));
  assert.equal(span.kind, SpanKind.CLIENT);
  assert.deepEqual([span.parent?.traceId, span.parent?.spanId], [parent.traceId, parent.spanId]);
  assert.deepEqual([sent.traceId, sent.spanId], [parent.traceId, span.ctx.spanId], 'the span\'s own id goes out');
  assert.equal(span.ended, true);
  assert.equal(span.attributes['http.response.status_code'], 200);
});

test('tandem/node: the handler runs inside a server span (the active OpenTelemetry context), child of the caller', async () => {
  const gw = await startGateway({ services: { svc: {} }, routes: [{ prefix: '/', service: 'svc' }] });
  cleanup.push(() => gw.stop('SIGKILL'));
  const server = createServer((_req, res) => {
    const active = trace.getActiveSpan()?.spanContext();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ active: active ?? null, current: currentTrace() ?? null }));
  });
  server.listen(0, '127.0.0.1');
  const instance = await serve(server, { service: 'svc', registry: gw.adminUrl, handleSignals: false, logger: { info: () => {}, warn: () => {} } });
  cleanup.push(() => instance.close());
  const res = await fetch(`http://${instance.address}/hello`, { headers: { traceparent: `00-${'c'.repeat(32)}-${'d'.repeat(16)}-01` } });
  const body = (await res.json()) as { active: SpanContext | null; current: { traceId: string; spanId: string } | null };
  const span = recorded.find((r) => r.kind === SpanKind.SERVER && r.parent?.spanId === 'd'.repeat(16));
  assert.ok(span, JSON.stringify(recorded));
  assert.equal(body.active?.spanId, span.ctx.spanId, 'trace.getActiveSpan() in the handler is tandem\'s server span');
  assert.deepEqual([body.current?.traceId, body.current?.spanId], ['c'.repeat(32), span.ctx.spanId]);
  await waitFor('the server span to end', () => span.ended);
  assert.equal(span.attributes['http.response.status_code'], 200);
});
