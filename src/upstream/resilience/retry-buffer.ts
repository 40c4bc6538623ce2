import { Readable } from 'node:stream';

/**
 * A request body written while its exchange runs — a gRPC call's request stream — with a copy
 * of everything written so far, up to `limit` bytes: gRPC's retry buffer (gRFC A6). While the
 * copy is kept, the retry step can send the body again from its start to another endpoint,
 * although the writer has not ended it: `body.replay()` gives the next attempt a new stream that
 * begins with the copy and goes on with what is written from then on, and the stream of the
 * failed attempt gets nothing more. Past `limit`, or once `commit()`ted (an answer reached the
 * caller), the copy is dropped: the call can no longer go elsewhere, and replay() gives
 * undefined — the retry step then treats the body as any consumed stream (retry-step.ts).
 */
export class RetryBuffer {
  /** The stream the current attempt reads (the engine's `request.body`). */
  body: RetryBufferBody;
  private chunks: Buffer[] | undefined = [];
  private size = 0;
  private ended = false;
  /** The writer waits for the body to take more (see write). */
  private waiting: (() => void) | undefined;

  constructor(private readonly limit: number) {
    this.body = new RetryBufferBody(this);
  }

  /** Whether the copy is still kept: the body can still be sent again. */
  get kept(): boolean {
    return this.chunks !== undefined;
  }

  /**
   * Appends `chunk` to the body (and the copy). `done` is called once the stream the engine
   * reads can take more — at once, or when it is read: how a writer learns of backpressure.
   */
  write(chunk: Buffer, done: () => void): void {
    if (this.chunks !== undefined) {
      this.size += chunk.length;
      if (this.size > this.limit) this.chunks = undefined;
      else this.chunks.push(chunk);
    }
    if (this.body.push(chunk)) done();
    else this.waiting = done;
  }

  /** The writer ended the body. */
  end(): void {
    this.ended = true;
    this.body.push(null);
  }

  /** The call is committed: nothing of it is sent again, and the copy is let go. */
  commit(): void {
    this.chunks = undefined;
  }

  /** The call is over: the copy is let go, and a writer waiting for room is let go too. */
  close(): void {
    this.commit();
    this.pulled(this.body);
  }

  /** A new stream for the next attempt (see RetryBufferBody.replay). */
  replay(from: RetryBufferBody): RetryBufferBody | undefined {
    if (from !== this.body || this.chunks === undefined) return undefined;
    const next = new RetryBufferBody(this);
    for (const chunk of this.chunks) next.push(chunk);
    if (this.ended) next.push(null);
    this.body = next;
    from.destroy();
    return next;
  }

  /** `from` is being read: a writer waiting for room may go on. */
  pulled(from: RetryBufferBody): void {
    if (from !== this.body || this.waiting === undefined) return;
    const done = this.waiting;
    this.waiting = undefined;
    done();
  }
}

/** The request body one attempt reads from a RetryBuffer. */
export class RetryBufferBody extends Readable {
  constructor(private readonly buffer: RetryBuffer) {
    super();
  }

  override _read(): void {
    this.buffer.pulled(this);
  }

  /**
   * The body again from its start, for the next attempt — a stream even once the writer ended
   * it (request streams are never hedged: see hedge-step.ts) — or undefined once the copy is
   * dropped. This stream gets nothing more.
   */
  replay(): RetryBufferBody | undefined {
    return this.buffer.replay(this);
  }
}
