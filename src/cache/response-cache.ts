import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { TandemError } from '../core/errors.js';
import type { Dispatch, ResponseHandler, UpstreamRequest } from '../upstream/types.js';
import { parseCacheControl } from './cache-control.js';
import { FillExchange } from './fill-exchange.js';
import { dropRequestHeader, hasCredentials, requestHeader } from './headers.js';
import { cacheSettings, type CacheSettings, type CacheSettingsInput } from './settings.js';
import type { SharedLevel, SharedResponse } from './shared-level.js';
import { EntryStore, type Entry } from './store.js';

/** Why a stale entry was served: refreshed in the background, or the origin failed in one of these ways. */
export const STALE_REASONS = ['updating', 'status', 'no-endpoint', 'overloaded', 'timeout', 'error'] as const;
export type StaleReason = (typeof STALE_REASONS)[number];

/** Counters of one cache, read by the metrics at scrape time. */
export interface CacheStats {
  /** Answered from a fresh entry (after waiting for another request's fill too). */
  hits: number;
  /** Went to the origin: no entry, or one that had to be revalidated. */
  misses: number;
  /** The origin said 304: the entry was refreshed and served. */
  revalidated: number;
  /** Stale entries served, indexed as STALE_REASONS. */
  stale: number[];
  /** Requests that waited for another request's answer instead of going to the origin. */
  coalesced: number;
  /** Entries dropped to stay within maxSize. */
  evictions: number;
  /** Answered from the shared level (another process's fill), without the origin. */
  sharedHits: number;
  /** Requests that waited for another process's fill of their key. */
  sharedWaits: number;
  /** Requests that would have asked the shared level but found it unavailable (down, or its circuit open). */
  sharedFallbacks: number;
}

/** A stale entry served, for a log line: the first time an entry is served stale for a reason. */
export interface StaleEvent {
  path: string;
  reason: StaleReason;
  /** How far past its freshness the entry is, ms. */
  staleMs: number;
}

export interface ResponseCacheOptions {
  /** Freshness and staleness are measured on it; default the process clock. */
  clock?: Clock;
  onStale?: (event: StaleEvent) => void;
  /** The origin started failing (stale entries are served in its place), or answers again. */
  onOriginState?: (failing: boolean, reason: StaleReason | undefined) => void;
  /** A second level shared with other processes (redis-level.ts); none: this process's memory only. */
  shared?: SharedLevel;
}

/** How a fill ended, for the requests that waited on it. */
export type FillOutcome = 'stored' | 'pass' | StaleReason;

interface Waiter {
  request: UpstreamRequest;
  handler: ResponseHandler;
  next: Dispatch;
  timer: TimerHandle;
}

/** One request for a key on its way to the origin; others for the key wait for its outcome. */
export class Fill {
  readonly waiters: Waiter[] = [];
  /** Holds the key's lock in the shared level: released, with the outcome, when the fill ends. */
  sharedLock = false;
}

const UNSAFE = new Set(['POST', 'PUT', 'DELETE', 'PATCH']);
/**
 * After the origin failed, stale entries are served without asking it for this long; then one
 * request goes, as a probe, and the others keep getting stale answers until it is back (or for
 * this long again). nginx's max_fails/fail_timeout does the same per server:
 * without it every request for an expired key during an outage is one more failing origin
 * request (two, with a retry). Short, so that fresh answers follow a recovery within a second.
 */
export const ERROR_HOLDOFF_MS = 500;
const HIT = Buffer.from('hit');
const STALE = Buffer.from('stale');
const REVALIDATED = Buffer.from('revalidated');
const AGE = Buffer.from('age');
const X_CACHE = Buffer.from('x-tandem-cache');
const WARNING = Buffer.from('warning');
// RFC 7234's warn-codes (obsolete in RFC 9111, still the marker clients and tools know).
const WARN_STALE = Buffer.from('110 - "Response is Stale"');
const WARN_FAILED = Buffer.from('111 - "Revalidation Failed"');

/**
 * A shared HTTP response cache (RFC 9111, with RFC 5861's stale-while-revalidate and
 * stale-if-error) in front of one upstream chain: cacheStep() puts it in a request pipeline.
 * GET and HEAD are answered from entries while fresh; past that, the origin is asked again
 * (conditionally, when the entry has a validator), one request per key at a time, and a stale
 * entry is served when the origin fails. Unsafe methods drop the entry for their URL.
 */
export class ResponseCache {
  readonly settings: CacheSettings;
  readonly stats: CacheStats = { hits: 0, misses: 0, revalidated: 0, stale: STALE_REASONS.map(() => 0), coalesced: 0, evictions: 0, sharedHits: 0, sharedWaits: 0, sharedFallbacks: 0 };
  readonly shared: SharedLevel | undefined;
  readonly clock: Clock;
  private readonly store: EntryStore;
  private readonly fills = new Map<string, Fill>();
  private readonly onStale: ((event: StaleEvent) => void) | undefined;
  private readonly onOriginState: ResponseCacheOptions['onOriginState'];
  /** Until when the origin is taken to be failing (ERROR_HOLDOFF_MS), and how it last failed. */
  private failing = false;
  private failingUntil = -Infinity;
  private failure: StaleReason = 'error';
  /** When the origin last failed (cache clock). */
  private failedAt = -Infinity;

  constructor(settings: CacheSettingsInput = {}, options: ResponseCacheOptions = {}) {
    this.settings = cacheSettings(settings);
    this.clock = options.clock ?? realClock;
    this.onStale = options.onStale;
    this.onOriginState = options.onOriginState;
    this.shared = options.shared;
    this.store = new EntryStore(this.settings.maxSize, this.stats);
  }

  /** Bytes held (bodies, headers and a fixed overhead per entry). */
  get bytes(): number {
    return this.store.bytes;
  }

  /** Keys held. */
  get entries(): number {
    return this.store.size;
  }

  clear(): void {
    this.store.clear();
  }

  /** The key of a request: its path with query, and the values of the `key` headers. */
  keyOf(request: UpstreamRequest): string {
    let key = request.path;
    for (const name of this.settings.key) key += `\n${requestHeader(request.headers, name) ?? ''}`;
    return key;
  }

  /** Takes one request from the pipeline (cacheStep). */
  handle(request: UpstreamRequest, handler: ResponseHandler, next: Dispatch): void {
    const method = request.method;
    if (method !== 'GET' && method !== 'HEAD') {
      if (UNSAFE.has(method)) next(request, new Invalidating(this, this.keyOf(request), handler));
      else next(request, handler);
      return;
    }
    const cc = parseCacheControl(requestHeader(request.headers, 'cache-control'));
    if (cc.has('no-store')) {
      this.stats.misses++;
      next(request, handler);
      return;
    }
    const key = this.keyOf(request);
    const entry = this.usable(key, request);
    const revalidate = cc.has('no-cache') || cc.get('max-age') === '0';
    const held = entry === undefined ? undefined : this.heldOff(entry, revalidate, request);
    if (held !== undefined) {
      this.serveStale(entry!, request, handler, held);
      return;
    }
    if (entry !== undefined && !revalidate && this.answerFromEntry(key, entry, request, handler, next)) return;
    // HEAD is answered from GET entries but does not fill them (it brings no body); it waits
    // behind no one, and a stale GET entry answers it when the origin fails.
    this.forward(key, request, handler, next, entry, method === 'GET');
  }

  /**
   * An entry that would have to be refreshed while the origin is taken to be failing — as a
   * whole (ERROR_HOLDOFF_MS after a failure, then one request probes it), or for this entry
   * (its last refresh failed less than ERROR_HOLDOFF_MS ago) — is served stale without asking.
   * A failed refresh is not sent again on every request: nginx's `updating` state does the same.
   */
  private heldOff(entry: Entry, revalidate: boolean, request: UpstreamRequest): StaleReason | undefined {
    if (!revalidate && this.isFresh(entry)) return undefined;
    if (!this.staleIfError(entry)) return undefined;
    const now = this.clock.now();
    if (now < entry.retryAt) return entry.failure;
    if (!this.failing) return undefined;
    if (now < this.failingUntil) return this.failure;
    // This request is the probe: the others keep the stale answers until it is back. One
    // attempt: a failing origin is asked once per holdoff, not once per retry (its stale answer
    // is there if it fails).
    this.failingUntil = now + ERROR_HOLDOFF_MS;
    request.maxAttempts = 1;
    return undefined;
  }

  /** Fresh: served. Stale within stale-while-revalidate: served, and one refresh sent. Else false. */
  private answerFromEntry(key: string, entry: Entry, request: UpstreamRequest, handler: ResponseHandler, next: Dispatch): boolean {
    const f = entry.freshness;
    const over = this.ageOf(entry) - f.lifetimeMs;
    if (f.revalidateAlways) return false;
    if (over < 0) {
      this.stats.hits++;
      this.serve(entry, request, handler, HIT);
      return true;
    }
    if (over >= f.staleWhileRevalidateMs) return false;
    this.serveStale(entry, request, handler, 'updating');
    if (!entry.refreshing && !this.fills.has(key) && this.clock.now() >= entry.retryAt) {
      entry.refreshing = true;
      // The client has its answer: the refresh is the cache's own request (a copy, so the
      // engine's bookkeeping on it starts clean).
      const refresh: UpstreamRequest = { ...request, headers: [...request.headers], body: null, flight: undefined };
      this.forward(key, refresh, NO_ONE, next, entry, false, true);
    }
    return true;
  }

  /**
   * To the origin — or, when a request for the key is already on its way and `collapse`, wait
   * for its answer (at most lockTimeout). With an entry that has validators the request is made
   * conditional: a 304 refreshes the entry.
   */
  forward(key: string, request: UpstreamRequest, handler: ResponseHandler, next: Dispatch, entry: Entry | undefined, collapse: boolean, background = false): void {
    const running = collapse ? this.fills.get(key) : undefined;
    if (running !== undefined) {
      this.stats.coalesced++;
      const waiter: Waiter = { request, handler, next, timer: undefined as unknown as TimerHandle };
      // A caller's own deadline shorter than lockTimeout bounds the wait too.
      waiter.timer = this.clock.setTimeout(() => {
        const at = running.waiters.indexOf(waiter);
        if (at < 0) return;
        running.waiters.splice(at, 1);
        this.afterWait(key, waiter, 'pass');
      }, Math.min(this.settings.lockTimeoutMs, request.timeoutMs ?? Infinity), true);
      running.waiters.push(waiter);
      return;
    }
    let fill: Fill | undefined;
    if (collapse || background) {
      fill = new Fill();
      // A background refresh holds the key too, so that misses behind it wait for it.
      if (!this.fills.has(key)) this.fills.set(key, fill);
    }
    const shared = this.shared;
    if (shared !== undefined && fill !== undefined) {
      if (shared.available) {
        this.throughShared(shared, key, request, handler, next, entry, fill, background).catch((err: unknown) => {
          // A bug here must not end the process (an unhandled rejection): the key is freed, the caller told.
          this.release(key, fill, 'pass');
          if (!background) handler.onError(new TandemError('TANDEM_ERR_INTERNAL', 'the response cache failed', { cause: err, status: 500 }));
        });
        return;
      }
      this.stats.sharedFallbacks++;
    }
    this.toOrigin(key, request, handler, next, entry, fill, background);
  }

  private toOrigin(key: string, request: UpstreamRequest, handler: ResponseHandler, next: Dispatch, entry: Entry | undefined, fill: Fill | undefined, background: boolean): void {
    if (!background) this.stats.misses++;
    if (entry !== undefined) conditional(request, entry);
    next(request, new FillExchange(this, key, fill, entry, request, handler, background));
  }

  /**
   * Before the origin, the shared level: a fresher response there is taken into the local level
   * (and answers, when fresh); else this process takes the key's lock and asks the origin, or
   * waits (at most lockTimeout) for the process that holds it, then looks again. When the other
   * process's request failed, the stale entry is served here too without asking again.
   */
  private async throughShared(shared: SharedLevel, key: string, request: UpstreamRequest, handler: ResponseHandler, next: Dispatch, local: Entry | undefined, fill: Fill, background: boolean): Promise<void> {
    const revalidate = mustRevalidate(request);
    let entry = await this.fromShared(shared, key, request, local);
    // The local entry's holdoff was decided in handle(); one only Redis had is decided here.
    if (this.answeredShared(key, entry, request, handler, fill, background, revalidate, local === undefined)) return;
    // Redis failed on the lookup (its circuit is open now): on with the local level.
    const lock = shared.available ? await shared.lock(key, this.settings.lockTimeoutMs) : 'unavailable';
    if (lock === 'held') {
      this.stats.sharedWaits++;
      const outcome = await shared.waitFill(key, Math.min(this.settings.lockTimeoutMs, request.timeoutMs ?? Infinity));
      entry = await this.fromShared(shared, key, request, entry);
      // The fill waited for is the revalidation a no-cache request asked for.
      if (this.answeredShared(key, entry, request, handler, fill, background, false, false)) return;
      const failure = STALE_REASONS.find((r) => r === outcome);
      if (entry !== undefined && failure !== undefined && this.staleIfError(entry)) {
        this.refreshFailed(entry, failure);
        if (!background) this.serveStale(entry, request, handler, failure);
        this.release(key, fill, failure);
        return;
      }
    } else if (lock === 'unavailable') this.stats.sharedFallbacks++;
    else {
      fill.sharedLock = true;
      // Another process may have stored it between the lookup and the lock: look once more.
      entry = await this.fromShared(shared, key, request, entry);
      if (this.answeredShared(key, entry, request, handler, fill, background, revalidate, false)) return;
    }
    this.toOrigin(key, request, handler, next, entry, fill, background);
  }

  /** The fresher of the local entry and the shared level's (taken into the local level). */
  private async fromShared(shared: SharedLevel, key: string, request: UpstreamRequest, local: Entry | undefined): Promise<Entry | undefined> {
    const found = await shared.get(key, request.headers);
    if (found === undefined || (local !== undefined && this.ageOf(local) <= found.ageMs)) return local;
    // Another process had an answer from the origin after this one saw it fail: it answers again.
    if (this.failing && this.clock.now() - found.ageMs > this.failedAt) this.originAnswered();
    this.store.put(key, found.vary, request.headers, {
      status: found.status, headers: found.headers, body: found.body,
      freshness: { ...found.freshness, initialAgeMs: found.ageMs },
      receivedAt: this.clock.now(), etag: found.etag, lastModified: found.lastModified,
      refreshing: false, lastStaleReason: undefined, retryAt: -Infinity, failure: 'error',
    });
    return this.usable(key, request);
  }

  /** Fresh (from the shared level): served, and the key's waiters with it. Held off: served stale. Else false. */
  private answeredShared(key: string, entry: Entry | undefined, request: UpstreamRequest, handler: ResponseHandler, fill: Fill, background: boolean, revalidate: boolean, holdoff: boolean): boolean {
    if (entry === undefined) return false;
    if (!revalidate && this.isFresh(entry)) {
      if (!background) {
        this.stats.hits++;
        this.stats.sharedHits++;
        this.serve(entry, request, handler, HIT);
      }
      this.release(key, fill, 'stored');
      return true;
    }
    const held = holdoff ? this.heldOff(entry, revalidate, request) : undefined;
    if (held === undefined) return false;
    if (!background) this.serveStale(entry, request, handler, held);
    this.release(key, fill, held);
    return true;
  }

  /** The origin failed (a 5xx, no endpoint, unreachable, the deadline): stale entries are served without it for a while. */
  originFailed(reason: StaleReason): void {
    if (!this.failing) this.onOriginState?.(true, reason);
    this.failing = true;
    this.failure = reason;
    this.failedAt = this.clock.now();
    this.failingUntil = this.failedAt + ERROR_HOLDOFF_MS;
  }

  /** A request to refresh this entry (none: a miss) failed: it is not refreshed again for ERROR_HOLDOFF_MS. */
  refreshFailed(entry: Entry | undefined, reason: StaleReason): void {
    if (entry === undefined) return;
    entry.retryAt = this.clock.now() + ERROR_HOLDOFF_MS;
    entry.failure = reason;
  }

  /** The origin answered. */
  originAnswered(): void {
    if (this.failing) this.onOriginState?.(false, undefined);
    this.failing = false;
  }

  /** The fill's answer is known: each waiter is served from the entry, served stale, or goes on its own. */
  release(key: string, fill: Fill | undefined, outcome: FillOutcome): void {
    if (fill?.sharedLock === true) {
      fill.sharedLock = false;
      this.shared?.release(key, outcome);
    }
    if (fill === undefined || this.fills.get(key) !== fill) return;
    this.fills.delete(key);
    for (const waiter of fill.waiters.splice(0)) {
      this.clock.clearTimeout(waiter.timer);
      this.afterWait(key, waiter, outcome);
    }
  }

  private afterWait(key: string, waiter: Waiter, outcome: FillOutcome): void {
    const { request, handler, next } = waiter;
    const entry = this.usable(key, request);
    if (entry !== undefined && outcome === 'stored' && this.ageOf(entry) < entry.freshness.lifetimeMs) {
      this.stats.hits++;
      this.serve(entry, request, handler, HIT);
      return;
    }
    if (entry !== undefined && outcome !== 'stored' && outcome !== 'pass' && this.staleIfError(entry)) {
      this.serveStale(entry, request, handler, outcome);
      return;
    }
    // Uncacheable (or the wait ran out): straight to the origin, behind no one.
    this.forward(key, request, handler, next, entry, false);
  }

  /** The entry this request may use (a request with credentials only a `public` one), or undefined. */
  usable(key: string, request: UpstreamRequest): Entry | undefined {
    const entry = this.store.find(key, request.headers);
    if (entry === undefined) return undefined;
    if (!entry.freshness.shared && hasCredentials(request)) return undefined;
    return entry;
  }

  /** May serve this entry now that the origin failed. */
  staleIfError(entry: Entry): boolean {
    const f = entry.freshness;
    return !f.revalidateAlways && this.ageOf(entry) < f.lifetimeMs + f.staleIfErrorMs;
  }

  isFresh(entry: Entry): boolean {
    return !entry.freshness.revalidateAlways && this.ageOf(entry) < entry.freshness.lifetimeMs;
  }

  ageOf(entry: Entry): number {
    return entry.freshness.initialAgeMs + Math.max(0, this.clock.now() - entry.receivedAt);
  }

  /** A response from the origin: kept here, and in the shared level until the end of its stale horizon. */
  put(key: string, vary: readonly string[], request: UpstreamRequest, entry: Entry): void {
    this.store.put(key, vary, request.headers, entry);
    this.share(key, vary, request, entry);
  }

  /** Writes the entry to the shared level (after a fill, or a 304 that refreshed it). */
  share(key: string, vary: readonly string[], request: UpstreamRequest, entry: Entry): void {
    const shared = this.shared;
    if (shared === undefined) return;
    const f = entry.freshness;
    const ageMs = this.ageOf(entry);
    const ttl = f.lifetimeMs + Math.max(f.staleIfErrorMs, f.staleWhileRevalidateMs) - ageMs;
    const response: SharedResponse = { status: entry.status, headers: entry.headers, body: entry.body, freshness: f, ageMs, etag: entry.etag, lastModified: entry.lastModified, vary };
    shared.put(key, request.headers, response, ttl);
  }

  /** After a 304 refreshed an entry's headers. */
  touch(key: string): void {
    this.store.touch(key);
  }

  invalidate(key: string): void {
    this.store.delete(key);
  }

  serveStale(entry: Entry, request: UpstreamRequest, handler: ResponseHandler, reason: StaleReason): void {
    this.stats.stale[STALE_REASONS.indexOf(reason)]!++;
    const staleMs = this.ageOf(entry) - entry.freshness.lifetimeMs;
    if (entry.lastStaleReason !== reason) {
      entry.lastStaleReason = reason;
      this.onStale?.({ path: request.path, reason, staleMs: Math.max(0, Math.round(staleMs)) });
    }
    this.serve(entry, request, handler, STALE, reason === 'updating' ? WARN_STALE : WARN_FAILED);
  }

  serveRevalidated(entry: Entry, request: UpstreamRequest, handler: ResponseHandler): void {
    this.stats.revalidated++;
    this.serve(entry, request, handler, REVALIDATED);
  }

  /** An entry as a whole response: its headers with Age and the cache's marker, then its body. */
  private serve(entry: Entry, request: UpstreamRequest, handler: ResponseHandler, marker: Buffer, warning?: Buffer): void {
    const headers = entry.headers.concat(AGE, Buffer.from(String(Math.floor(this.ageOf(entry) / 1000))), X_CACHE, marker);
    if (warning !== undefined) headers.push(WARNING, warning);
    handler.onHeaders(entry.status, headers, noop);
    if (request.method !== 'HEAD' && entry.body.length > 0) handler.onData(entry.body, true);
    handler.onComplete();
  }
}

/** The entry's validators replace the client's own (the cache answers the client in full). */
function conditional(request: UpstreamRequest, entry: Entry): void {
  if (entry.etag === undefined && entry.lastModified === undefined) return;
  dropRequestHeader(request.headers, 'if-none-match');
  dropRequestHeader(request.headers, 'if-modified-since');
  if (entry.etag !== undefined) request.headers.push('if-none-match', entry.etag);
  if (entry.lastModified !== undefined) request.headers.push('if-modified-since', entry.lastModified);
}

/** A request that asks for the origin's answer even when a fresh entry exists (no-cache, max-age=0). */
function mustRevalidate(request: UpstreamRequest): boolean {
  const cc = parseCacheControl(requestHeader(request.headers, 'cache-control'));
  return cc.has('no-cache') || cc.get('max-age') === '0';
}

function noop(): void {}

/** Where a background refresh's answer goes: nowhere (the entry is what it was for). */
const NO_ONE: ResponseHandler = Object.freeze({
  onStart: noop,
  onHeaders: () => true,
  onData: () => true,
  onComplete: noop,
  onError: noop,
});

/** An unsafe method's non-error answer drops the entry for its URL (RFC 9111 §4.4). */
class Invalidating implements ResponseHandler {
  constructor(
    private readonly cache: ResponseCache,
    private readonly key: string,
    private readonly handler: ResponseHandler,
  ) {}

  onAttempt(...args: Parameters<NonNullable<ResponseHandler['onAttempt']>>): void {
    this.handler.onAttempt?.(...args);
  }

  onStart(...args: Parameters<ResponseHandler['onStart']>): void {
    this.handler.onStart(...args);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Parameters<ResponseHandler['onHeaders']>[3]): boolean {
    if (statusCode < 400) this.cache.invalidate(this.key);
    return this.handler.onHeaders(statusCode, rawHeaders, resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.handler.onData(chunk, last);
  }

  onComplete(trailers?: Parameters<ResponseHandler['onComplete']>[0]): void {
    this.handler.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Parameters<ResponseHandler['onError']>[1]): void {
    this.handler.onError(error, leg);
  }

  onUpgrade(...args: Parameters<NonNullable<ResponseHandler['onUpgrade']>>): void {
    this.handler.onUpgrade?.(...args);
  }
}
