import { ServerResponse, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { Server as TlsServer } from 'node:tls';
import { formatEndpoint } from '../core/address.js';
import { createLogger } from '../observe/log.js';
import { deadlineOf, listenForFailedDependencies, runWithDeadline } from '../core/deadline.js';
import { FAILED_DEPENDENCY_HEADER } from '../core/dependency.js';
import type { Registration } from '../discovery/types.js';
import { RegistryLink, type LinkLogger } from './registry-link.js';
import { registryUrls } from '../discovery/from-url.js';
import { NODE_DEFAULTS as DEFAULTS } from './defaults.js';
import { LatencyHistogram } from '../observe/histogram.js';
import { metricsRegistry, processStats, type NodeStats } from '../observe/metrics.js';
import { TRACEPARENT, TRACESTATE, parseTraceparent, startHop, tracingReady } from '../observe/trace.js';
import { allPass, closeBusesAndHooks, drainOnSignals, joinRegistries, runCheck, sleep, type Check, type DrainHook } from './lifecycle.js';
import { parseOptions, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';

export type { Check, DrainHook };

export interface ServeOptions {
  /** The service this instance belongs to. */
  service: string;
  /**
   * The gateway admin listener(s), e.g. `http://127.0.0.1:9901`, or etcd:
   * `etcd://[user:password@]host:port,host:port…` (docs/registry.md); the instance registers with each.
   */
  registry: string | readonly string[];
  /**
   * The gateways' secret. Unset: TANDEM_TOKEN, TANDEM_TOKEN_FILE, or — for a gateway on this
   * host — the one it generated (docs/security.md).
   */
  token?: string;
  /** Unique within the service. Default `<hostname>-<pid>-<port>`. */
  id?: string;
  /** Host to advertise. Default: the address the server listens on; `127.0.0.1` when it listens on all addresses. */
  host?: string;
  /** Port to advertise. Default: the one the server listens on. */
  port?: number;
  zone?: string;
  weight?: number;
  metadata?: Record<string, string>;
  /**
   * Time between heartbeats. Default 1 s. A beat is a byte on an open connection, so it is cheap;
   * what finds a crash is that connection closing (at once), not a missed beat.
   */
  heartbeatInterval?: number;
  /**
   * Lease TTL asked for. Default 10 s: an event loop blocked for up to ~9 s (a long GC, a
   * synchronous job) loses no membership — Moleculer #891's false alarm. A crashed process is
   * removed at once (its kernel closes the keep-alive connection); a frozen one leaves traffic
   * within ~1.5 s through the gateway's health checks and membership after the TTL.
   */
  ttl?: number;
  /**
   * A gateway that leaves the keep-alive stream or a heartbeat unanswered this long is taken
   * for frozen or gone (its host lost power, a cut cable: its connection never closes): the SDK
   * drops the connection and reconnects, and registers again (same id, same state) once the
   * gateway answers and has forgotten the lease. Noticed within heartbeatInterval +
   * registryTimeout. Default 1.5 s. The other gateways' heartbeats never wait for this one.
   */
  registryTimeout?: number;
  /** Checks behind /readyz (besides "started and not draining"); they must pass before the instance registers. */
  readiness?: Record<string, Check>;
  /** Checks behind /healthz (liveness). */
  liveness?: Record<string, Check>;
  /** Longest wait for in-flight requests when draining. Default 30 s. */
  drainTimeout?: number;
  /**
   * Wait after every gateway acknowledged "draining", before waiting for in-flight requests to
   * finish and closing idle connections: covers a request already on the wire. Default 250 ms.
   */
  drainQuietPeriod?: number;
  /** Drain and exit 0 on SIGTERM and SIGINT. Default true. */
  handleSignals?: boolean;
  /**
   * The application's part of the drain: close what it opened (database pools, other servers,
   * an outbox relay). Run once no request is in flight, the server is closed and the instance
   * deregistered, after every open tandem/events bus was closed (each waits for its running
   * handlers) — last added, first run; a hook that throws is logged and the others still run.
   * The process exits only when they are done, or `drainTimeout` after they started (exit 1).
   */
  onDrain?: DrainHook | readonly DrainHook[];
  /** pino-compatible `{ info, warn }`; default: a pino logger (the gateway's format) writing warnings to stderr. */
  logger?: LinkLogger;
  /**
   * Answer `GET /metrics` with the process's tandem metrics (docs/metrics.md: this instance,
   * its tandem/client clients, events) and the default process metrics. Default true; false
   * leaves /metrics to the application (which can still use `metricsRegistry()` from tandem/observe).
   */
  metrics?: boolean;
}

export type ServedState = 'starting' | 'ready' | 'draining' | 'closed';

export interface ServedInstance {
  readonly id: string;
  /** `host:port` as registered. */
  readonly address: string;
  readonly state: ServedState;
  /** Current lease per registry URL (undefined while not registered there). */
  leases(): Record<string, string | undefined>;
  /** Adds a check to /readyz or /healthz. */
  addCheck(kind: 'readiness' | 'liveness', name: string, check: Check): void;
  /** Adds a drain hook (as ServeOptions.onDrain), e.g. for a resource opened after serve(). */
  onDrain(hook: DrainHook): { dispose(): void };
  /**
   * Drains: marks the instance draining in every registry (each gateway applies it before it
   * answers), waits for in-flight requests, closes the server, deregisters. Idempotent.
   */
  close(): Promise<void>;
}

/** What an unset ServeOptions field means (the ones with a fixed default). */
export const DEFAULT_SERVE_OPTIONS = rules.defaults({ ...DEFAULTS, handleSignals: true, metrics: true });

type ParsedServeOptions = ServeOptions & typeof DEFAULT_SERVE_OPTIONS;

export const SERVE_SPEC: OptionSpec = {
  service: rules.string,
  registry: registryUrls,
  token: rules.string,
  id: rules.string,
  host: rules.string,
  port: rules.integer(1, 65_535),
  zone: rules.string,
  // the registry's own limits, so a bad value fails here rather than at every registration
  weight: rules.integer(1, 1000),
  metadata: rules.record(rules.anyString, 'an object of strings'),
  heartbeatInterval: rules.duration(1),
  ttl: rules.duration(1),
  registryTimeout: rules.duration(100),
  readiness: rules.record(rules.func, 'an object of check functions'),
  liveness: rules.record(rules.func, 'an object of check functions'),
  drainTimeout: rules.duration(0),
  drainQuietPeriod: rules.duration(0),
  handleSignals: rules.boolean,
  onDrain: rules.either(rules.func, rules.arrayOf(rules.func, 'a function or an array of functions')),
  logger: rules.methods('info', 'warn'),
  metrics: rules.boolean,
};

/** Validates serve()'s options once (unknown keys with a hint, types, ranges); frozen, defaults filled in. */
export function parseServeOptions(options: unknown): Readonly<ParsedServeOptions> {
  return parseOptions<ParsedServeOptions>('serve()', options, SERVE_SPEC, DEFAULT_SERVE_OPTIONS, ['service', 'registry']);
}

/** The gateway's line format (pino, ISO times), warnings and up, on stderr: the application owns stdout. */
let defaultLogger: LinkLogger | undefined;
const stderrLogger = (): LinkLogger => (defaultLogger ??= createLogger('warn', process.stderr));

/**
 * Makes any node:http Server (plain, express, fastify's `server`, koa's `app.listen()`) a
 * member of a service: answers /healthz and /readyz, registers with every gateway once the
 * server listens and its readiness checks pass, heartbeats, registers again after a gateway
 * restart, and drains on SIGTERM/SIGINT (or close()).
 */
export async function serve(server: Server, serveOptions: ServeOptions): Promise<ServedInstance> {
  const options = parseServeOptions(serveOptions);
  const log = options.logger ?? stderrLogger();
  const readiness = new Map(Object.entries(options.readiness ?? {}));
  const liveness = new Map(Object.entries(options.liveness ?? {}));
  const stats: NodeStats = { service: options.service, responses: [0, 0, 0, 0, 0, 0], latency: new LatencyHistogram(), inflight: 0, state: 'starting' };
  let state: ServedState = 'starting';
  const setState = (next: ServedState) => {
    state = next;
    stats.state = next;
    if (next === 'closed') processStats.nodes.delete(stats);
  };
  processStats.nodes.add(stats);
  let inflight = 0;
  const serveMetrics = options.metrics;

  const userListeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz' || path === '/readyz') {
      void answerChecks(path === '/readyz' ? readiness : liveness, path === '/readyz' ? state === 'ready' : state !== 'closed', state, res);
      req.resume();
      return;
    }
    if (serveMetrics && path === '/metrics' && req.method === 'GET') {
      req.resume();
      const registry = metricsRegistry();
      void registry.metrics().then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text));
      return;
    }
    inflight++;
    stats.inflight++;
    const started = performance.now();
    // The caller's trace continues here: currentTrace() (and OpenTelemetry's active span, when
    // an SDK is registered) inside the handler, so tandem/client calls carry it on.
    const hop = startHop(req.method ?? 'GET', 'server', parseTraceparent(one(req.headers[TRACEPARENT]), one(req.headers[TRACESTATE])), { 'http.request.method': req.method ?? 'GET', 'tandem.service': options.service }, true);
    res.once('close', () => {
      hop.end(res.writableFinished ? res.statusCode : 0);
      inflight--;
      stats.inflight--;
      const cls = res.writableFinished ? ((res.statusCode / 100) | 0) - 1 : 5;
      stats.responses[cls >= 0 && cls <= 4 ? cls : 5]!++;
      stats.latency.observe((performance.now() - started) / 1000);
    });
    // While draining, every response closes its connection: nothing is left idle to race with.
    if (state === 'draining') res.setHeader('connection', 'close');
    // The caller's deadline follows the handling of the request: tandem/client calls made
    // while handling it get only the time that is left.
    runWithDeadline(deadlineOf(req.headers), () => hop.run(() => {
      for (const l of userListeners) l.call(server, req, res);
    }), res);
  });

  const hooks: DrainHook[] = options.onDrain === undefined ? [] : typeof options.onDrain === 'function' ? [options.onDrain] : [...options.onDrain];
  let links: RegistryLink[] = [];
  let closing: Promise<void> | undefined;
  const drain = async () => {
    setState('draining');
    log.info({ msg: 'draining', inflight });
    // Each gateway has stopped sending when its registry answers (or could not be reached).
    await Promise.all(links.map((l) => l.setState('draining', 3000)));
    await sleep(options.drainQuietPeriod);
    const deadline = Date.now() + options.drainTimeout;
    while (inflight > 0 && Date.now() < deadline) await sleep(20);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const hard = setTimeout(() => server.closeAllConnections(), Math.max(0, deadline - Date.now()));
    await closed;
    clearTimeout(hard);
    await Promise.all(links.map((l) => l.stop(2000)));
    await closeTheRest();
    setState('closed');
    log.info({ msg: 'drained' });
  };
  /** Open buses (their handlers finish first), then the application's hooks, within drainTimeout. */
  const closeTheRest = () => closeBusesAndHooks(hooks, options.drainTimeout, log);
  const close = () => {
    closing ??= drain();
    return closing;
  };
  if (options.handleSignals) drainOnSignals(close, log);

  await tracingReady;
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', resolve));
  const a = server.address() as AddressInfo;
  const wildcard = a.address === '0.0.0.0' || a.address === '::';
  const host = options.host ?? (wildcard ? '127.0.0.1' : a.address);
  const port = options.port ?? a.port;
  // An https.Server registers as https://host:port: the gateway and clients then speak TLS to it.
  const address = formatEndpoint(host, port, server instanceof TlsServer);
  const id = options.id ?? `${hostname()}-${process.pid}-${port}`.replace(/[^A-Za-z0-9_.:@-]/g, '-');

  // Ready = every readiness check passes; until then /readyz says 503 and nothing registers.
  while (state === 'starting' && !(await allPass(readiness))) await sleep(100);
  if (state === 'starting') {
    setState('ready');
    const registration = (): Registration => ({
      service: options.service, id, address, zone: options.zone, weight: options.weight, metadata: options.metadata, ttl: options.ttl,
    });
    links = await joinRegistries(options, registration, log);
  }
  return {
    id,
    address,
    get state() { return state; },
    leases: () => Object.fromEntries(links.map((l) => [l.url, l.leaseId])),
    addCheck: (kind, name, check) => (kind === 'readiness' ? readiness : liveness).set(name, check),
    onDrain: (hook) => {
      hooks.push(hook);
      return { dispose: () => { const i = hooks.indexOf(hook); if (i >= 0) hooks.splice(i, 1); } };
    },
    close,
  };
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

async function answerChecks(checks: ReadonlyMap<string, Check>, base: boolean, state: ServedState, res: ServerResponse): Promise<void> {
  const results: Record<string, string> = {};
  let ok = base;
  for (const [name, check] of checks) {
    const r = await runCheck(check);
    results[name] = r.ok ? 'ok' : `fail${r.error ? `: ${r.error}` : ''}`;
    ok &&= r.ok;
  }
  res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    .end(`${JSON.stringify({ status: ok ? 'ok' : 'fail', state, checks: results })}\n`);
}

/** The dependency a response's 5xx answer blames, once a tandem/client call failed while handling it. */
const BLAMED = Symbol('tandem.failedDependency');
type Blaming = ServerResponse & { [BLAMED]?: string };

/**
 * A tandem/client call failed while this response's request was handled: a 5xx answer (however
 * the application writes it) will name the dependency in FAILED_DEPENDENCY_HEADER, so the
 * gateway neither retries it on this instance's siblings nor ejects this instance
 * (core/dependency.ts). Only such responses get the wrapped writeHead: the common path pays nothing.
 */
function blameOnError(response: object, service: string): void {
  const res = response as Blaming;
  if (res.headersSent) return;
  if (res[BLAMED] === undefined) res.writeHead = writeHeadBlaming as ServerResponse['writeHead'];
  res[BLAMED] = service;
}

function writeHeadBlaming(this: Blaming, statusCode: number, ...rest: unknown[]): ServerResponse {
  if (statusCode >= 500 && !this.hasHeader(FAILED_DEPENDENCY_HEADER) && !rawHeadersName(rest)) this.setHeader(FAILED_DEPENDENCY_HEADER, this[BLAMED]!);
  return (ServerResponse.prototype.writeHead as (...args: unknown[]) => ServerResponse).call(this, statusCode, ...rest);
}

/** True when headers passed to writeHead itself already name the dependency. */
function rawHeadersName(rest: readonly unknown[]): boolean {
  const headers = rest.find((r) => typeof r === 'object' && r !== null);
  if (headers === undefined) return false;
  if (Array.isArray(headers)) return headers.some((v, i) => i % 2 === 0 && String(v).toLowerCase() === FAILED_DEPENDENCY_HEADER);
  return Object.keys(headers).some((k) => k.toLowerCase() === FAILED_DEPENDENCY_HEADER);
}

listenForFailedDependencies(blameOnError);
