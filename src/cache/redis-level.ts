import { randomUUID } from 'node:crypto';
import { loadOptional } from '../core/optional.js';
import type { Freshness } from './freshness.js';
import { requestHeader } from './headers.js';
import type { SharedLevel, SharedResponse } from './shared-level.js';

/** The parts of an ioredis client this level uses (ioredis is an optional peer: its types are not imported). */
interface RedisClient {
  readonly status: string;
  getBuffer(key: string): Promise<Buffer | null>;
  set(key: string, value: Buffer | string, px: 'PX', ms: number, nx?: 'NX'): Promise<'OK' | null>;
  eval(script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>;
  exists(key: string): Promise<number>;
  subscribe(channel: string): Promise<unknown>;
  duplicate(): RedisClient;
  on(event: string, listener: (...args: never[]) => void): unknown;
  quit(): Promise<unknown>;
  disconnect(): void;
}

export interface RedisLevelOptions {
  /** e.g. redis://127.0.0.1:6379. */
  url: string;
  /** Prepended to every key and the channel; a route's caches differ by it. */
  keyPrefix: string;
  /** Longest wait for one Redis command (ms); a slower one counts as a failure. */
  timeoutMs: number;
  /** Redis became unavailable (with why) or available again: for a log line. */
  onState?: (up: boolean, reason: string | undefined) => void;
  /** Ages of stored responses are measured across processes on it; default Date.now. */
  wallClock?: () => number;
}

/**
 * After a failed command, Redis is left alone for this long (the circuit is open): requests use
 * the local level only, without waiting on Redis. Then one command tries it again.
 */
export const REDIS_BREAK_MS = 1_000;

/** Frees the lock if this process still holds it, then tells every process how the fill ended. */
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end return redis.call('publish', ARGV[2], ARGV[3])";

type Breaker = { state: 'closed' } | { state: 'open'; until: number } | { state: 'trying' };

/**
 * The shared level in Redis (ioredis, loaded on first use). Keys: `<prefix>e:<key>` holds one
 * response per key (the last stored variant), `<prefix>l:<key>` the fill lock (SET NX PX, a
 * token per holder); `<prefix>filled` is the channel fills are announced on. Commands never
 * queue while Redis is away (enableOfflineQueue off) and wait at most `timeoutMs`; a failure
 * opens the circuit for REDIS_BREAK_MS.
 */
export class RedisLevel implements SharedLevel {
  errors = 0;
  private client: RedisClient | undefined;
  private sub: RedisClient | undefined;
  private breaker: Breaker = { state: 'closed' };
  /** Unknown until the first connection or failure. */
  private up: boolean | undefined = undefined;
  private closed = false;
  private readonly tokens = new Map<string, string>();
  private readonly waiters = new Map<string, Set<(outcome: string | undefined) => void>>();
  private readonly wallClock: () => number;
  private readonly channel: string;

  constructor(private readonly options: RedisLevelOptions) {
    this.wallClock = options.wallClock ?? Date.now;
    this.channel = `${options.keyPrefix}filled`;
    void this.connect().catch((err: unknown) => this.changed(false, (err as Error).message));
  }

  private async connect(): Promise<void> {
    const mod = await loadOptional('ioredis', 'the cache\'s Redis level', () => import('ioredis'));
    if (this.closed) return;
    const client = new mod.default.default(this.options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: this.options.timeoutMs,
      retryStrategy: (attempt: number) => Math.min(attempt * 200, 2_000),
    }) as unknown as RedisClient;
    const sub = client.duplicate();
    this.client = client;
    this.sub = sub;
    client.on('ready', () => this.changed(true, undefined));
    client.on('close', () => this.changed(false, 'connection closed'));
    client.on('error', (err: Error) => this.changed(false, err.message));
    sub.on('error', () => {});
    sub.on('ready', () => void sub.subscribe(this.channel).catch(() => {}));
    sub.on('message', (_channel: string, message: string) => this.announced(message));
  }

  private changed(up: boolean, reason: string | undefined): void {
    if (up === this.up || this.closed) return;
    this.up = up;
    if (up) this.breaker = { state: 'closed' };
    this.options.onState?.(up, reason);
  }

  get available(): boolean {
    if (this.client?.status !== 'ready') return false;
    const b = this.breaker;
    if (b.state === 'closed') return true;
    if (b.state === 'trying' || performance.now() < b.until) return false;
    // Half open: this caller's command is the trial; the others stay local until it settles.
    this.breaker = { state: 'trying' };
    return true;
  }

  private ok(): void {
    if (this.breaker.state !== 'closed') this.breaker = { state: 'closed' };
  }

  private failed(): undefined {
    this.errors++;
    this.breaker = { state: 'open', until: performance.now() + REDIS_BREAK_MS };
    return undefined;
  }

  async get(key: string, requestHeaders: readonly string[]): Promise<SharedResponse | undefined> {
    const client = this.client;
    if (client === undefined) return undefined;
    let raw: Buffer | null;
    try {
      raw = await client.getBuffer(this.entryKey(key));
      this.ok();
    } catch {
      return this.failed();
    }
    return raw === null ? undefined : this.decode(raw, requestHeaders);
  }

  put(key: string, requestHeaders: readonly string[], response: SharedResponse, ttlMs: number): void {
    const client = this.client;
    if (client === undefined || ttlMs < 1) return;
    client.set(this.entryKey(key), this.encode(response, requestHeaders), 'PX', Math.ceil(ttlMs)).then(() => this.ok(), () => this.failed());
  }

  async lock(key: string, ttlMs: number): Promise<'acquired' | 'held' | 'unavailable'> {
    const client = this.client;
    if (client === undefined) return 'unavailable';
    const token = randomUUID();
    try {
      const got = await client.set(this.lockKey(key), token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX');
      this.ok();
      if (got !== 'OK') return 'held';
      this.tokens.set(key, token);
      return 'acquired';
    } catch {
      this.failed();
      // A command that timed out here may still run there: a lock nobody knows it holds would
      // keep the other processes waiting. Dropped if it is ours (they are told to go on).
      client.eval(RELEASE, 1, this.lockKey(key), token, this.channel, `pass\n${key}`).catch(() => {});
      return 'unavailable';
    }
  }

  release(key: string, outcome: string): void {
    const token = this.tokens.get(key);
    const client = this.client;
    if (token === undefined || client === undefined) return;
    this.tokens.delete(key);
    client.eval(RELEASE, 1, this.lockKey(key), token, this.channel, `${outcome}\n${key}`).then(() => this.ok(), () => this.failed());
  }

  waitFill(key: string, timeoutMs: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      let set = this.waiters.get(key);
      if (set === undefined) this.waiters.set(key, (set = new Set()));
      const waiters = set;
      const done = (outcome: string | undefined): void => {
        clearTimeout(timer);
        if (!waiters.delete(done)) return;
        if (waiters.size === 0 && this.waiters.get(key) === waiters) this.waiters.delete(key);
        resolve(outcome);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      timer.unref();
      waiters.add(done);
      // The fill may have ended (or its holder died) before this process listened: look once.
      this.client?.exists(this.lockKey(key)).then((n) => { if (n === 0) done('gone'); }, () => {});
    });
  }

  private announced(message: string): void {
    const nl = message.indexOf('\n');
    if (nl < 0) return;
    const waiters = this.waiters.get(message.slice(nl + 1));
    if (waiters === undefined) return;
    const outcome = message.slice(0, nl);
    for (const done of [...waiters]) done(outcome);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of [this.client, this.sub]) {
      if (c !== undefined) await c.quit().catch(() => c.disconnect());
    }
  }

  private entryKey(key: string): string {
    return `${this.options.keyPrefix}e:${key}`;
  }

  private lockKey(key: string): string {
    return `${this.options.keyPrefix}l:${key}`;
  }

  /** Length of the metadata (4 bytes), the metadata (JSON), the body. */
  private encode(r: SharedResponse, requestHeaders: readonly string[]): Buffer {
    const meta: StoredMeta = {
      s: r.status, h: r.headers.map((h) => h.toString('latin1')), f: r.freshness, a: r.ageMs, t: this.wallClock(),
      e: r.etag, l: r.lastModified, v: r.vary, vv: variantValues(r.vary, requestHeaders),
    };
    const json = Buffer.from(JSON.stringify(meta));
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32BE(json.length);
    return Buffer.concat([head, json, r.body]);
  }

  private decode(raw: Buffer, requestHeaders: readonly string[]): SharedResponse | undefined {
    try {
      const n = raw.readUInt32BE(0);
      const meta = JSON.parse(raw.subarray(4, 4 + n).toString()) as StoredMeta;
      // One variant per key: another variant's response is a miss here.
      if (variantValues(meta.v, requestHeaders) !== meta.vv) return undefined;
      return {
        status: meta.s, headers: meta.h.map((h) => Buffer.from(h, 'latin1')), body: raw.subarray(4 + n), freshness: meta.f,
        ageMs: meta.a + Math.max(0, this.wallClock() - meta.t), etag: meta.e ?? undefined, lastModified: meta.l ?? undefined, vary: meta.v,
      };
    } catch {
      return undefined; // not ours, or from an incompatible version: a miss
    }
  }
}

interface StoredMeta {
  s: number;
  h: string[];
  f: Freshness;
  /** Age when stored, ms. */
  a: number;
  /** When stored, wall clock ms. */
  t: number;
  e: string | undefined;
  l: string | undefined;
  v: readonly string[];
  vv: string;
}

function variantValues(vary: readonly string[], requestHeaders: readonly string[]): string {
  return vary.map((name) => requestHeader(requestHeaders, name) ?? '').join('\n');
}
