import { EventEmitter } from 'node:events';
import { isTandemError } from '../core/errors.js';
import { parseOptions, kindOf, type OptionSpec } from '../core/options.js';
import type { ClientResponse, ServiceClient } from './client.js';
import { GRPC_STATUS, grpcStatusName, grpcStatusOfError, grpcStatusOfHttp } from './grpc-status.js';
import { GrpcBidiStream, GrpcClientStream, GrpcServerStream, type GrpcStreamCall, type GrpcStreamKind } from './grpc-stream.js';
import { detailsOf, frame, headersOf, metadataOf, serviceError, type GrpcMethodDefinition, type GrpcMetadataLike, type GrpcModule, type GrpcServiceError } from './grpc-wire.js';

export type { GrpcMethodDefinition, GrpcMetadataLike, GrpcModule, GrpcServiceDefinition, GrpcServiceError } from './grpc-wire.js';

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
    /** Bytes of a request stream kept for a retry (createGrpcClient's `retryBuffer`). */
    private readonly retryBuffer: number,
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
  private ended(method: GrpcMethodDefinition, kind: 'unary' | GrpcStreamKind, started: number, code: number, details: string, peer: string): void {
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
    const stream: GrpcServerStream = new GrpcServerStream(method, this.counter(method, 'server-stream', () => stream.getPeer()));
    void this.open(stream.call, method, idempotent, metadata, options, { request });
    return stream;
  }

  /**
   * A client-streaming call: the caller writes the request messages to the returned stream,
   * `callback` gets the answer. The messages written are kept (up to `retryBuffer` bytes) until
   * the answer begins, so the call can go to another instance while that is safe.
   */
  clientStream(method: GrpcMethodDefinition, idempotent: boolean, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, callback: GrpcCallback): GrpcClientStream {
    parseOptions('a gRPC call', options, CALL_OPTIONS);
    const stream: GrpcClientStream = new GrpcClientStream(method, callback, this.counter(method, 'client-stream', () => stream.getPeer()), this.retryBuffer);
    void this.open(stream.call, method, idempotent, metadata, options);
    return stream;
  }

  /** A bidirectional call: request messages as clientStream's, response messages as serverStream's. */
  bidiStream(method: GrpcMethodDefinition, idempotent: boolean, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions): GrpcBidiStream {
    parseOptions('a gRPC call', options, CALL_OPTIONS);
    const stream: GrpcBidiStream = new GrpcBidiStream(method, this.counter(method, 'bidi', () => stream.getPeer()), this.retryBuffer);
    void this.open(stream.call, method, idempotent, metadata, options);
    return stream;
  }

  /** What a streaming call reports its end to (see ended). */
  private counter(method: GrpcMethodDefinition, kind: GrpcStreamKind, peer: () => string): (code: number, details: string) => void {
    const started = performance.now();
    return (code, details) => this.ended(method, kind, started, code, details, peer());
  }

  /**
   * Sends a streaming call through the engine: the request message of a server stream, or the
   * request stream being written (its retry buffer's body).
   */
  private async open(call: GrpcStreamCall, method: GrpcMethodDefinition, idempotent: boolean, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, one?: { request: unknown }): Promise<void> {
    let grpc: GrpcModule;
    try {
      // Awaited even when loaded: an outcome known at once (a deadline already past) comes after
      // the caller has added its listeners, never from inside the method call.
      grpc = await this.grpc;
    } catch (err) {
      call.fail(err as Error);
      return;
    }
    call.grpc = grpc;
    const start: { message?: Buffer; timeout: number | undefined } | { code: number; details: string } = one === undefined ? timeLeft(options) : startOf(method, one.request, options);
    if ('code' in start) {
      call.settle(start.code, start.details);
      return;
    }
    if (start.timeout !== undefined) call.deadlineIn(start.timeout);
    const body = start.message === undefined ? call.requests!.body : frame(start.message);
    try {
      await this.client.stream({ method: 'POST', path: method.path, headers: headersOf(metadata), timeout: start.timeout }, { method: method.path, idempotent, streams: method.responseStream }, call, body);
    } catch (err) {
      if (!isTandemError(err)) throw err;
      call.settle(grpcStatusOfError(err), err.message);
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

/** A call's request message and time left (ms; undefined without a deadline), or why it cannot start. */
function startOf(method: GrpcMethodDefinition, request: unknown, options: GrpcCallOptions): { message: Buffer; timeout: number | undefined } | { code: number; details: string; cause?: unknown } {
  let message: Buffer;
  try {
    message = (method.requestSerialize as (value: unknown) => Buffer)(request);
  } catch (err) {
    return { code: GRPC_STATUS.INTERNAL, details: `request message serialization failure: ${(err as Error).message}`, cause: err };
  }
  const left = timeLeft(options);
  return 'code' in left ? left : { message, timeout: left.timeout };
}

/** A call's time left (ms; undefined without a deadline), or DEADLINE_EXCEEDED when none is left. */
function timeLeft(options: GrpcCallOptions): { timeout: number | undefined } | { code: number; details: string } {
  const deadline = options.deadline === undefined ? Infinity : Number(options.deadline);
  if (!Number.isFinite(deadline)) return { timeout: undefined };
  const timeout = Math.floor(deadline - Date.now());
  return timeout > 0 ? { timeout } : { code: GRPC_STATUS.DEADLINE_EXCEEDED, details: 'the deadline passed before the call started' };
}

/** The one message of a unary response, or what is wrong with the frames. */
function onlyMessage(body: Buffer): Buffer | string {
  if (body.length < 5) return body.length === 0 ? 'the response has no message' : 'the response ends inside a message frame';
  if (body[0] !== 0) return 'the response message is compressed, and the call accepted no compression';
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) return body.length < 5 + length ? 'the response ends inside a message frame' : 'a unary call got more than one response message';
  return body.subarray(5);
}

