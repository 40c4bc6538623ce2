/**
 * An async iterable that holds only the newest value: a producer that runs ahead of its consumer
 * replaces what is waiting instead of queueing it (a watcher wants the current members, not the
 * history). Ends on `end()`, on the signal, or when the consumer breaks out of its loop.
 */
export class Latest<T> implements AsyncIterable<T> {
  private value: { v: T } | undefined;
  private waiting: ((r: IteratorResult<T>) => void) | undefined;
  private ended = false;
  private readonly onEnd: () => void;

  constructor(onEnd: () => void, signal?: AbortSignal) {
    this.onEnd = onEnd;
    if (signal?.aborted) this.end();
    else signal?.addEventListener('abort', () => this.end(), { once: true });
  }

  push(v: T): void {
    if (this.ended) return;
    const waiting = this.waiting;
    if (waiting) {
      this.waiting = undefined;
      waiting({ value: v, done: false });
    } else this.value = { v };
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    const waiting = this.waiting;
    this.waiting = undefined;
    waiting?.({ value: undefined, done: true });
  }

  get isEnded(): boolean {
    return this.ended;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.value) {
          const { v } = this.value;
          this.value = undefined;
          return Promise.resolve({ value: v, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => { this.waiting = resolve; });
      },
      return: () => {
        this.end();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
