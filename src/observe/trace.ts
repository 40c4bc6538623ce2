import { AsyncLocalStorage } from 'node:async_hooks';
import { randomFillSync } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) through every hop tandem makes: the
 * gateway, tandem/node, tandem/client and event envelopes carry `traceparent` (and pass
 * `tracestate` on untouched). tandem needs no tracing library for that. When the application
 * has `@opentelemetry/api` installed and an OpenTelemetry SDK registered, each hop is also a
 * span (gateway: server span per request; tandem/node: server span around the handler, made
 * the active context; tandem/client: client span per call); otherwise nothing is recorded and
 * the ids are tandem's own.
 */

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

export interface TraceContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero: the span that sends the request. */
  readonly spanId: string;
  /** Trace flags; bit 0 = sampled. */
  readonly flags: number;
  /** The `tracestate` header as received, passed on unchanged. */
  readonly tracestate?: string;
}

const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** 0 when v[from..to) is hex digits (lower case), 1 when some are upper case, -1 when not hex. */
function hexRun(v: string, from: number, to: number): number {
  let upper = 0;
  for (let i = from; i < to; i++) {
    const c = v.charCodeAt(i);
    if ((c >= 48 && c <= 57) || (c >= 97 && c <= 102)) continue;
    if (c >= 65 && c <= 70) { upper = 1; continue; }
    return -1;
  }
  return upper;
}

/** Parses a traceparent header; undefined when absent or invalid (then a new trace starts). */
export function parseTraceparent(value: string | undefined, tracestate?: string): TraceContext | undefined {
  if (value === undefined || value.length < 55) return undefined;
  let v = value.length === 55 ? value : value.trim();
  if (v.length < 55) return undefined;
  // version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (v[2] !== '-' || v[35] !== '-' || v[52] !== '-') return undefined;
  const h = hexRun(v, 0, 2) | hexRun(v, 3, 35) | hexRun(v, 36, 52) | hexRun(v, 53, 55);
  if (h < 0) return undefined;
  if (h > 0) v = v.toLowerCase();
  const version = v.slice(0, 2);
  if (version === 'ff' || (v.length > 55 && (version === '00' || v[55] !== '-'))) return undefined;
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  const flags = parseInt(v.slice(53, 55), 16);
  return tracestate === undefined || tracestate === '' ? { traceId, spanId, flags } : { traceId, spanId, flags, tracestate };
}

export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${(ctx.flags & 0xff).toString(16).padStart(2, '0')}`;
}

// Random ids from a pooled buffer: one randomFillSync per 256 span ids, not one per request.
const pool = Buffer.alloc(2048);
let poolAt = pool.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
}

export function newSpanId(): string {
  const id = randomHex(8);
  return id === ZERO_SPAN ? newSpanId() : id;
}

export function newTraceId(): string {
  const id = randomHex(16);
  return id === ZERO_TRACE ? newTraceId() : id;
}

/** A child of `parent` (same trace, a new span id), or the root of a new sampled trace. */
export function childContext(parent: TraceContext | undefined): TraceContext {
  if (parent === undefined) return { traceId: newTraceId(), spanId: newSpanId(), flags: 1 };
  return parent.tracestate === undefined
    ? { traceId: parent.traceId, spanId: newSpanId(), flags: parent.flags }
    : { traceId: parent.traceId, spanId: newSpanId(), flags: parent.flags, tracestate: parent.tracestate };
}

const storage = new AsyncLocalStorage<TraceContext | undefined>();

/** The trace of the request (or event) being handled, when tandem/node or continueTrace set one. */
export function currentTrace(): TraceContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `ctx` as the current trace context. */
export function runWithTrace<T>(ctx: TraceContext | undefined, fn: () => T): T {
  return storage.run(ctx, fn);
}

/**
 * Headers for an outgoing message made in the current context (for event envelopes and any
 * other transport): a child span of the current trace, or a new trace when there is none.
 */
export function traceHeaders(parent: TraceContext | undefined = currentTrace()): Record<string, string> {
  const ctx = childContext(parent);
  const out: Record<string, string> = { [TRACEPARENT]: formatTraceparent(ctx) };
  if (ctx.tracestate !== undefined) out[TRACESTATE] = ctx.tracestate;
  return out;
}

/** Runs `fn` in the trace the headers carry (e.g. a consumed event's envelope); a new trace when they carry none. */
export function continueTrace<T>(headers: Record<string, string | string[] | undefined>, fn: () => T): T {
  const parent = parseTraceparent(first(headers[TRACEPARENT]), first(headers[TRACESTATE]));
  return runWithTrace(parent ?? childContext(undefined), fn);
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

// --- optional OpenTelemetry spans ---------------------------------------------------------------

/** The part of `@opentelemetry/api` used here (kept local so tandem's types need no OpenTelemetry). */
interface OtelSpan {
  spanContext(): { traceId: string; spanId: string; traceFlags: number };
  isRecording(): boolean;
  setAttribute(key: string, value: string | number): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  end(): void;
}
interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): { startSpan(name: string, options: unknown, context: unknown): OtelSpan };
    setSpanContext(context: unknown, spanContext: unknown): unknown;
    setSpan(context: unknown, span: OtelSpan): unknown;
    getTracerProvider?(): unknown;
  };
  context: { with<T>(context: unknown, fn: () => T): T; active(): unknown };
  ROOT_CONTEXT: unknown;
  SpanKind: { SERVER: number; CLIENT: number };
  SpanStatusCode: { ERROR: number };
}

let otel: OtelApi | null | undefined;
/** The API's tracer: a proxy that follows whichever provider the application registers, so it can be kept. */
let tracer: ReturnType<OtelApi['trace']['getTracer']> | undefined;

/**
 * Resolves once tandem knows whether `@opentelemetry/api` is installed. Loaded lazily, once, by
 * dynamic import: an application without it pays nothing and needs nothing.
 */
export const tracingReady: Promise<void> = import('@opentelemetry/api').then(
  (m: unknown) => {
    const api = m as Partial<OtelApi> & { default?: OtelApi };
    otel = api.SpanKind !== undefined ? api as OtelApi : api.default?.SpanKind !== undefined ? api.default : null;
  },
  () => { otel = null; },
);

/** One hop of a trace: the context to send on (or run the handler in), and its span's end. */
export interface Hop {
  readonly context: TraceContext;
  /** Ends the span (status = the HTTP status, 0 when there was none). */
  end(status: number, error?: string): void;
  /** Runs `fn` with this hop's span as OpenTelemetry's active context (and as currentTrace()). */
  run<T>(fn: () => T): T;
}

const NO_END = () => {};

class PlainHop implements Hop {
  constructor(readonly context: TraceContext) {}
  end = NO_END;
  run<T>(fn: () => T): T {
    return storage.run(this.context, fn);
  }
}

class SpanHop implements Hop {
  constructor(readonly context: TraceContext, private readonly span: OtelSpan, private readonly api: OtelApi) {}
  end(status: number, error?: string): void {
    if (status > 0) this.span.setAttribute('http.response.status_code', status);
    if (error !== undefined || status >= 500) this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error });
    this.span.end();
  }
  run<T>(fn: () => T): T {
    const ctx = this.api.trace.setSpan(this.api.context.active(), this.span);
    return storage.run(this.context, () => this.api.context.with(ctx, fn));
  }
}

/**
 * Starts a hop under `parent` (a new trace when undefined). With `keepSpan` the hop keeps the
 * parent's span id (tandem/node: the handler runs in the caller's span) unless a span is recorded.
 */
export function startHop(name: string, kind: 'server' | 'client', parent: TraceContext | undefined, attributes?: Record<string, string | number>, keepSpan = false): Hop {
  const api = otel;
  if (api && sdkRegistered(api)) {
    try {
      const hop = spanHop(api, name, kind, parent, attributes);
      if (hop !== undefined) return hop;
    } catch {
      // A misbehaving tracing SDK must not fail a request: the hop goes on untraced.
    }
  }
  return new PlainHop(keepSpan && parent !== undefined ? parent : childContext(parent));
}

let sdkCheckedAt = -Infinity;
let sdkPresent = true;

/**
 * Whether a tracer provider is registered, looked at once a second: without one every span
 * would be a no-op, and making it costs about half a microsecond a request.
 */
function sdkRegistered(api: OtelApi): boolean {
  const now = performance.now();
  if (now - sdkCheckedAt > 1000) {
    sdkCheckedAt = now;
    const delegate = (api.trace.getTracerProvider?.() as { getDelegate?: () => object } | undefined)?.getDelegate?.();
    sdkPresent = delegate === undefined || delegate.constructor?.name !== 'NoopTracerProvider';
  }
  return sdkPresent;
}

function spanHop(api: OtelApi, name: string, kind: 'server' | 'client', parent: TraceContext | undefined, attributes: Record<string, string | number> | undefined): Hop | undefined {
  {
    const parentContext = parent === undefined
      ? api.ROOT_CONTEXT
      : api.trace.setSpanContext(api.ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.flags, isRemote: true });
    tracer ??= api.trace.getTracer('tandem');
    const span = tracer.startSpan(name, { kind: kind === 'server' ? api.SpanKind.SERVER : api.SpanKind.CLIENT, attributes }, parentContext);
    if (span.isRecording()) {
      const sc = span.spanContext();
      const ctx = parent?.tracestate === undefined
        ? { traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags }
        : { traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags, tracestate: parent.tracestate };
      return new SpanHop(ctx, span, api);
    }
    span.end();
  }
  return undefined;
}
