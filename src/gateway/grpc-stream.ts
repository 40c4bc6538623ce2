import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { H, headerKind } from './header-names.js';

/**
 * gRPC calls on the HTTP/2 core API. Node's compatibility API wraps every stream in an
 * `Http2ServerRequest` (a second Readable fed by the stream) and an `Http2ServerResponse` (a
 * second Writable, with its own listeners on the stream): on a call of a few hundred bytes that
 * wrapping is a measurable part of the gateway's cost (docs/benchmarks.md). A gRPC call's
 * stream is handed to the proxy as these two objects instead: the proxy reads the request's
 * fields and body, and writes the response, through the members it uses of the compatibility
 * API's objects — each one here a direct use of the stream.
 *
 * Only calls take this path (content-type application/grpc, no `Expect`); every other HTTP/2
 * request goes through the compatibility API as before (listener.ts).
 */

/** The request half: header fields, with the stream itself as the body. */
export class GrpcStreamRequest {
  readonly httpVersionMajor = 2;
  readonly httpVersionMinor = 0;
  readonly httpVersion = '2.0';
  readonly method: string;
  readonly url: string;
  readonly authority: string | undefined;
  /** The client's connection: its address, and the peer facts the proxy keeps per connection. */
  readonly socket: Socket;

  constructor(
    readonly stream: ServerHttp2Stream,
    readonly headers: IncomingHttpHeaders,
    /** Name, value, … as received, pseudo-headers included (as `Http2ServerRequest.rawHeaders`). */
    readonly rawHeaders: string[],
  ) {
    this.method = headers[':method'] ?? '';
    this.url = headers[':path'] ?? '';
    this.authority = headers[':authority'];
    // Taken now: a closed stream no longer knows its session.
    this.socket = stream.session!.socket as Socket;
  }

  /**
   * The body as the engine reads it. A `protocol: grpc` service's pool reads the stream itself;
   * undici (an HTTP service's pool, for a call routed to one) is given a Readable fed by it:
   * handed the stream, a Duplex whose writable side is the response, it reports the body as
   * closed early.
   */
  body(grpcService: boolean): Readable {
    if (grpcService) return this.stream;
    const out = new PassThrough();
    pipeline(this.stream, out, () => {});
    return out;
  }

  // What the body guard reads of a request (body-guard.ts, GuardedBody): the stream's.
  get complete(): boolean {
    return this.stream.readableEnded;
  }

  get readableFlowing(): boolean | null {
    return this.stream.readableFlowing;
  }

  get readableLength(): number {
    return this.stream.readableLength;
  }

  get destroyed(): boolean {
    return this.stream.destroyed;
  }
}

const kResponse = Symbol('tandem.grpcResponse');
type ResponseStream = ServerHttp2Stream & { [kResponse]?: GrpcStreamResponse };

function ignoreStreamError(): void {}

/** respond()'s options (only read by node:http2). */
const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

/**
 * Whether respond() takes a flat [name, value, …] list (nodejs/node#59455, Node 24.7): learnt
 * from the first response — an older Node refuses the list (ERR_INVALID_ARG_TYPE) before it
 * sends anything, and is given an object from then on.
 */
let listsTaken: boolean | undefined;

/** The response headers, as a flat list where node:http2 takes one (no object made and copied). */
function respondWith(stream: ServerHttp2Stream, list: string[]): void {
  if (listsTaken !== false) {
    try {
      stream.respond(list as unknown as OutgoingHttpHeaders, WAIT_FOR_TRAILERS);
      listsTaken = true;
      return;
    } catch (err) {
      if (listsTaken === true || (err as NodeJS.ErrnoException).code !== 'ERR_INVALID_ARG_TYPE' || stream.headersSent) throw err;
      listsTaken = false;
    }
  }
  stream.respond(headersObject(list), WAIT_FOR_TRAILERS);
}

/** A flat header list as node:http2's object: a repeated name's values in an array. */
function headersObject(list: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const value = list[i + 1]!;
    const had = out[name];
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [String(had), value];
  }
  return out;
}

/** After the last DATA frame: the trailers (one function for every stream). */
function onWantTrailers(this: ResponseStream): void {
  const res = this[kResponse]!;
  this[kResponse] = undefined; // asked once; the closed stream outlives the call (proxy.ts)
  this.sendTrailers(res.trailers ?? {});
}

/** The response half: headers, DATA and trailers straight onto the stream. */
export class GrpcStreamResponse {
  /** Set by addTrailers; sent when the stream asks for them (always after the last DATA frame). */
  trailers: OutgoingHttpHeaders | undefined;

  constructor(readonly stream: ServerHttp2Stream) {
    // A client's RST_STREAM with an error code errors the stream: the call ends by its 'close'
    // (the proxy aborts the endpoint's side), and an 'error' nobody hears would end the process.
    stream.on('error', ignoreStreamError);
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get destroyed(): boolean {
    return this.stream.destroyed;
  }

  get writableFinished(): boolean {
    return this.stream.writableFinished;
  }

  /**
   * The response headers from a flat list. As the compatibility API does, names are lower-cased
   * and the fields HTTP/2 forbids (connection-specific, RFC 9113 §8.2.2) are left out rather
   * than refused; the proxy has already removed the hop-by-hop ones.
   */
  writeHead(status: number, headers: readonly string[]): this {
    const list = [':status', status === 200 ? '200' : String(status)];
    for (let i = 0; i < headers.length; i += 2) {
      const raw = headers[i]!;
      const value = headers[i + 1]!;
      switch (headerKind(raw)) {
        case H.CONNECTION: case H.KEEP_ALIVE: case H.PROXY_CONNECTION: case H.TRANSFER_ENCODING: case H.UPGRADE: case H.HTTP2_SETTINGS:
          continue;
        case H.TE:
          if (value.trim().toLowerCase() !== 'trailers') continue;
      }
      list.push(raw.toLowerCase(), value);
    }
    const stream = this.stream as ResponseStream;
    stream[kResponse] = this;
    respondWith(stream, list);
    // Asked for once per stream: a plain listener does.
    stream.on('wantTrailers', onWantTrailers);
    return this;
  }

  write(chunk: Buffer): boolean {
    return this.stream.write(chunk);
  }

  end(chunk?: Buffer | string): this {
    if (!this.stream.headersSent) this.writeHead(200, []);
    if (chunk === undefined) this.stream.end();
    else this.stream.end(chunk);
    return this;
  }

  addTrailers(trailers: OutgoingHttpHeaders): void {
    this.trailers = trailers;
  }

  /**
   * 'close': the stream closed, however it ended; 'finish' is the same moment (as the
   * compatibility API emits it); 'drain': the stream can take more.
   */
  once(event: 'close' | 'finish' | 'drain', listener: () => void): this {
    // A stream closes once: a plain listener does (without once()'s wrapper, made per call).
    if (event === 'drain') this.stream.once('drain', listener);
    else this.stream.on('close', listener);
    return this;
  }

  destroy(error?: Error): void {
    this.stream.destroy(error);
  }
}

/**
 * A gRPC call the proxy may take on the core API: `application/grpc`, or with a codec
 * (`application/grpc+proto`) or parameters; not gRPC-Web, which is served as any HTTP request.
 * The rest goes through the compatibility API, as does a request with `Expect` (which it answers).
 */
export function isGrpcCall(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  if (typeof type !== 'string' || !type.startsWith('application/grpc') || headers.expect !== undefined) return false;
  const next = type.charCodeAt(16);
  return Number.isNaN(next) || next === 43 /* + */ || next === 59 /* ; */;
}
