import { Duplex, Readable, Writable } from 'node:stream';
import { TandemError } from '../core/errors.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { RetryBuffer } from '../upstream/resilience/retry-buffer.js';
import type { ResponseHandler, Trailers } from '../upstream/types.js';
import { headersOfRaw } from './client.js';
import { GRPC_STATUS, grpcStatusOfError, grpcStatusOfHttp } from './grpc-status.js';
import { GrpcCallError, detailsOf, frame, metadataOf, serviceError, type GrpcMethodDefinition, type GrpcModule, type GrpcServiceError } from './grpc-wire.js';

/** The streaming kinds of call, as the calls' logs name them. */
export type GrpcStreamKind = 'server-stream' | 'client-stream' | 'bidi';

/** A call's end as grpc-js reports it in 'status'. */
export interface GrpcStatusObject {
  code: number;
  details: string;
  /** grpc-js `Metadata`: the trailers. */
  metadata: unknown;
}

/** What a call does with its answer: where the three kinds differ (see the classes below). */
interface CallSide {
  /** The response headers came (grpc-js's 'metadata'). */
  metadata(metadata: unknown): void;
  /** A response message; false when the caller reads no more for now (the exchange pauses). */
  message(message: unknown): boolean;
  /** The call ended; `error` unless OK. */
  end(status: GrpcStatusObject, error: GrpcServiceError | undefined): void;
  /** The call could not start at all (grpc-js is not installed). */
  fail(error: Error): void;
}

/**
 * One streaming call as the engine sees it: its response handler — the messages decoded as
 * their frames arrive, the exchange paused while the caller reads no more, the gRPC status read
 * from the headers (Trailers-Only) or the trailers — and, when requests stream, the request
 * messages written so far in a retry buffer (upstream/resilience/retry-buffer.ts), so the
 * engine's retry step can send them again to another instance while that is safe. The first
 * answer that reaches the caller (a message, or the end) commits the call: the buffer is let
 * go. The deadline bounds the whole call, not only its start.
 */
export class GrpcStreamCall implements ResponseHandler {
  /** The instance that answered (`host:port`), once known. */
  peer = '';
  /** grpc-js, once loaded (its Metadata and errors' shape). */
  grpc: GrpcModule | undefined;
  /** The request messages (client-streaming and bidirectional calls). */
  readonly requests: RetryBuffer | undefined;
  private abortExchange: ((reason?: Error) => void) | undefined;
  private resumeExchange: (() => void) | undefined;
  /** The caller stopped reading: the exchange is paused until resume(). */
  private waiting = false;
  /** Bytes of a message frame not complete yet. */
  private partial: Buffer | undefined;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;
  private metadata: unknown;
  private messages = 0;

  constructor(
    private readonly method: GrpcMethodDefinition,
    readonly kind: GrpcStreamKind,
    private readonly side: CallSide,
    private readonly counted: (code: number, details: string) => void,
    /** Bytes of request messages kept for a retry (request streams only). */
    retryBuffer = 0,
  ) {
    this.requests = kind === 'server-stream' ? undefined : new RetryBuffer(retryBuffer);
  }

  /** The call has ended (its status is out). */
  get done(): boolean {
    return this.finished;
  }

  /** Ends the call with CANCELLED (grpc-js's cancel()); the HTTP/2 stream is reset. */
  cancel(): void {
    if (this.finished) return;
    this.abortExchange?.(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call was cancelled by its caller', { status: 499 }));
    this.settle(GRPC_STATUS.CANCELLED, 'Cancelled on client');
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

  /** The caller reads again: a paused exchange goes on. */
  resume(): void {
    if (!this.waiting) return;
    this.waiting = false;
    this.resumeExchange?.();
  }

  /**
   * A request message: encoded, framed and added to the request stream. `done` is called once
   * the stream can take more (HTTP/2 flow control and the stream's buffer): the writer's
   * backpressure. After the end, messages are dropped, as grpc-js drops them.
   */
  write(message: unknown, done: () => void): void {
    if (this.finished || this.requests === undefined) {
      done();
      return;
    }
    let bytes: Buffer;
    try {
      bytes = (this.method.requestSerialize as (value: unknown) => Buffer)(message);
    } catch (err) {
      this.failExchange(GRPC_STATUS.INTERNAL, `Request message serialization failure: ${(err as Error).message}`);
      done();
      return;
    }
    this.requests.write(frame(bytes), done);
  }

  /** The caller has written its last request message (grpc-js's half-close). */
  endRequests(): void {
    if (!this.finished) this.requests?.end();
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.peer = endpoint.id;
    this.abortExchange = abort;
    // Cancelled, or past its deadline, before the exchange had a connection.
    if (this.finished) abort(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the call ended before it was sent', { status: 499 }));
  }

  /**
   * The answer begins. The engine holds a gRPC answer's headers until its first message or its
   * end (upstream/attempt.ts), so this is the commit point: nothing of the call goes again.
   */
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.finished) return true;
    this.requests?.commit();
    this.resumeExchange = resume;
    const headers = headersOfRaw(rawHeaders);
    this.metadata = metadataOf(this.grpc!, headers);
    if (statusCode !== 200) {
      // Not a gRPC answer (a proxy's error page): its HTTP status says what happened.
      this.settle(grpcStatusOfHttp(statusCode), `HTTP status ${statusCode}`);
      return true;
    }
    this.side.metadata(this.metadata);
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
      if (this.kind === 'client-stream' && this.messages === 1) {
        // grpc-js's words for a server that answers a client stream with more than one message.
        this.failExchange(GRPC_STATUS.UNIMPLEMENTED, 'Too many responses received');
        return true;
      }
      let message: unknown;
      try {
        message = this.method.responseDeserialize(bytes.subarray(5, 5 + length));
      } catch (err) {
        this.failExchange(GRPC_STATUS.INTERNAL, `response message parsing error: ${(err as Error).message}`);
        return true;
      }
      this.messages++;
      if (!this.side.message(message)) this.waiting = true;
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

  /** The call cannot start: grpc-js could not be loaded. */
  fail(error: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.requests?.close();
    this.side.fail(error);
  }

  /** The exchange is cut and the call ends with `code`. */
  private failExchange(code: number, details: string): void {
    this.abortExchange?.(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', details));
    this.settle(code, details);
  }

  /** The call's end: counted, logged, then reported as grpc-js reports it (see the classes). */
  settle(code: number, details: string): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.requests?.close();
    let c = Number.isInteger(code) && code >= 0 ? code : GRPC_STATUS.UNKNOWN;
    let text = details;
    if (c === GRPC_STATUS.OK && this.kind === 'client-stream' && this.messages === 0) {
      // grpc-js's verdict on a client stream answered OK without its one message.
      c = GRPC_STATUS.UNIMPLEMENTED;
      text = 'No message received';
    }
    this.counted(c, text);
    const metadata = this.metadata ?? (this.grpc === undefined ? undefined : new this.grpc.Metadata());
    const error = c === GRPC_STATUS.OK ? undefined : this.grpc === undefined ? new GrpcCallError(c, text, metadata) : serviceError(this.grpc, c, text, metadata);
    this.side.end({ code: c, details: text, metadata }, error);
  }
}

/**
 * A server-streaming call as grpc-js has it (its ClientReadableStream): a Readable of the
 * response messages, 'metadata' when the response headers come, then at the end 'status' —
 * after an 'error' (a ServiceError with the call's status) when it did not end OK; cancel()
 * ends it CANCELLED. The instance is read no faster than the caller reads the stream.
 */
export class GrpcServerStream extends Readable {
  /** @internal The call as the engine sees it. */
  readonly call: GrpcStreamCall;

  constructor(method: GrpcMethodDefinition, counted: (code: number, details: string) => void) {
    super({ objectMode: true });
    this.call = new GrpcStreamCall(method, 'server-stream', readingSide(this), counted);
  }

  /** Ends the call with CANCELLED (grpc-js's cancel()). */
  cancel(): void {
    this.call.cancel();
  }

  /** The instance that answered (`host:port`), once known. */
  getPeer(): string {
    return this.call.peer;
  }

  override _read(): void {
    this.call.resume();
  }
}

/**
 * A client-streaming call as grpc-js has it (its ClientWritableStream): a Writable of the
 * request messages — `write()` returns false while the HTTP/2 stream can take no more ('drain'
 * follows), `end()` when the last is written — that emits 'metadata' when the response headers
 * come; the method's callback gets the one response message (or the error), then 'status' is
 * emitted. cancel() ends it CANCELLED.
 */
export class GrpcClientStream extends Writable {
  /** @internal The call as the engine sees it. */
  readonly call: GrpcStreamCall;

  constructor(method: GrpcMethodDefinition, callback: (error: GrpcServiceError | null, response?: unknown) => void, counted: (code: number, details: string) => void, retryBuffer: number) {
    super({ objectMode: true });
    let reply: unknown;
    this.call = new GrpcStreamCall(method, 'client-stream', {
      metadata: (metadata) => this.emit('metadata', metadata),
      message: (message) => {
        reply = message;
        return true;
      },
      end: (status, error) => {
        if (error === undefined) callback(null, reply);
        else callback(error);
        this.emit('status', status);
      },
      fail: (error) => callback(error as GrpcServiceError),
    }, counted, retryBuffer);
  }

  cancel(): void {
    this.call.cancel();
  }

  getPeer(): string {
    return this.call.peer;
  }

  override _write(message: unknown, _encoding: BufferEncoding, done: () => void): void {
    this.call.write(message, done);
  }

  override _final(done: () => void): void {
    this.call.endRequests();
    done();
  }
}

/**
 * A bidirectional call as grpc-js has it (its ClientDuplexStream): write the request messages
 * (backpressure as GrpcClientStream's), read the response messages (as GrpcServerStream's);
 * 'metadata', then at the end 'status', after an 'error' when it did not end OK. cancel() ends
 * it CANCELLED.
 */
export class GrpcBidiStream extends Duplex {
  /** @internal The call as the engine sees it. */
  readonly call: GrpcStreamCall;

  constructor(method: GrpcMethodDefinition, counted: (code: number, details: string) => void, retryBuffer: number) {
    super({ objectMode: true });
    this.call = new GrpcStreamCall(method, 'bidi', readingSide(this), counted, retryBuffer);
  }

  cancel(): void {
    this.call.cancel();
  }

  getPeer(): string {
    return this.call.peer;
  }

  override _read(): void {
    this.call.resume();
  }

  override _write(message: unknown, _encoding: BufferEncoding, done: () => void): void {
    this.call.write(message, done);
  }

  override _final(done: () => void): void {
    this.call.endRequests();
    done();
  }
}

/** How a call with response messages reports them: grpc-js's ClientReadableStream and ClientDuplexStream. */
function readingSide(stream: Readable): CallSide {
  return {
    metadata: (metadata) => stream.emit('metadata', metadata),
    message: (message) => stream.push(message),
    end: (status, error) => {
      stream.push(null);
      if (error !== undefined) stream.emit('error', error);
      stream.emit('status', status);
    },
    fail: (error) => stream.destroy(error),
  };
}
