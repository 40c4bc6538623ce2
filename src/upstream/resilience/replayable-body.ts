import type { Readable } from 'node:stream';
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
