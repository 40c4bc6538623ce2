import type { Readable } from 'node:stream';
import { TandemError } from '../core/errors.js';
import { formatEndpoint } from '../core/address.js';
import { OptionsError, kindOf, parseOptions, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import { currentDeadline, noteFailedDependency } from '../core/deadline.js';
import { FAILED_DEPENDENCY_HEADER } from '../core/dependency.js';
import { validateConfig } from '../config/validate.js';
import type { EndpointConfig, ServiceConfig } from '../config/types.js';
import { registryFromUrl, registryUrls } from '../discovery/from-url.js';
import { isEtcdUrl } from '../discovery/etcd-options.js';
import type { Registry } from '../discovery/types.js';
import { Upstream, type EndpointTransition, type Step } from '../upstream/upstream.js';
import { upstreamSettingsOf } from '../gateway/upstream-settings.js';
import { HEALTH_STATE_KINDS, type Endpoint, type PoolFactory } from '../upstream/endpoint.js';
import type { UpstreamSettings } from '../upstream/settings.js';
import { FAILURE_KINDS } from '../upstream/resilience/retry-policy.js';
import type { Leg, ResponseHandler, Trailers, UpstreamRequest } from '../upstream/types.js';
import type { GrpcCall } from '../upstream/grpc.js';
import { isClientCaused } from '../upstream/classify.js';
import type { LatencyHistogram } from '../core/histogram.js';
import { TRACEPARENT, TRACESTATE, currentTrace, formatTraceparent, startHop, type Hop } from '../observe/trace.js';
import { Members } from './members.js';
import { CLIENT_DEFAULTS } from './defaults.js';
import { processStats, type ServiceStats } from '../observe/metrics.js';

export interface ClientOptions {
  /**
   * The gateway admin listener(s) whose registry lists the service's instances, e.g.
   * `http://127.0.0.1:9901`. With several, their members are merged (each gateway knows every
   * instance; one restarting costs nothing). `etcd://host:port,host:port…` watches etcd instead
   * (docs/registry.md: user, password, TLS and key prefix in the URL).
   */
  registry?: string | readonly string[];
  /** The gateways' secret; unset, found as `serve()` finds it (docs/security.md). */
  token?: string;
  /** Fixed instances (`host:port`), alone or besides the registered ones. */
  endpoints?: readonly string[];
  /**
   * Settings of the service as in the gateway config (`timeout`, `retry`, `hedge`, `balancer`,
   * `healthCheck`, …): validated the same way, same defaults.
   */
  settings?: Record<string, unknown>;
  /**
   * How long an instance that vanished from a registry without draining is still used
   * (a restarted registry is empty until instances register again). Default 10 s, the SDK's
   * lease TTL; 0 when every registry is etcd (it does not restart empty).
   */
  holdRemoved?: number;
  /** Longest wait for the first membership snapshot before a request fails. Default 5 s. */
  membershipTimeout?: number;
  /** Registries to use instead of `registry` URLs (tests, other adapters). */
  registries?: readonly Registry[];
  /** Every endpoint state change (for logs). */
  onTransition?: (transition: EndpointTransition) => void;
  /**
   * The caller's own request steps (caching, logging, header rules…), first listed runs first,
   * ahead of the engine's; `ServiceClient.setSteps` replaces them. None by default.
   */
  steps?: readonly Step[];
}

export interface ClientRequest {
  method?: string;
  /** Path and query, starting with `/`. */
  path: string;
  headers?: Record<string, string | readonly string[]>;
  /** A string or bytes are sent as they are; anything else as JSON. */
  body?: unknown;
  /**
   * Longest wait for the response headers (ms), over all attempts. Default: what is left of the
   * deadline of the request being handled (from the caller's `x-tandem-timeout-ms`, set by
   * `tandem/node`), capped by the service's `timeout`.
   */
  timeout?: number;
  signal?: AbortSignal;
}

export interface ClientResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", " (set-cookie kept as a list). */
  headers: Record<string, string | string[]>;
  body: Buffer;
  /** The endpoint (`host:port`) that answered. */
  endpoint: string;
  text(): string;
  json<T = unknown>(): T;
}

/** How a client built on ServiceClient reaches its endpoints (see the constructor). */
export interface ClientTransport {
  /** Makes each endpoint's pool (the engine's default: undici over HTTP/1.1). */
  pool?: PoolFactory;
  /** Adjusts the engine's settings made from ClientOptions.settings. */
  settings?: (settings: UpstreamSettings) => UpstreamSettings;
}

/** Largest response body a client request buffers. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** What an unset ClientOptions field means (the ones with a fixed default). */
export const DEFAULT_CLIENT_OPTIONS = rules.defaults({ ...CLIENT_DEFAULTS });

type ParsedClientOptions = ClientOptions & typeof DEFAULT_CLIENT_OPTIONS;

const CLIENT_SPEC: OptionSpec = {
  registry: registryUrls,
  token: rules.string,
  endpoints: rules.strings,
  // checked key by key by the gateway config's schema (settingsOf)
  settings: rules.plainObject,
  holdRemoved: rules.duration(0),
  membershipTimeout: rules.duration(0),
  registries: rules.arrayOf(rules.methods('watch', 'close'), 'an array of registries'),
  onTransition: rules.func,
  steps: rules.arrayOf(rules.func, 'an array of steps ((next) => dispatch functions)'),
};

const REQUEST_KEYS = new Set(['method', 'path', 'headers', 'body', 'timeout', 'signal']);
const REQUEST_SPEC: OptionSpec = {
  method: rules.string,
  path: rules.pattern(/^\//, 'a path starting with "/"'),
  headers: rules.record(rules.either(rules.anyString, rules.arrayOf(rules.anyString, 'a string or an array of strings')), 'an object of header values'),
  body: () => {},
  timeout: rules.number(Number.MIN_VALUE, Number.MAX_SAFE_INTEGER, 'milliseconds'),
  signal: rules.methods('addEventListener', 'removeEventListener'),
};

/**
 * A request's fields, checked on every call: a loop over the keys, and the full check (with the
 * did-you-mean hint) only when a key is unknown or the path is not one.
 */
function checkRequest(req: ClientRequest): void {
  let suspect = typeof req !== 'object' || req === null || typeof req.path !== 'string' || req.path.charCodeAt(0) !== 47;
  if (!suspect) for (const key in req) if (!REQUEST_KEYS.has(key)) suspect = true;
  if (suspect) parseOptions('request()', req, REQUEST_SPEC, {}, ['path']);
}

/** Validates createClient()'s options once (unknown keys with a hint, types, ranges); frozen, defaults filled in. */
export function parseClientOptions(service: string, options: unknown): Readonly<ParsedClientOptions> {
  const where = `createClient(${JSON.stringify(service)})`;
  if (typeof service !== 'string' || service === '') throw new OptionsError(where, [{ path: 'service', message: `expected a service name, got ${kindOf(service)}` }]);
  const parsed = parseOptions<ParsedClientOptions>(where, options, CLIENT_SPEC, DEFAULT_CLIENT_OPTIONS);
  if (parsed.registry === undefined && !(parsed.registries?.length) && !(parsed.endpoints?.length)) {
    throw new OptionsError(where, [{ path: 'options', message: 'give `registry` (a gateway admin URL) or `endpoints`' }]);
  }
  return parsed;
}

/** Hop-by-hop headers are the connection's business, not the caller's (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'content-length']);

/**
 * Calls to the instances of one service from inside another: the same upstream engine as the
 * gateway (balancing, health checks, outlier ejection, retries within a budget, hedging,
 * deadlines), with members from the gateways' registries.
 */
export class ServiceClient {
  readonly service: string;
  private readonly upstream: Upstream;
  private readonly members: Members | undefined;
  private readonly owned: Registry[];
  private readonly membershipTimeout: number;
  private closed = false;
  /** A registry has sent its first snapshot. */
  private membersKnown = false;
  /** What tandem_client_* metrics read (registered in the process's metrics while open). */
  private readonly stats: () => ServiceStats;

  /**
   * `transport` is for tandem's own clients over other protocols (the gRPC client): how each
   * endpoint is reached, and the settings as the engine takes them.
   */
  constructor(service: string, clientOptions: ClientOptions = {}, transport?: ClientTransport) {
    const options = parseClientOptions(service, clientOptions);
    this.service = service;
    const settings = settingsOf(service, options);
    const fixed = settings.endpoints;
    const engineSettings = upstreamSettingsOf(settings);
    this.upstream = new Upstream(transport?.settings?.(engineSettings) ?? engineSettings, options.steps ?? [], { onTransition: options.onTransition, pool: transport?.pool });
    this.membershipTimeout = options.membershipTimeout;
    const urls = options.registry === undefined ? [] : typeof options.registry === 'string' ? [options.registry] : [...options.registry];
    this.owned = urls.map((url) => registryFromUrl(url, options.token));
    const registries = [...(options.registries ?? []), ...this.owned];
    // etcd never comes back empty (and keeps its members while it is away): an instance gone
    // from it has left for good, and holding it would only keep a crashed one longer.
    const onlyEtcd = urls.length > 0 && urls.every(isEtcdUrl) && !(options.registries?.length);
    const hold = onlyEtcd && clientOptions.holdRemoved === undefined ? 0 : options.holdRemoved;
    this.members = registries.length === 0 ? undefined : new Members(service, registries, (found) => this.upstream.setMembers(merge(fixed, found)), hold);
    void this.members?.known.then(() => { this.membersKnown = true; });
    const u = this.upstream;
    this.stats = () => ({
      name: u.name, endpoints: u.endpoints, stateKinds: HEALTH_STATE_KINDS, retryReasons: FAILURE_KINDS, localResponses: u.stats.local, latency: u.stats.latency, ejections: u.stats.ejections, panic: u.inPanic,
      retries: u.stats.retries, hedges: u.stats.hedges, hedgeWins: u.stats.hedgeWins, budgetExhausted: u.stats.budgetExhausted, active: u.stats.active, overloaded: u.stats.overloaded,
      grpcCalls: u.grpcCalls,
    });
    processStats.clients.add(this.stats);
  }

  /** A gRPC call of this client ended with `status` (the gRPC client's; tandem_client_grpc_calls_total). */
  countGrpc(method: string, status: number): void {
    this.upstream.countGrpc(method, status);
  }

  /** Replaces the caller's request steps; calls already under way keep theirs. */
  setSteps(steps: readonly Step[]): void {
    this.upstream.setSteps(steps);
  }

  /** The endpoints in use now, with their state (as in the gateway's /admin/cluster). */
  snapshot(): ReturnType<Upstream['snapshot']> {
    return this.upstream.snapshot();
  }

  /** Resolves with the response (any status), or rejects with a TandemError when there is none. */
  async request(req: ClientRequest): Promise<ClientResponse> {
    const { request, hop } = await this.prepare(req);
    return await new Promise<ClientResponse>((resolve, reject) => {
      this.upstream.dispatch(request, new Collector(this.service, resolve, reject, req.signal, this.upstream.stats, hop));
    });
  }

  /**
   * A call whose answer `handler` reads as it comes, nothing buffered (the gRPC client's
   * streaming calls): the engine, deadline and membership wait of request(). With `grpc` the engine
   * reads the answer's gRPC status (upstream/attempt.ts): a Trailers-Only UNAVAILABLE, or an
   * UNAVAILABLE before any message, goes to another instance when the call is idempotent; once a
   * message went up, nothing is sent again. `body`, when given, is sent instead of `req.body`:
   * a request stream still being written (a retry buffer's, which the engine's retry step can
   * send again while it keeps it: upstream/resilience/retry-buffer.ts). Rejects, with nothing
   * sent, when the client is closed or the deadline has passed; every other outcome reaches
   * `handler`.
   */
  async stream(req: ClientRequest, grpc: GrpcCall, handler: ResponseHandler, body?: Buffer | Readable): Promise<void> {
    const { request, hop } = await this.prepare(req);
    request.grpc = grpc;
    if (body !== undefined) {
      request.body = body;
      request.bodyLength = Buffer.isBuffer(body) ? body.length : -1;
    }
    this.upstream.dispatch(request, new Booked(this.service, handler, this.upstream.stats, hop));
  }

  /** The engine's request for `req`, once members are known, with the trace's hop begun. */
  private async prepare(req: ClientRequest): Promise<{ request: UpstreamRequest; hop: Hop }> {
    if (this.closed) throw new TandemError('TANDEM_ERR_CLIENT_CLOSED', `the client for ${this.service} is closed`);
    checkRequest(req);
    const timeout = this.timeoutFor(req.timeout);
    // Before the registries have answered, a call waits for them; once they have, a service
    // with no instance fails at once (a fast error its caller can act on, not a wait).
    if (this.members !== undefined && !this.membersKnown && this.upstream.endpoints.length === 0) await this.awaitMembers(timeout);
    const { headers, body, traced } = encode(req);
    const method = (req.method ?? 'GET').toUpperCase();
    // The trace of the request being handled (tandem/node) goes on; a call made outside any
    // starts a trace. A traceparent the caller set itself is sent as it is.
    const parent = currentTrace();
    const hop = startHop(`${method} ${this.service}`, 'client', parent, { 'http.request.method': method, 'tandem.service': this.service });
    if (!traced) {
      headers.push(TRACEPARENT, formatTraceparent(hop.context));
      if (parent?.tracestate !== undefined) headers.push(TRACESTATE, parent.tracestate);
    }
    const request: UpstreamRequest = {
      method,
      path: req.path,
      headers,
      body,
      bodyLength: body === null ? -1 : body.length,
      hashKey: undefined,
      bodyLimit: Infinity,
      timeoutMs: timeout,
    };
    return { request, hop };
  }

  /** What is left of the caller's deadline, capped by the service timeout; fails when none is left. */
  private timeoutFor(explicit: number | undefined): number {
    if (explicit !== undefined) {
      if (!(explicit > 0) || !Number.isFinite(explicit)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `timeout must be a positive number of ms, got ${explicit}`);
      return explicit;
    }
    const service = this.upstream.settings.timeoutMs;
    const deadline = currentDeadline();
    if (deadline === undefined) return service;
    const left = Math.floor(deadline - performance.now());
    if (left <= 0) throw new TandemError('TANDEM_ERR_UPSTREAM_TIMEOUT', `the caller's deadline passed before ${this.service} was called`, { status: 504 });
    return Math.min(left, service);
  }

  private async awaitMembers(timeout: number): Promise<void> {
    const wait = Math.min(timeout, this.membershipTimeout);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => { timer = setTimeout(resolve, wait); });
    await Promise.race([this.members!.known, timedOut]);
    clearTimeout(timer);
  }

  /** Stops watching and closes every connection once idle. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    processStats.clients.delete(this.stats);
    this.members?.close();
    await Promise.all(this.owned.map((r) => r.close()));
    await this.upstream.close();
  }
}

/** A client for `service`; see ServiceClient. */
export function createClient(service: string, options: ClientOptions = {}): ServiceClient {
  return new ServiceClient(service, options);
}

/** Validates the settings through the gateway config's schema, so both accept the same keys. */
function settingsOf(service: string, options: ClientOptions): ServiceConfig {
  const raw = { ...(options.settings ?? {}), ...(options.endpoints !== undefined ? { endpoints: [...options.endpoints] } : {}) };
  // A gateway config around the one service: listen and routes are required there, unused here.
  const config = validateConfig({ listen: '127.0.0.1:0', services: { [service]: raw }, routes: [{ prefix: '/', service }] }, `createClient(${JSON.stringify(service)})`);
  return config.services.get(service)!;
}

function merge(fixed: readonly EndpointConfig[], found: readonly EndpointConfig[]): EndpointConfig[] {
  if (fixed.length === 0) return [...found];
  const seen = new Set(fixed.map((e) => formatEndpoint(e.host, e.port, e.tls)));
  return [...fixed, ...found.filter((e) => !seen.has(formatEndpoint(e.host, e.port, e.tls)))];
}

function encode(req: ClientRequest): { headers: string[]; body: Buffer | null; traced: boolean } {
  const headers: string[] = [];
  let hasType = false;
  let traced = false;
  for (const [name, value] of Object.entries(req.headers ?? {})) {
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) continue;
    if (lower === 'content-type') hasType = true;
    if (lower === TRACEPARENT) traced = true;
    for (const v of typeof value === 'string' ? [value] : value) headers.push(lower, v);
  }
  const b = req.body;
  if (b === undefined || b === null) return { headers, body: null, traced };
  if (typeof b === 'string') return { headers, body: Buffer.from(b), traced };
  if (b instanceof Uint8Array) return { headers, body: Buffer.from(b.buffer, b.byteOffset, b.byteLength), traced };
  if (!hasType) headers.push('content-type', 'application/json');
  return { headers, body: Buffer.from(JSON.stringify(b)), traced };
}

/** Buffers one response for a promise. */
class Collector implements ResponseHandler {
  private status = 0;
  private raw: Buffer[] = [];
  private chunks: Buffer[] = [];
  private size = 0;
  private endpoint = '';
  private abort: ((reason?: Error) => void) | undefined;
  private settled = false;
  private readonly onAbort: (() => void) | undefined;
  private readonly started = performance.now();

  constructor(
    private readonly service: string,
    private readonly resolve: (res: ClientResponse) => void,
    private readonly reject: (err: Error) => void,
    private readonly signal: AbortSignal | undefined,
    private readonly stats: { latency: LatencyHistogram; answered: number[] },
    private readonly hop: Hop,
  ) {
    if (signal !== undefined) {
      // Through a local: V8 puts a function literal assigned straight to a property in the old
      // generation, from where its scope (this call) would outlive the scavenges.
      const onAbort = (): void => {
        const error = new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the request was aborted by its signal', { cause: signal.reason });
        this.abort?.(error);
        this.settle(error);
      };
      this.onAbort = onAbort;
      if (signal.aborted) queueMicrotask(this.onAbort);
      else signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void): void {
    this.endpoint = endpoint.id;
    this.abort = abort;
    if (this.settled) abort(new TandemError('TANDEM_ERR_CLIENT_ABORTED', 'the request was aborted by its signal'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.status = statusCode;
    this.raw = rawHeaders;
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.size += chunk.length;
    if (this.size > MAX_RESPONSE_BYTES) {
      this.abort?.(new TandemError('TANDEM_ERR_UPSTREAM_PROTOCOL', `response body larger than ${MAX_RESPONSE_BYTES} bytes`));
      return true;
    }
    this.chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.settle(undefined, {
      status: this.status,
      headers: headersOfRaw(this.raw),
      body,
      endpoint: this.endpoint,
      text: () => body.toString('utf8'),
      json: <T>() => JSON.parse(body.toString('utf8')) as T,
    });
  }

  onError(error: TandemError): void {
    this.settle(error);
  }

  private settle(error: Error | undefined, res?: ClientResponse): void {
    if (this.settled) return;
    this.settled = true;
    book(this.service, this.stats, this.hop, this.started, res?.status, error);
    if (this.onAbort !== undefined) this.signal?.removeEventListener('abort', this.onAbort);
    // A failure can be known at once (no endpoint at all): it is still reported on a later
    // turn of the event loop, so a caller retrying in a loop cannot starve timers and I/O.
    if (error !== undefined) setImmediate(this.reject, error);
    else this.resolve(res!);
  }
}

type CallStats = { latency: LatencyHistogram; answered: number[] };

/**
 * A finished call in the client's books: its time, its status class (`status` undefined: no
 * response), the trace's hop ended; a failure not of the caller's making is the called
 * service's (blameDependency).
 */
function book(service: string, stats: CallStats, hop: Hop, started: number, status: number | undefined, error: Error | undefined): void {
  stats.latency.observe((performance.now() - started) / 1000);
  stats.answered[status === undefined ? 5 : Math.min(5, Math.max(0, ((status / 100) | 0) - 1))]!++;
  hop.end(status ?? 0, error === undefined ? undefined : (error as { code?: string }).code ?? error.message);
  if (error !== undefined && !(error instanceof TandemError && isClientCaused(error))) blameDependency(error, service);
}

/** A streamed call's handler, with the call booked when it ends (as Collector books a buffered one). */
class Booked implements ResponseHandler {
  private readonly started = performance.now();
  private status: number | undefined;
  private ended = false;

  constructor(
    private readonly service: string,
    private readonly inner: ResponseHandler,
    private readonly stats: CallStats,
    private readonly hop: Hop,
  ) {}

  onAttempt(endpoint: Endpoint, leg?: Leg): void {
    this.inner.onAttempt?.(endpoint, leg);
  }

  onStart(endpoint: Endpoint, abort: (reason?: Error) => void, leg?: Leg): void {
    this.inner.onStart(endpoint, abort, leg);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, leg?: Leg): boolean {
    this.status = statusCode;
    return this.inner.onHeaders(statusCode, rawHeaders, resume, leg);
  }

  onData(chunk: Buffer, last: boolean): boolean {
    return this.inner.onData(chunk, last);
  }

  onComplete(trailers?: Trailers): void {
    this.end(undefined);
    this.inner.onComplete(trailers);
  }

  onError(error: TandemError, leg?: Leg): void {
    this.end(error);
    this.inner.onError(error, leg);
  }

  private end(error: TandemError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    // Cut after its headers, a stream's status class is an error's: the caller got no whole answer.
    book(this.service, this.stats, this.hop, this.started, error === undefined ? this.status : undefined, error);
  }
}

/** Raw header lines as an object: lower-case names, repeats joined with ", " (set-cookie kept as a list). */
export function headersOfRaw(raw: readonly Buffer[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const prev = out[name];
    if (name === 'set-cookie') out[name] = [...((prev as string[] | undefined) ?? []), value];
    else out[name] = prev === undefined ? value : `${prev as string}, ${value}`;
  }
  return out;
}

/**
 * Marks a failed call as the called service's failure: on the error (for error handlers that
 * copy `err.headers`) and on the request being handled, whose 5xx answer tandem/node then
 * marks (core/dependency.ts) — so the gateway neither ejects this instance nor retries the
 * request on its siblings, who share the dependency.
 */
function blameDependency(error: Error, service: string): void {
  noteFailedDependency(service);
  if (!(error instanceof TandemError)) return;
  error.dependency ??= service;
  error.headers = { ...error.headers, [FAILED_DEPENDENCY_HEADER]: error.dependency };
}
