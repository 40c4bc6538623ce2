import type { IncomingHttpHeaders } from 'node:http2';
import type { Dispatcher } from 'undici';
import { TIMEOUT_HEADER } from '../core/deadline.js';
import { TandemError } from '../core/errors.js';
import type { EndpointPool, PoolSettings } from '../upstream/endpoint.js';
import { formatGrpcTimeout } from '../upstream/grpc.js';
import { H2cPool } from '../upstream/h2c-pool.js';
import { GRPC_STATUS, grpcStatusOfHttp, httpStatusOfGrpc } from './grpc-status.js';

/**
 * gRPC calls to one instance, shaped as an endpoint pool (upstream/endpoint.ts): the
 * engine's Attempt drives it with undici's dispatch options and callbacks, so balancing,
 * retries, hedging, deadlines and health work on gRPC calls as on HTTP requests. The
 * connections are the gateway's gRPC pool's (upstream/h2c-pool.ts: h2c, calls multiplexed, a
 * GOAWAY drains a connection, streams it refused reported as never processed); what this adds
 * is what the engine needs told in its own terms, since tandem/client's requests are not the
 * gateway's gRPC calls (the caller decodes the answer, not a downstream gRPC client):
 *
 * - **the call's status as an HTTP status** (grpc-status.ts: UNAVAILABLE → 503, …), reported
 *   once the call is complete: a unary answer is one message, so it is held until its trailers
 *   say how the call ended, and the attempt's wait bounds the whole call;
 * - **the time left**: the engine's per-attempt `x-tandem-timeout-ms` becomes `grpc-timeout`
 *   (a streaming call's engine writes `grpc-timeout` itself).
 *
 * The response handed up is the response's message frames as they came, with the response
 * headers and trailers (`grpc-status`, `grpc-message`, metadata) as its headers.
 */
export class GrpcConnection implements EndpointPool {
  private readonly pool: H2cPool;

  constructor(
    readonly id: string,
    settings: PoolSettings,
  ) {
    this.pool = new H2cPool(`http://${id}`, settings);
  }

  get stats(): { connected: number } {
    return this.pool.stats;
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers = callHeaders(options.headers, this.id);
    // A server stream (ServiceClient.stream) is a gRPC call to the engine: its Attempt reads the
    // status from the headers or the trailers, and its messages go up as they come.
    if ((handler as { isGrpc?: boolean }).isGrpc === true) return this.pool.dispatch({ ...options, headers }, handler);
    const call = new UnaryAnswer(this.id, handler);
    // The pool calls undici's legacy handler methods, with HTTP/2 trailers as an object (h2c-pool.ts).
    return this.pool.dispatch({ ...options, headers }, call as unknown as Dispatcher.DispatchHandler);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

/** Largest response a call buffers (as createClient's requests). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * The request's headers as a gRPC call's: content-type and te, `:authority` the instance, the
 * engine's time left as grpc-timeout (in place of x-tandem-timeout-ms, or as the engine wrote it).
 */
function callHeaders(headers: Dispatcher.DispatchOptions['headers'], id: string): string[] {
  const out = ['host', id, 'content-type', 'application/grpc', 'te', 'trailers'];
  if (!Array.isArray(headers)) return out;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = String(headers[i]).toLowerCase();
    const value = String(headers[i + 1]);
    if (name === TIMEOUT_HEADER) out.push('grpc-timeout', formatGrpcTimeout(Math.max(1, Number(value))));
    // grpc-timeout is the engine's own (a streaming call's; metadata never carries it).
    else if (name !== 'host' && name !== 'content-type' && name !== 'te' && name !== 'content-length') out.push(name, value);
  }
  return out;
}

/**
 * One unary call's answer, held from the pool's callbacks until it is complete, then reported to
 * the Attempt as one response whose HTTP status is the call's gRPC status.
 */
class UnaryAnswer {
  private headers: Buffer[] | undefined;
  private status = 0;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private abort: ((err?: Error) => void) | undefined;
  private settled = false;

  constructor(
    private readonly id: string,
    private readonly handler: Dispatcher.DispatchHandler,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.handler.onConnect?.(abort);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.status = statusCode;
    this.headers = rawHeaders;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_RESPONSE_BYTES) this.abort?.(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', `${this.id} sent a response larger than ${MAX_RESPONSE_BYTES} bytes`));
    else this.chunks.push(chunk);
    return true;
  }

  /** Complete: its gRPC status (trailers, or the headers of a Trailers-Only answer) reported as an HTTP status, then its frames. */
  onComplete(trailers: IncomingHttpHeaders | undefined): void {
    const raw = [...(this.headers ?? [])];
    let code = statusIn(raw);
    for (const [name, value] of Object.entries(trailers ?? {})) {
      if (name.startsWith(':') || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [String(value)]) raw.push(Buffer.from(name, 'latin1'), Buffer.from(v, 'latin1'));
      if (name === 'grpc-status') code = Number(Array.isArray(value) ? value[0] : value);
    }
    this.answer(Number.isInteger(code) && code >= 0 ? code : GRPC_STATUS.UNKNOWN, raw);
  }

  onError(err: Error): void {
    if (this.settled) return;
    if (this.headers !== undefined && this.status !== 200) {
      // Not a gRPC answer (a proxy's error page, ended without a gRPC status): its HTTP status says what happened.
      const raw = [...this.headers, Buffer.from('grpc-status'), Buffer.from(String(grpcStatusOfHttp(this.status))), Buffer.from('grpc-message'), Buffer.from(`HTTP status ${this.status}`)];
      this.chunks.length = 0;
      this.answer(grpcStatusOfHttp(this.status), raw);
      return;
    }
    this.settled = true;
    this.handler.onError?.(err);
  }

  private answer(code: number, raw: Buffer[]): void {
    if (this.settled) return;
    this.settled = true;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out: Buffer[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toString('latin1').toLowerCase() !== 'content-length') out.push(raw[i]!, raw[i + 1]!);
    out.push(Buffer.from('content-length'), Buffer.from(String(body.length)));
    this.handler.onHeaders?.(httpStatusOfGrpc(code), out, () => {}, '');
    if (body.length > 0) this.handler.onData?.(body);
    this.handler.onComplete?.([]);
  }
}

/** The grpc-status among raw headers, or NaN. */
function statusIn(raw: readonly Buffer[]): number {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toString('latin1').toLowerCase() === 'grpc-status') return Number(raw[i + 1]!.toString('latin1'));
  return Number.NaN;
}
