import type { Dispatcher } from 'undici';
import type { Duplex } from 'node:stream';
import type { Endpoint } from './endpoint.js';
import type { ResponseHandler, UpstreamRequest } from './types.js';
import { classifyUpstreamError } from './classify.js';
import { TandemError } from '../core/errors.js';

/**
 * One exchange with one endpoint: bridges undici's dispatch callbacks to a ResponseHandler and
 * keeps the endpoint's books (in-flight count, latency estimate, status classes). A class
 * rather than closures: one allocation per request on the hot path.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  private readonly started = performance.now();
  private done = false;
  private responded = false;
  private bodyBytes = 0;
  private bodyLimit = Infinity;
  private abort: ((err?: Error) => void) | undefined;

  constructor(
    private readonly endpoint: Endpoint,
    private readonly handler: ResponseHandler,
  ) {
    endpoint.inflight++;
  }

  static send(endpoint: Endpoint, request: UpstreamRequest, handler: ResponseHandler, timeoutMs: number, idleTimeoutMs: number): void {
    const attempt = new Attempt(endpoint, handler);
    if (request.body !== null && !Buffer.isBuffer(request.body)) attempt.bodyLimit = request.bodyLimit;
    endpoint.pool.dispatch(
      {
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
        headersTimeout: timeoutMs,
        bodyTimeout: idleTimeoutMs,
        upgrade: request.upgrade ?? null,
      },
      attempt,
    );
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.handler.onStart(this.endpoint, abort);
  }

  /** Streamed bodies of unknown length are counted here, as undici writes them. */
  onBodySent(chunk: Buffer | string | number): void {
    // undici 7 passes the chunk; its typings still describe an older (size) signature.
    const size = typeof chunk === 'number' ? chunk : chunk.length;
    this.bodyBytes += size;
    if (this.bodyBytes > this.bodyLimit) {
      const limit = this.bodyLimit;
      this.bodyLimit = Infinity;
      this.abort?.(new TandemError('TANDEM_ERR_BODY_TOO_LARGE', `request body exceeds the ${limit} bytes allowed`, { status: 413 }));
    }
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx interim responses are not forwarded
    const now = performance.now();
    this.endpoint.observeLatency(now - this.started, now);
    const cls = (statusCode / 100) | 0;
    this.endpoint.responses[cls <= 5 ? cls - 1 : 5]!++;
    this.responded = true;
    return this.handler.onHeaders(statusCode, rawHeaders, resume);
  }

  onData(chunk: Buffer): boolean {
    return this.handler.onData(chunk);
  }

  onComplete(): void {
    this.finish();
    this.handler.onComplete();
  }

  onError(err: Error): void {
    const error = classifyUpstreamError(err, this.endpoint.id);
    if (!this.responded && error.code !== 'TANDEM_ERR_CLIENT_ABORTED') {
      // A failure before any response: counted as "no response", and its wait feeds the
      // latency estimate so a hanging endpoint looks as slow as it is.
      const now = performance.now();
      this.endpoint.observeLatency(now - this.started, now);
      this.endpoint.responses[5]!++;
    }
    this.finish();
    this.handler.onError(error);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: Duplex): void {
    this.finish();
    this.endpoint.responses[0]!++;
    this.handler.onUpgrade?.(statusCode, (rawHeaders ?? []) as Buffer[], socket);
  }

  /** Returns true the first time: the endpoint's in-flight count drops exactly once. */
  private finish(): boolean {
    if (this.done) return false;
    this.done = true;
    this.endpoint.inflight--;
    return true;
  }
}
