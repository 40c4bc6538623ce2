import type { Duplex } from 'node:stream';
import type { TandemError } from '../core/errors.js';
import { isClientCaused } from '../upstream/classify.js';
import type { Endpoint } from '../upstream/endpoint.js';
import type { Leg, ResponseHandler, UpstreamRequest } from '../upstream/types.js';
import { freshnessOf } from './freshness.js';
import { hasCredentials, mergeHeaders, responseHeaderMap, storedHeaders } from './headers.js';
import type { Fill, ResponseCache, StaleReason } from './response-cache.js';
import { varyNames, type Entry } from './store.js';

/** Statuses after which a stale entry is served instead (RFC 5861 §4: an error is a 500, 502, 503 or 504). */
const ERROR_STATUS = new Set([500, 502, 503, 504]);
/**
 * Statuses that say the origin as a whole is failing (a proxy or the service saying it cannot
 * serve), so other keys' stale entries are served without asking it for a while. A 500 is often
 * one URL's bug: it gets its own stale entry, and the others still ask.
 */
const ORIGIN_DOWN_STATUS = new Set([502, 503, 504]);
const X_CACHE = Buffer.from('x-tandem-cache');
const MISS = Buffer.from('miss');

type Mode =
  /** Before the headers. */
  | 'waiting'
  /** Streaming to the caller while keeping a copy. */
  | 'filling'
  /** Streaming to the caller, nothing kept. */
  | 'passing'
  /** 304: the entry is served when the exchange completes. */
  | 'revalidated'
  /** The caller was answered from the entry; the origin's answer is read and dropped. */
  | 'dropping';

/**
 * The handler of a request the cache sent to the origin: it streams the answer to the caller
 * and keeps a copy when the answer may be stored and is no larger than maxEntrySize; a 304
 * refreshes the entry; a 5xx or a failure serves the stale entry when stale-if-error allows.
 * The requests waiting on this one are released as soon as the outcome is known: at the
 * headers when the answer will not be kept, at the end when it was.
 */
export class FillExchange implements ResponseHandler {
  private mode: Mode = 'waiting';
  private chunks: Buffer[] = [];
  private bytes = 0;
  private status = 0;
  private headers: Buffer[] = [];
  private headerMap: Map<string, string> | undefined;

  constructor(
    private readonly cache: ResponseCache,
    private readonly key: string,
    private readonly fill: Fill | undefined,
    private readonly entry: Entry | undefined,
    private readonly request: UpstreamRequest,
    private readonly handler: ResponseHandler,
    /** A stale-while-revalidate refresh: no caller, nothing counted as served. */
    private readonly background: boolean,
  ) {}

  onAttempt(endpoint: Endpoint, leg?: Leg): void {
    this.handler.onAttempt?.(endpoint, leg);
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void {
    this.handler.onStart(endpoint, abort, leg);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    if (this.mode !== 'waiting') return true;
    const entry = this.entry;
    if (statusCode === 304 && entry !== undefined) {
      this.cache.originAnswered();
      this.mode = 'revalidated';
      this.headers = rawHeaders;
      return true;
    }
    if (ERROR_STATUS.has(statusCode)) {
      if (ORIGIN_DOWN_STATUS.has(statusCode)) this.cache.originFailed('status');
      if (this.staleInstead('status')) return true;
    } else this.cache.originAnswered();
    const headers = responseHeaderMap(rawHeaders);
    const storable = this.request.method === 'GET' && freshnessOf(statusCode, headers, hasCredentials(this.request), this.cache.settings, Date.now()) !== undefined && this.fits(headers);
    this.status = statusCode;
    this.headers = rawHeaders;
    this.headerMap = headers;
    if (storable) this.mode = 'filling';
    else {
      this.mode = 'passing';
      this.end('pass');
    }
    return this.handler.onHeaders(statusCode, rawHeaders.concat(X_CACHE, MISS), resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    if (this.mode === 'dropping' || this.mode === 'revalidated') return true;
    if (this.mode === 'filling') {
      this.bytes += chunk.length;
      if (this.bytes > this.cache.settings.maxEntrySize) {
        // Larger than declared, or undeclared: streamed on, not kept.
        this.mode = 'passing';
        this.chunks = [];
        this.end('pass');
      } else this.chunks.push(chunk);
    }
    return this.handler.onData(chunk, last);
  }

  onComplete(trailers?: Parameters<ResponseHandler['onComplete']>[0]): void {
    switch (this.mode) {
      case 'dropping': return;
      case 'revalidated': {
        // A 304 confirms the stored body: it is served even when the new headers forbid keeping it.
        const entry = this.refresh();
        this.end(this.cache.usable(this.key, this.request) === entry ? 'stored' : 'pass');
        if (!this.background) this.cache.serveRevalidated(entry, this.request, this.handler);
        return;
      }
      case 'filling':
        this.store();
        this.end('stored');
        break;
      default:
        this.end('pass');
    }
    this.handler.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Leg): void {
    if (this.mode === 'dropping') return;
    if (this.mode === 'waiting' && !isClientCaused(error)) {
      this.cache.originFailed(reasonOf(error));
      if (this.staleInstead(reasonOf(error))) return;
    }
    this.chunks = [];
    this.end(this.mode === 'waiting' && !isClientCaused(error) ? reasonOf(error) : 'pass');
    this.handler.onError(error, leg);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[], socket: Duplex): void {
    this.handler.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  /** Serves the stale entry if stale-if-error allows; the origin's answer, if any, is then dropped. */
  private staleInstead(reason: StaleReason): boolean {
    const entry = this.entry;
    if (entry === undefined || !this.cache.staleIfError(entry)) return false;
    this.mode = 'dropping';
    this.end(reason);
    if (!this.background) this.cache.serveStale(entry, this.request, this.handler, reason);
    return true;
  }

  private fits(headers: Map<string, string>): boolean {
    const declared = Number(headers.get('content-length') ?? -1);
    return declared <= this.cache.settings.maxEntrySize;
  }

  private store(): void {
    const headers = this.headerMap!;
    const freshness = freshnessOf(this.status, headers, hasCredentials(this.request), this.cache.settings, Date.now());
    if (freshness === undefined) return;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    this.cache.put(this.key, varyNames(headers.get('vary')), this.request, {
      status: this.status,
      headers: storedHeaders(this.headers, body.length),
      body,
      freshness,
      receivedAt: this.cache.clock.now(),
      etag: headers.get('etag'),
      lastModified: headers.get('last-modified'),
      refreshing: false,
      lastStaleReason: undefined,
    });
  }

  /** A 304: the entry takes its headers and starts a new life — or leaves the cache when they forbid keeping it. */
  private refresh(): Entry {
    const entry = this.entry!;
    const headers = mergeHeaders(entry.headers, this.headers);
    const map = responseHeaderMap(headers);
    const freshness = freshnessOf(entry.status, map, hasCredentials(this.request), this.cache.settings, Date.now());
    if (freshness === undefined) {
      this.cache.invalidate(this.key);
      return { ...entry, headers };
    }
    entry.headers = headers;
    entry.freshness = freshness;
    entry.receivedAt = this.cache.clock.now();
    entry.etag = map.get('etag');
    entry.lastModified = map.get('last-modified');
    entry.refreshing = false;
    entry.lastStaleReason = undefined;
    this.cache.touch(this.key);
    return entry;
  }

  private end(outcome: Parameters<ResponseCache['release']>[2]): void {
    if (this.entry !== undefined && outcome !== 'stored') this.entry.refreshing = false;
    this.cache.release(this.key, this.fill, outcome);
  }
}

function reasonOf(error: TandemError): StaleReason {
  switch (error.code) {
    case 'TANDEM_ERR_NO_HEALTHY_ENDPOINT': return 'no-endpoint';
    case 'TANDEM_ERR_OVERLOADED': return 'overloaded';
    case 'TANDEM_ERR_UPSTREAM_TIMEOUT': return 'timeout';
    default: return 'error';
  }
}
