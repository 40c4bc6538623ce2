import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { TandemError, isTandemError } from '../core/errors.js';
import { parseOptions, kindOf, type OptionSpec } from '../core/options.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { ResponseHandler, Trailers } from '../upstream/types.js';
import { headersOfRaw, type ClientResponse, type ServiceClient } from './client.js';
import { GRPC_STATUS, grpcStatusName, grpcStatusOfError, grpcStatusOfHttp } from './grpc-status.js';

/**
 * One method of a grpc-js service definition — what `@grpc/proto-loader` and grpc-tools make —
 * as this client uses it (declared here: tandem's types do not import grpc-js's).
 */
export interface GrpcMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: never): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
  originalName?: string;
  /** The method's options from the .proto (proto-loader): `idempotency_level` is read. */
  options?: { idempotency_level?: unknown };
}

/** A grpc-js service definition (`Constructor.service`), by method name. */
export type GrpcServiceDefinition = Readonly<Record<string, GrpcMethodDefinition>>;

/** grpc-js's `Metadata`, as far as this client uses it. */
export interface GrpcMetadataLike {
  toHttp2Headers(): Record<string, string | string[] | number | undefined>;
}

/** grpc-js's `ServiceError`: an Error with the call's status. */
export interface GrpcServiceError extends Error {
  code: number;
  details: string;
  /** grpc-js `Metadata`: the response's headers and trailers. */
  metadata: unknown;
}

/** grpc-js's call options, as far as this client takes them. */
export interface GrpcCallOptions {
  /**
   * When the call must be done: a Date or milliseconds since the epoch (grpc-js's `Deadline`).
   * Unset: what is left of the deadline of the request being handled (tandem/node), capped by
   * the service's `timeout` (default 15 s) — never unbounded.
   */
  deadline?: Date | number;
}

export type GrpcCallback<T = unknown> = (error: GrpcServiceError | null, response?: T) => void;

/** The call a method returns: cancel it as a grpc-js call; 'metadata' and 'status' are emitted as grpc-js does. */
export class GrpcUnaryCall extends EventEmitter {
  /** The instance that answered (`host:port`), once known. */
  peer = '';

  constructor(private readonly aborts: AbortController) {
    super();
  }

  /** Ends the call with CANCELLED (the caller's callback hears it). */
  cancel(): void {
    this.aborts.abort();
  }

  getPeer(): string {
    return this.peer;
  }
}

/**
 * The engine decides retries and hedging by HTTP method. A gRPC call is always a POST on the
 * wire; to the engine an idempotent call is presented as a GET (repeatable, hedged when hedging
 * is on), any other as a POST (sent again only when it never reached the instance).
 */
export const IDEMPOTENT_AS = 'GET';
export const NOT_IDEMPOTENT_AS = 'POST';

const CALL_OPTIONS: OptionSpec = {
  deadline: (value, path, problems) => {
    if (!(value instanceof Date) && typeof value !== 'number') problems.push({ path, message: `expected a Date or milliseconds since the epoch, got ${kindOf(value)}` });
  },
};

/** Headers of the request the caller may not set: the transport's own. */
const RESERVED = new Set(['content-type', 'te', 'grpc-timeout', 'content-length', 'user-agent']);

/** The parts of the grpc-js module the calls use (declared: tandem's declarations import nothing of grpc-js). */
export interface GrpcModule {
  Metadata: {
    new (): unknown;
    fromHttp2Headers(headers: Record<string, string | string[]>): unknown;
  };
}

/** Where a client's calls are logged (pino's shape); see GrpcCallLog. */
export interface GrpcCallLogger {
  info(fields: Record<string, unknown>): void;
  warn(fields: Record<string, unknown>): void;
}

/** Which calls are logged: those that did not end OK (at `warn`), all (OK ones at `info`), or none. */
export type GrpcCallLog = 'errors' | 'all' | 'off';

/** Makes the calls of one client: encodes, sends through the ServiceClient, decodes. */
export class GrpcCaller {
  private module: GrpcModule | undefined;

  constructor(
    private readonly client: ServiceClient,
    private readonly grpc: Promise<GrpcModule>,
    private readonly logger: GrpcCallLogger | undefined,
    private readonly log: GrpcCallLog,
  ) {
    void grpc.then((m) => { this.module = m; }, () => {});
  }

  call(method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, callback: GrpcCallback): GrpcUnaryCall {
    // Like grpc-js, a malformed call throws at once; everything else reaches the callback.
    parseOptions('a gRPC call', options, CALL_OPTIONS);
    const aborts = new AbortController();
    const call = new GrpcUnaryCall(aborts);
    const started = performance.now();
    void this.run(method, idempotent, request, metadata, options, aborts.signal, call).then(
      (reply) => {
        this.ended(method, 'unary', started, GRPC_STATUS.OK, '', call.peer);
        callback(null, reply);
      },
      (error: GrpcServiceError) => {
        this.ended(method, 'unary', started, typeof error.code === 'number' ? error.code : -1, error.details ?? error.message, call.peer);
        callback(error);
      },
    );
    return call;
  }

  /**
   * A call ended: counted by method and status (tandem_client_grpc_calls_total), and logged as
   * the client's `log` says — the method and status as the gateway's access log has them.
   */
  private ended(method: GrpcMethodDefinition, kind: 'unary' | 'server-stream', started: number, code: number, details: string, peer: string): void {
    this.client.countGrpc(method.path, code);
    if (this.logger === undefined || this.log === 'off' || (code === GRPC_STATUS.OK && this.log !== 'all')) return;
    const fields = {
      msg: 'grpc call', service: this.client.service, method: method.path, kind, grpcStatus: code, grpcCode: grpcStatusName(code),
      ...(details === '' ? {} : { details }), instance: peer || null, ms: Math.round((performance.now() - started) * 10) / 10,
    };
    if (code === GRPC_STATUS.OK) this.logger.info(fields);
    else this.logger.warn(fields);
  }

  /**
   * A server-streaming call: the stream is returned at once, its messages come as the instance
   * sends them. Like grpc-js, a malformed call throws; everything else reaches the stream.
   */
  serverStream(method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions): GrpcServerStream {
    parseOptions('a gRPC call', options, CALL_OPTIONS);
    const started = performance.now();
    const stream = new GrpcServerStream(method, (code, details) => this.ended(method, 'server-stream', started, code, details, stream.peer));
    void this.open(stream, method, idempotent, request, metadata, options);
    return stream;
  }

  private async open(stream: GrpcServerStream, method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions): Promise<void> {
    let grpc: GrpcModule;
    try {
      grpc = this.module ?? (await this.grpc);
    } catch (err) {
      stream.destroy(err as Error);
      return;
    }
    stream.grpc = grpc;
    const start = startOf(method, request, options);
    if ('code' in start) {
      stream.settle(start.code, start.details);
      return;
    }
    const { message, timeout } = start;
    if (timeout !== undefined) stream.deadlineIn(timeout);
    try {
      await this.client.stream({ method: 'POST', path: method.path, headers: headersOf(metadata), body: frame(message), timeout }, { method: method.path, idempotent }, stream);
    } catch (err) {
      if (!isTandemError(err)) throw err;
      stream.settle(grpcStatusOfError(err), err.message);
    }
  }

  private async run(method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, signal: AbortSignal, call: GrpcUnaryCall): Promise<unknown> {
    const grpc = this.module ?? (await this.grpc);
    const start = startOf(method, request, options);
    if ('code' in start) throw serviceError(grpc, start.code, start.details, undefined, start.cause);
    const { message, timeout } = start;
    let res: ClientResponse;
    try {
      res = await this.client.request({
        method: idempotent ? IDEMPOTENT_AS : NOT_IDEMPOTENT_AS,
        path: method.path,
        headers: headersOf(metadata),
        body: frame(message),
        timeout,
        signal,
      });
    } catch (err) {
      if (!isTandemError(err)) throw err;
      throw serviceError(grpc, grpcStatusOfError(err), err.message, undefined, err);
    }
    call.peer = res.endpoint;
    const responseMetadata = metadataOf(grpc, res.headers);
    call.emit('metadata', responseMetadata);
    const status = Number(res.headers['grpc-status']);
    const code = Number.isInteger(status) ? status : grpcStatusOfHttp(res.status);
    const details = detailsOf(res.headers['grpc-message']);
    call.emit('status', { code, details, metadata: responseMetadata });
    if (code !== GRPC_STATUS.OK) throw serviceError(grpc, code, details, responseMetadata);
    const body = onlyMessage(res.body);
    if (typeof body === 'string') throw serviceError(grpc, GRPC_STATUS.INTERNAL, body, responseMetadata);
    try {
      return method.responseDeserialize(body);
    } catch (err) {
      throw serviceError(grpc, GRPC_STATUS.INTERNAL, `response message parsing error: ${(err as Error).message}`, responseMetadata, err);
    }
  }
}

/**
 * A server-streaming call as grpc-js has it (its ClientReadableStream): a Readable of the
 * response messages, 'metadata' when the response headers come, then at the end 'status' —
 * after an 'error' (a ServiceError with the call's status) when it did not end OK; cancel()
 * ends it CANCELLED. To the engine it is the call's response handler: the messages are decoded
 * as the frames arrive and the instance is read no faster than the caller reads the stream.
 * The deadline bounds the whole stream, not only its start.
 */
export class GrpcServerStream extends Readable implements ResponseHandler {
  /** The instance that answered (`host:port`), once known. */
  peer = '';
  /** grpc-js, once loaded (its Metadata and errors' shape). */
  grpc: GrpcModule | undefined;
  private abortExchange: ((reason?: Error) => void) | undefined;
  private resumeExchange: (() => void) | undefined;
  /** The caller stopped reading: the exchange is paused until _read. */
  private waiting = false;
  /** Bytes of a message frame not complete yet. */
  private partial: Buffer | undefined;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;
  private metadata: unknown;

  constructor(private readonly method: GrpcMethodDefinition, private readonly counted: (code: number, details: string) => void) {
    super({ objectMode: true });
  }

  /** Ends the call with CANCELLED (grpc-js's cancel()). */
  cancel(): void {
    if (this.finished) return;
    this.abortExchange?.(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call was cancelled by its caller', { status: 499 }));
    this.settle(GRPC_STATUS.CANCELLED, 'Cancelled on client');
  }

  getPeer(): string {
    return this.peer;
  }

  /** The deadline, `ms` from now: the exchange is cut and the call ends DEADLINE_EXCEEDED. */
  deadlineIn(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.finished) return;
      this.abortExchange?.(new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `the call's deadline passed after ${ms} ms`, { status: 504 }));
      this.settle(GRPC_STATUS.DEADLINE_EXCEEDED, `the call's deadline passed after ${ms} ms`);
    }, ms);
  }

  override _read(): void {
    if (!this.waiting) return;
    this.waiting = false;
    this.resumeExchange?.();
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.peer = endpoint.id;
    this.abortExchange = abort;
    // Cancelled, or past its deadline, before the exchange had a connection.
    if (this.finished) abort(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call ended before it was sent', { status: 499 }));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.finished) return true;
    this.resumeExchange = resume;
    const headers = headersOfRaw(rawHeaders);
    this.metadata = metadataOf(this.grpc!, headers);
    if (statusCode !== 200) {
      // Not a gRPC answer (a proxy's error page): its HTTP status says what happened.
      this.settle(grpcStatusOfHttp(statusCode), `HTTP status ${statusCode}`);
      return true;
    }
    this.emit('metadata', this.metadata);
    // Trailers-Only: the call's status came with its headers (onComplete follows).
    const status = headers['grpc-status'];
    if (status !== undefined) this.settle(Number(status), detailsOf(headers['grpc-message']));
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.finished) return true;
    let bytes = this.partial === undefined ? chunk : Buffer.concat([this.partial, chunk]);
    this.partial = undefined;
    while (bytes.length >= 5) {
      if (bytes[0] !== 0) {
        this.failExchange(GRPC_STATUS.INTERNAL, 'a response message is compressed, and the call accepted no compression');
        return true;
      }
      const length = bytes.readUInt32BE(1);
      if (bytes.length < 5 + length) break;
      let message: unknown;
      try {
        message = this.method.responseDeserialize(bytes.subarray(5, 5 + length));
      } catch (err) {
        this.failExchange(GRPC_STATUS.INTERNAL, `response message parsing error: ${(err as Error).message}`);
        return true;
      }
      if (!this.push(message)) this.waiting = true;
      bytes = bytes.subarray(5 + length);
    }
    if (bytes.length > 0) this.partial = bytes;
    return !this.waiting;
  }

  onComplete(trailers?: Trailers): void {
    if (this.finished) return;
    if (this.partial !== undefined) {
      this.settle(GRPC_STATUS.INTERNAL, 'the response ends inside a message frame');
      return;
    }
    const own: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(trailers ?? {})) if (value !== undefined && !name.startsWith(':')) own[name] = Array.isArray(value) ? value.map(String) : String(value);
    if (Object.keys(own).length > 0) this.metadata = metadataOf(this.grpc!, own);
    const status = own['grpc-status'];
    // Ended without a status: the call was cut (the engine reports that as an error).
    if (status === undefined) this.settle(GRPC_STATUS.INTERNAL, 'the call ended without a gRPC status');
    else this.settle(Number(status), detailsOf(own['grpc-message']));
  }

  onError(error: TandemError): void {
    this.settle(grpcStatusOfError(error), error.message);
  }

  /** The exchange is cut and the call ends with `code`. */
  private failExchange(code: number, details: string): void {
    this.abortExchange?.(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', details));
    this.settle(code, details);
  }

  /** The call's end, as grpc-js reports it: the stream ends, an error unless OK, then the status. */
  settle(code: number, details: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const c = Number.isInteger(code) && code >= 0 ? code : GRPC_STATUS.UNKNOWN;
    const text = details;
    this.counted(c, text);
    const metadata = this.metadata ?? (this.grpc === undefined ? undefined : new this.grpc.Metadata());
    this.push(null);
    if (c !== GRPC_STATUS.OK) this.emit('error', this.grpc === undefined ? new GrpcCallError(c, text, metadata) : serviceError(this.grpc, c, text, metadata));
    this.emit('status', { code: c, details: text, metadata });
  }
}

/** A call's request message and time left (ms; undefined without a deadline), or why it cannot start. */
function startOf(method: GrpcMethodDefinition, request: unknown, options: GrpcCallOptions): { message: Buffer; timeout: number | undefined } | { code: number; details: string; cause?: unknown } {
  let message: Buffer;
  try {
    message = (method.requestSerialize as (value: unknown) => Buffer)(request);
  } catch (err) {
    return { code: GRPC_STATUS.INTERNAL, details: `request message serialization failure: ${(err as Error).message}`, cause: err };
  }
  const deadline = options.deadline === undefined ? Infinity : Number(options.deadline);
  if (!Number.isFinite(deadline)) return { message, timeout: undefined };
  const timeout = Math.floor(deadline - Date.now());
  return timeout > 0 ? { message, timeout } : { code: GRPC_STATUS.DEADLINE_EXCEEDED, details: 'the deadline passed before the call started' };
}

/** A gRPC message frame: uncompressed flag, length (big-endian), bytes. */
function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** The one message of a unary response, or what is wrong with the frames. */
function onlyMessage(body: Buffer): Buffer | string {
  if (body.length < 5) return body.length === 0 ? 'the response has no message' : 'the response ends inside a message frame';
  if (body[0] !== 0) return 'the response message is compressed, and the call accepted no compression';
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) return body.length < 5 + length ? 'the response ends inside a message frame' : 'a unary call got more than one response message';
  return body.subarray(5);
}

function headersOf(metadata: GrpcMetadataLike | undefined): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  if (metadata === undefined) return out;
  for (const [name, value] of Object.entries(metadata.toHttp2Headers())) {
    if (value === undefined || RESERVED.has(name)) continue;
    out[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

/** The response's headers and trailers as grpc-js Metadata, without the protocol's own. */
function metadataOf(grpc: GrpcModule, headers: Record<string, string | string[]>): unknown {
  const own: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'grpc-status' || name === 'grpc-message' || name === 'content-type' || name === 'content-length' || name.startsWith('grpc-')) continue;
    own[name] = value;
  }
  return grpc.Metadata.fromHttp2Headers(own);
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md). */
function detailsOf(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(', ') : value ?? '';
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The one error class of src/ whose `code` is not a TANDEM_ERR_ code: a gRPC caller expects
 * grpc-js's shape, a numeric status (the tandem code, when there is one, is in `details`).
 */
class GrpcCallError extends Error implements GrpcServiceError {
  constructor(readonly code: number, readonly details: string, readonly metadata: unknown, cause?: unknown) {
    super(`${code} ${grpcStatusName(code)}: ${details}`, cause === undefined ? undefined : { cause });
    this.name = 'GrpcCallError';
  }
}

function serviceError(grpc: GrpcModule, code: number, details: string, metadata?: unknown, cause?: unknown): GrpcServiceError {
  return new GrpcCallError(code, details, metadata ?? new grpc.Metadata(), cause);
}
