import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { TandemError } from '../../core/errors.js';
import type { Step } from '../types.js';

/**
 * A streamed body of declared length up to `bodyLimit()` bytes is read into memory first, so a
 * retry or a hedge can send it again. In the chain only while retries are on.
 */
export function replayableBody(bodyLimit: () => number): Step {
  return (next) => (request, handler) => {
    const body = request.body;
    const length = request.bodyLength ?? -1;
    if (body === null || Buffer.isBuffer(body) || length < 0 || length > bodyLimit()) {
      next(request, handler);
      return;
    }
    readWhole(body, length, (buffer, err) => {
      if (buffer === undefined) {
        // The gateway's own verdict on the body (too slow: 408) stands; anything else is the client leaving.
        handler.onError(err instanceof TandemError ? err : new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client went away while sending the body', { cause: err, status: 499 }));
        return;
      }
      request.body = buffer;
      next(request, handler);
    });
  };
}

/** Reads a body of known length into one Buffer; `done(undefined, err)` when the client goes away. */
function readWhole(body: Readable, length: number, done: (buffer: Buffer | undefined, err?: Error) => void): void {
  const buffer = Buffer.allocUnsafe(length);
  let at = 0;
  let settled = false;
  const finish = (err?: Error) => {
    if (settled) return;
    settled = true;
    body.off('data', onData);
    if (err === undefined && at === length) done(buffer);
    else done(undefined, err ?? new TandemError('TANDEM_ERR_CLIENT_ABORTED', `body ended after ${at} of ${length} bytes`));
  };
  const onData = (chunk: Buffer) => {
    // Node's parser enforces Content-Length: no more than `length` bytes arrive.
    chunk.copy(buffer, at);
    at += chunk.length;
  };
  body.on('data', onData);
  body.once('end', () => finish());
  body.once('error', (err: Error) => finish(err));
  body.once('close', () => finish(at === length ? undefined : new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the client closed the body early')));
}

/**
 * A streamed request body that keeps a copy of what passes through it, up to `limit` bytes: once
 * the sender has ended it (within the limit), `replay()` gives it whole, so a retry can send it
 * again although it went out as a stream. The gateway streams a gRPC call's body this way when
 * it could not tell at once that the call was unary (gateway/grpc.ts).
 */
export class RecordingBody extends Transform {
  private chunks: Buffer[] | undefined = [];
  private size = 0;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.chunks !== undefined) {
      this.size += chunk.length;
      if (this.size > this.limit) this.chunks = undefined;
      else this.chunks.push(chunk);
    }
    done(null, chunk);
  }

  /** The whole body, when the sender ended it within the limit; undefined otherwise. */
  replay(): Buffer | undefined {
    return this.writableFinished && this.chunks !== undefined ? Buffer.concat(this.chunks, this.size) : undefined;
  }
}
