import { randomUUID } from 'node:crypto';
import { TandemError } from '../core/errors.js';
import { parseOptions, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';

/**
 * What travels on the wire for every event. The payload is JSON; everything else is metadata
 * a consumer, a dead-letter listing or a trace viewer needs without knowing the payload.
 */
export interface Envelope<T = unknown> {
  /** Unique per logical message; the broker dedupe key and the inbox key. Kept across retries and replays. */
  readonly id: string;
  readonly topic: string;
  /** When it was first published (ISO 8601, wall clock). */
  readonly time: string;
  /** Partition/ordering hint passed through to consumers; tandem does not order by it. */
  readonly key?: string;
  /** Shared by every message of one business flow: the first message's id unless given. */
  readonly correlationId: string;
  /** The id of the message whose handling published this one. */
  readonly causationId?: string;
  /** W3C trace context (`traceparent`, optional `tracestate`). */
  readonly trace: { readonly traceparent: string; readonly tracestate?: string };
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: T;
}

/** An envelope as a handler receives it: plus how many times it has been tried. */
export interface Message<T = unknown> extends Envelope<T> {
  /** 1 on the first delivery; counts retries and redeliveries after a consumer died. */
  readonly attempt: number;
  /** The broker delivered it before (a consumer died or failed to ack in time). */
  readonly redelivered: boolean;
}

export interface PublishOptions {
  /** Message id; give a stable one (an order id + event name) to make republishing idempotent. Default: a random UUID. */
  id?: string;
  key?: string;
  headers?: Record<string, string>;
  correlationId?: string;
  causationId?: string;
  /** The message being handled: sets correlation and causation ids and continues its trace. */
  causedBy?: Pick<Envelope, 'id' | 'correlationId' | 'trace'>;
  traceparent?: string;
  tracestate?: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A new span under the given trace, or a new trace. */
/** Random ids from randomUUID (batched entropy: ~10× cheaper per call than randomBytes). */
function childTraceparent(parent: string | undefined): string {
  const span = randomUUID().slice(-12) + randomUUID().slice(-4);
  const m = parent === undefined ? null : TRACEPARENT.exec(parent);
  if (m) return `00-${m[1]}-${span}-${m[3]}`;
  return `00-${randomUUID().replaceAll('-', '')}-${span}-01`;
}

const PUBLISH_SPEC: OptionSpec = {
  id: rules.string,
  key: rules.anyString,
  headers: rules.record(rules.anyString, 'an object of strings'),
  correlationId: rules.string,
  causationId: rules.string,
  causedBy: rules.object,
  traceparent: rules.string,
  tracestate: rules.anyString,
};
/** The `typeof` each publish option has; anything else goes to the full check for its message. */
const PUBLISH_KINDS: Readonly<Record<string, string>> = { id: 'string', key: 'string', headers: 'object', correlationId: 'string', causationId: 'string', causedBy: 'object', traceparent: 'string', tracestate: 'string' };

/**
 * Publish options are checked on every publish, so the common case is a loop over the keys;
 * only a key or a kind out of place pays for the full check (which throws with the hint).
 */
function checkPublishOptions(options: PublishOptions): void {
  if (typeof options !== 'object' || options === null) parseOptions('publish()', options, PUBLISH_SPEC);
  for (const key in options) {
    const value = (options as Record<string, unknown>)[key];
    if (value !== undefined && (!Object.hasOwn(PUBLISH_KINDS, key) || typeof value !== PUBLISH_KINDS[key] || (key === 'headers' && !allStrings(value)))) {
      parseOptions('publish()', options, PUBLISH_SPEC);
      return;
    }
  }
}

function allStrings(headers: unknown): boolean {
  if (headers === null || Array.isArray(headers)) return false;
  for (const k in headers as Record<string, unknown>) if (typeof (headers as Record<string, unknown>)[k] !== 'string') return false;
  return true;
}

export function createEnvelope<T>(topic: string, payload: T, options: PublishOptions = {}): Envelope<T> {
  checkPublishOptions(options);
  const id = options.id ?? randomUUID();
  if (typeof id !== 'string' || id.length === 0 || id.length > 200) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `publish: id must be a non-empty string of at most 200 characters, got ${JSON.stringify(id)}`);
  }
  const parent = options.causedBy;
  const traceparent = options.traceparent ?? childTraceparent(parent?.trace.traceparent);
  const tracestate = options.tracestate ?? parent?.trace.tracestate;
  const causationId = options.causationId ?? parent?.id;
  // Built field by field (no conditional spreads): this runs once per published message.
  const envelope: { -readonly [K in keyof Envelope<T>]: Envelope<T>[K] } = {
    id,
    topic,
    time: new Date().toISOString(),
    correlationId: options.correlationId ?? parent?.correlationId ?? id,
    trace: tracestate === undefined ? { traceparent } : { traceparent, tracestate },
    headers: options.headers === undefined ? {} : { ...options.headers },
    payload,
  };
  if (options.key !== undefined) envelope.key = options.key;
  if (causationId !== undefined) envelope.causationId = causationId;
  return envelope;
}

/** JSON; a correlation id equal to the id and empty headers are left out (decode restores them). */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const e = envelope;
  let headers: Envelope['headers'] | undefined = e.headers;
  if (Object.keys(headers).length === 0) headers = undefined;
  // A fresh object in a fixed shape (no delete: that would make JSON.stringify take its slow path).
  return Buffer.from(JSON.stringify({
    id: e.id,
    topic: e.topic,
    time: e.time,
    key: e.key,
    correlationId: e.correlationId === e.id ? undefined : e.correlationId,
    causationId: e.causationId,
    trace: e.trace,
    headers,
    payload: e.payload,
  }));
}

/** Parses a wire message; a body that is not an envelope throws (the caller dead-letters it). */
export function decodeEnvelope(body: Uint8Array): Envelope {
  const value = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as Partial<Envelope>;
  if (typeof value !== 'object' || value === null || typeof value.id !== 'string' || typeof value.topic !== 'string') {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', 'message body is not a tandem envelope (no id or topic)');
  }
  const v = value as { -readonly [K in keyof Envelope]: Envelope[K] };
  v.correlationId ??= v.id;
  v.headers ??= {};
  return v;
}

const TOPIC = /^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/;
const GROUP = /^[A-Za-z0-9-]+$/;

/** Topics and groups become subject tokens, stream and queue names: a portable character set. */
/** `publish()` of every adapter: a new envelope for `payload`, sent through the adapter's `publishEnvelope`. */
export async function publishPayload<T>(bus: { publishEnvelope(envelope: Envelope): Promise<void> }, topic: string, payload: T, options?: PublishOptions): Promise<Envelope<T>> {
  checkTopic(topic);
  const envelope = createEnvelope(topic, payload, options);
  await bus.publishEnvelope(envelope);
  return envelope;
}

export function checkTopic(topic: string): void {
  if (typeof topic !== 'string' || !TOPIC.test(topic) || topic.length > 120) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `topic ${JSON.stringify(topic)}: use letters, digits and '-' in dot-separated words (at most 120 characters), e.g. "orders.created"`);
  }
}

export function checkGroup(group: string): void {
  if (typeof group !== 'string' || !GROUP.test(group) || group.length > 60) {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `group ${JSON.stringify(group)}: use letters, digits and '-' only (at most 60 characters), e.g. "billing"`);
  }
}
