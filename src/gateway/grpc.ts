import { pipeline, type Readable } from 'node:stream';
import { RecordingBody } from '../upstream/resilience/replayable-body.js';
import type { ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import { TandemError } from '../core/errors.js';
import { GRPC } from '../upstream/grpc.js';

/**
 * The gateway's side of gRPC (a service with `protocol: grpc`): what it answers itself, and how
 * it reads a call's request body. The engine's side — outcomes from grpc-status, retries of
 * idempotent calls, grpc-timeout per attempt — is upstream/grpc.ts.
 */

/**
 * The gRPC status a client gets for a call the gateway could not complete. UNAVAILABLE is what a
 * gRPC client retries by itself (and what the issue asks for when no instance can take a call);
 * a deadline that ran out is DEADLINE_EXCEEDED.
 */
export function grpcStatusOfError(error: { readonly code: string }): number {
  switch (error.code) {
    case 'TANDEM_ERR_UPSTREAM_TIMEOUT': case 'TANDEM_ERR_REQUEST_TIMEOUT': return GRPC.DEADLINE_EXCEEDED;
    case 'TANDEM_ERR_CLIENT_ABORTED': return GRPC.CANCELLED;
    case 'TANDEM_ERR_BODY_TOO_LARGE': case 'TANDEM_ERR_HEADERS_TOO_LARGE': return GRPC.RESOURCE_EXHAUSTED;
    case 'TANDEM_ERR_NO_ROUTE': return GRPC.UNIMPLEMENTED;
    case 'TANDEM_ERR_BAD_REQUEST': case 'TANDEM_ERR_UPSTREAM_PROTOCOL': return GRPC.INTERNAL;
    default: return GRPC.UNAVAILABLE; // no endpoint, overloaded, connect, reset, refused
  }
}

/** A gRPC client's request (by its content-type): the gateway's refusals answer it in gRPC's terms. */
export function isGrpcRequest(headers: { readonly [name: string]: string | string[] | undefined }): boolean {
  const type = headers['content-type'];
  return typeof type === 'string' && type.startsWith('application/grpc');
}

/**
 * Ends a call with `code` and `message`: a Trailers-Only response (one HEADERS frame with
 * END_STREAM: HTTP 200, content-type application/grpc, grpc-status, grpc-message) when nothing
 * was sent yet — never an HTTP error page, which a gRPC client would report as a protocol
 * error — or trailers after the response headers already went out.
 */
export function sendGrpcStatus(res: ServerResponse, code: number, message: string, extra: readonly string[] = []): void {
  const stream = (res as { stream?: ServerHttp2Stream }).stream;
  const status = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(message) };
  if (stream === undefined) {
    // Not HTTP/2: no trailers to speak of; the status goes in the headers, as Trailers-Only would.
    if (res.headersSent) res.destroy();
    else res.writeHead(200, ['content-type', 'application/grpc', 'grpc-status', status['grpc-status'], 'grpc-message', status['grpc-message'], ...extra]).end();
    return;
  }
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) {
    const headers: Record<string, string> = { ':status': '200', 'content-type': 'application/grpc', ...status };
    for (let i = 0; i < extra.length; i += 2) headers[extra[i]!.toLowerCase()] = extra[i + 1]!;
    stream.respond(headers, { endStream: true });
    return;
  }
  (res as unknown as { addTrailers(t: Record<string, string>): void }).addTrailers(status);
  res.end();
}

/**
 * An endpoint's Trailers-Only answer (its only HEADERS frame carries grpc-status) relayed as
 * one: through the compatibility API it would become headers and then empty trailers, which a
 * gRPC client reads as a call without a status.
 */
export function sendTrailersOnly(res: ServerResponse, headers: readonly string[]): void {
  const stream = (res as { stream?: ServerHttp2Stream }).stream;
  if (stream === undefined) {
    res.writeHead(200, headers as string[]).end();
    return;
  }
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const out: Record<string, string | string[]> = { ':status': '200' };
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!.toLowerCase();
    const had = out[name];
    out[name] = had === undefined ? headers[i + 1]! : [...(Array.isArray(had) ? had : [had]), headers[i + 1]!];
  }
  stream.respond(out, { endStream: true });
}

/** grpc-message is percent-encoded UTF-8 outside printable ASCII (and `%` itself). */
export function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Reads a call's request body, to decide between a Buffer (a unary or short client-streaming
 * call: the client ended its stream, within `limit` bytes — it can be sent again on a retry or a
 * hedge) and a stream (a call the client keeps open: bidirectional or long client streaming,
 * which must flow at once or it would wait forever on an answer that waits for it).
 *
 * The gateway cannot know a method's kind, so it looks at what arrived: a client ends a unary
 * call right after its one message, in the same write; so the stream must have ended by the
 * end of the event-loop turn that completed the first message (or, with no data yet, the turn
 * the call began in). Otherwise what arrived so far and the rest flow as a stream. A unary
 * message split over several reads is still buffered: the wait runs until its declared length
 * is in, for at most `waitMs`. Costs a share of one setImmediate per event-loop turn.
 */
export function collectGrpcBody(req: Readable, limit: number, waitMs: number, done: (body: Buffer | Readable | undefined, err?: Error) => void): void {
  new BodyCollector(req as CollectedReadable, limit, waitMs, done).start();
}

const kCollector = Symbol('tandem.grpcBody');
type CollectedReadable = Readable & { [kCollector]?: BodyCollector };

/**
 * collectGrpcBody's state: one object per call, its listeners functions shared by every call
 * (`this` is the request, which names its collector) rather than closures made per call.
 */
class BodyCollector {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private settled = false;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly req: CollectedReadable,
    private readonly limit: number,
    private readonly waitMs: number,
    private readonly done: (body: Buffer | Readable | undefined, err?: Error) => void,
  ) {}

  start(): void {
    const req = this.req;
    req[kCollector] = this;
    // `on`, not `once`: once wraps each listener in a closure of its own; `settled` makes a
    // second 'end', 'error' or 'close' a no-op.
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
    req.on('error', onBodyError);
    req.on('close', onBodyClose);
    if (this.limit <= 0) {
      this.asStream();
      return;
    }
    this.scheduled = true;
    checkAtTurnEnd(this);
  }

  data(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size > this.limit) this.asStream();
    else if (!this.scheduled && this.firstMessageIn()) {
      this.scheduled = true;
      checkAtTurnEnd(this);
    }
  }

  ended(): void {
    const chunks = this.chunks;
    this.settle(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.size));
  }

  closed(): void {
    if (!this.settled) this.settle(undefined, new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client closed the call before its request ended', { status: 499 }));
  }

  /** The end of the turn that completed the first message (or began the call). */
  check(): void {
    this.scheduled = false;
    if (!this.settled && this.firstMessageIn()) this.asStream();
  }

  private firstMessageIn(): boolean {
    const size = this.size;
    if (size === 0) return true; // nothing in the first turn: a call the client keeps open
    const chunks = this.chunks;
    const head = chunks[0]!.length >= 5 ? chunks[0]! : Buffer.concat(chunks);
    if (head.length >= 5 && size >= 5 + head.readUInt32BE(1)) return true;
    // Still coming: not past `waitMs` (a trickling client), then it flows as a stream.
    this.timer ??= setTimeout(() => this.asStream(), this.waitMs);
    return false;
  }

  private asStream(): void {
    if (this.settled) return;
    this.req.pause();
    this.settle(streamOf(this.chunks, this.req, this.limit));
  }

  settle(body: Buffer | Readable | undefined, err?: Error): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const req = this.req;
    // The stream lets go of the collector (and through it of the whole call): node:http2 keeps
    // a closed stream until the next full collection, and what it holds would be copied out
    // of the young generation at every scavenge until then (docs/benchmarks.md).
    req[kCollector] = undefined;
    // An ended body has nothing more to say but a late 'error' or 'close', which find no
    // collector: its listeners stay (taking them off costs more than the call's other reads).
    if (!req.readableEnded) {
      req.off('data', onBodyData);
      req.off('end', onBodyEnd);
      req.off('error', onBodyError);
      req.off('close', onBodyClose);
    }
    this.done(body, err);
  }
}

function onBodyData(this: CollectedReadable, chunk: Buffer): void { this[kCollector]?.data(chunk); }
function onBodyEnd(this: CollectedReadable): void { this[kCollector]?.ended(); }
function onBodyError(this: CollectedReadable, err: Error): void { this[kCollector]?.settle(undefined, err); }
function onBodyClose(this: CollectedReadable): void { this[kCollector]?.closed(); }

/**
 * Collectors to check at the end of this turn: one setImmediate for all the calls that began
 * (or completed a message) in the same turn, not one each.
 */
let toCheck: BodyCollector[] = [];

function checkAtTurnEnd(collector: BodyCollector): void {
  if (toCheck.push(collector) === 1) setImmediate(checkCollectors);
}

function checkCollectors(): void {
  const due = toCheck;
  toCheck = [];
  let i = 0;
  try {
    for (; i < due.length; i++) due[i]!.check();
  } finally {
    // A check that threw leaves the rest to the next turn, not unchecked.
    for (i++; i < due.length; i++) checkAtTurnEnd(due[i]!);
  }
}

/**
 * The chunks already read, then the rest of `req`, as one stream; an error of `req` destroys it.
 * It keeps a copy up to `limit` bytes, so a unary call taken for a stream (its message came in a
 * later read than its headers) can still go again once the client has ended it.
 */
function streamOf(chunks: readonly Buffer[], req: Readable, limit: number): Readable {
  const out = new RecordingBody(limit);
  for (const c of chunks) out.write(c);
  pipeline(req, out, () => {});
  return out;
}
