import { realClock, type Clock, type TimerHandle } from '../core/clock.js';

/**
 * Cuts request bodies that stall. A client sending one byte a second held an endpoint
 * connection for all of limits.requestTimeout (5 min): forty such clients held forty
 * connections. Two checks, the model being Kestrel's MinRequestBodyDataRate and nginx's
 * client_body_timeout:
 *
 * - idle: no body byte for `idleTimeout`;
 * - rate: once the body has been read for `grace`, its average rate since the start is below
 *   `minRate` bytes/s.
 *
 * Only time spent waiting on the client counts: while the consumer is not reading (the
 * endpoint is slow to take the body, or no endpoint connection is ready yet) the clock stops,
 * as Kestrel's does. Bytes are those the client connection has received (`socket.bytesRead`):
 * chunk framing counts too, which a client cannot use to hold a connection for long — the
 * request timeout still bounds everything.
 *
 * Cheap on the hot path: watching a body is one small object and an array push; nothing is
 * done per chunk and no timer is made per request. One timer for all watched bodies re-checks
 * their counters every `tickMs` and forgets bodies that are complete or gone.
 */
export interface BodyGuardOptions {
  /** Longest wait for the next body byte while the body is read (ms); 0 = no limit. */
  idleTimeout: number;
  /** Least average rate in bytes/s while the body is read, checked from `grace` on; 0 = none. */
  minRate: number;
  /** Read time before the rate is checked (ms): a slow start (TCP slow start, a client warming up) is allowed. */
  grace: number;
}

/** A request body as the guard sees it; an IncomingMessage is one. */
export interface GuardedBody {
  readonly socket: { readonly bytesRead: number } | null;
  /** True while a consumer reads it (undici streaming it out, or a retry buffer filling). */
  readonly readableFlowing: boolean | null;
  /** Bytes received and not consumed yet: the consumer, not the client, is behind. */
  readonly readableLength: number;
  /** The whole body has arrived. */
  readonly complete: boolean;
  readonly destroyed: boolean;
}

/** Told once when its body stalls; the guard stops watching it. */
export interface StallListener {
  bodyStalled(reason: string): void;
}

class Watch {
  /** The connection's bytesRead when last looked at. */
  bytes: number;
  /** Bytes received since the watch began. */
  received = 0;
  /** When a byte last arrived, or the client was last off the hook. */
  progressAt: number;
  /** Time spent waiting on the client so far (ms). */
  readMs = 0;
  checkedAt: number;

  constructor(readonly body: GuardedBody, readonly listener: StallListener, bytes: number, now: number) {
    this.bytes = bytes;
    this.progressAt = now;
    this.checkedAt = now;
  }
}

export class BodyGuard {
  private options: Readonly<BodyGuardOptions>;
  private watches: Watch[] = [];
  private timer: TimerHandle | undefined;
  private tickMs = 1000;

  constructor(options: BodyGuardOptions, private readonly clock: Clock = realClock) {
    this.options = options;
    this.configure(options);
  }

  /** New limits (a reload); they apply to the bodies already watched too. */
  configure(options: BodyGuardOptions): void {
    this.options = Object.freeze({ ...options });
    this.tickMs = tickFor(options);
  }

  get enabled(): boolean {
    return this.options.idleTimeout > 0 || this.options.minRate > 0;
  }

  /** Bodies watched now (complete ones included until the next check). */
  get size(): number {
    return this.watches.length;
  }

  /** Watches `body` until it is complete or destroyed; `listener` hears once if it stalls first. */
  watch(body: GuardedBody, listener: StallListener): void {
    if (!this.enabled || body.complete || body.socket === null) return;
    this.watches.push(new Watch(body, listener, body.socket.bytesRead, this.clock.now()));
    if (this.timer === undefined) this.timer = this.clock.setTimeout(() => this.tick(), this.tickMs);
  }

  /** Stops watching everything. */
  close(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.watches = [];
  }

  private tick(): void {
    this.timer = undefined;
    const now = this.clock.now();
    const watches = this.watches;
    let kept = 0;
    // A listener may watch another body meanwhile: it lands at the end and is looked at too.
    for (let i = 0; i < watches.length; i++) {
      const w = watches[i]!;
      const stall = this.check(w, now);
      if (stall === undefined) watches[kept++] = w;
      else if (stall !== null) w.listener.bodyStalled(stall);
    }
    watches.length = kept;
    if (kept > 0 && this.timer === undefined) this.timer = this.clock.setTimeout(() => this.tick(), this.tickMs);
  }

  /** undefined: keep watching; null: the body is complete or gone; else why it stalled. */
  private check(w: Watch, now: number): string | null | undefined {
    const body = w.body;
    const socket = body.socket;
    if (body.complete || body.destroyed || socket === null) return null;
    const elapsed = now - w.checkedAt;
    w.checkedAt = now;
    const bytes = socket.bytesRead;
    if (bytes !== w.bytes) {
      w.received += bytes - w.bytes;
      w.bytes = bytes;
      w.progressAt = now;
    }
    if (body.readableFlowing !== true || body.readableLength > 0) {
      // Waiting on the consumer, not on the client.
      w.progressAt = now;
      return undefined;
    }
    w.readMs += elapsed;
    const { idleTimeout, minRate, grace } = this.options;
    if (idleTimeout > 0 && now - w.progressAt >= idleTimeout) return `no request body byte for ${Math.round(now - w.progressAt)} ms (limits.bodyTimeout ${idleTimeout} ms)`;
    if (minRate > 0 && w.readMs >= grace && w.received * 1000 < minRate * w.readMs) {
      return `the request body came at ${Math.round((w.received * 1000) / w.readMs)} bytes/s, below limits.minBodyRate (${minRate} bytes/s)`;
    }
    return undefined;
  }
}

/**
 * How often bodies are looked at: a quarter of the shortest limit, so a stall is cut within
 * 25 % of its limit, between 10 ms and 1 s (Kestrel's heartbeat is 1 s).
 */
function tickFor(o: BodyGuardOptions): number {
  let shortest = Infinity;
  if (o.idleTimeout > 0) shortest = o.idleTimeout;
  if (o.minRate > 0) shortest = Math.min(shortest, Math.max(o.grace, 1));
  return Math.min(1000, Math.max(10, Math.floor(shortest / 4)));
}
