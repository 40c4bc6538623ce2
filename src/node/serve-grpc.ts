import { hostname } from 'node:os';
import { formatHostPort, parseHostPort, type HostPort } from '../core/address.js';
import { loadOptional } from '../core/optional.js';
import { TandemError } from '../core/errors.js';
import { parseOptions, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import type { Registration } from '../discovery/types.js';
import { registryUrls } from '../discovery/from-url.js';
import { createLogger } from '../observe/log.js';
import { NODE_DEFAULTS as DEFAULTS } from './defaults.js';
import { HEALTH_SERVICE, HealthService } from './grpc-health.js';
import { allPass, closeBusesAndHooks, drainOnSignals, joinRegistries, sleep, type Check, type DrainHook } from './lifecycle.js';
import { RegistryLink, type LinkLogger } from './registry-link.js';
import { SERVE_SPEC, type ServeOptions, type ServedState } from './serve.js';

/**
 * The parts of a `@grpc/grpc-js` Server that serveGrpc() uses, written out so that tandem/node's
 * types do not need grpc-js installed (it is an optional peer dependency).
 */
export interface GrpcServerLike {
  bindAsync(port: string, credentials: unknown, callback: (error: Error | null, port: number) => void): void;
  addService(service: object, implementation: object): void;
  tryShutdown(callback: (error?: Error) => void): void;
  forceShutdown(): void;
}

export interface ServeGrpcOptions extends Omit<ServeOptions, 'liveness' | 'metrics'> {
  /**
   * Where the server listens, as grpc-js's `bindAsync` takes it: `host:port`, port 0 for any
   * free port. Default `127.0.0.1:0`. The instance registers the port it got.
   */
  listen?: string;
  /** grpc-js `ServerCredentials` for the listener. Default `ServerCredentials.createInsecure()` (plaintext h2c). */
  credentials?: object;
  /**
   * Fully qualified gRPC service names (`payments.v1.Payments`) that the health service
   * answers for, besides the server as a whole (`""`) and the tandem service name. Others are
   * NOT_FOUND. Default none.
   */
  healthServices?: readonly string[];
}

export interface ServedGrpcInstance {
  readonly id: string;
  /** `host:port` as registered. */
  readonly address: string;
  /** The port the server listens on (the one grpc-js chose, for port 0). */
  readonly port: number;
  readonly state: ServedState;
  /** What grpc.health.v1.Health answers now. */
  readonly health: 'SERVING' | 'NOT_SERVING';
  /** Current lease per registry URL (undefined while not registered there). */
  leases(): Record<string, string | undefined>;
  addCheck(kind: 'readiness', name: string, check: Check): void;
  onDrain(hook: DrainHook): { dispose(): void };
  /**
   * Drains: health NOT_SERVING and "draining" in every registry (each gateway and client stops
   * picking the instance), then grpc-js's graceful shutdown — GOAWAY on every connection, no
   * new calls, running calls finish — bounded by `drainTimeout` (then forceShutdown cancels what
   * is left), deregisters, closes buses and runs the drain hooks. Idempotent.
   */
  close(): Promise<void>;
}

/** What an unset ServeGrpcOptions field means (the ones with a fixed default). */
export const DEFAULT_SERVE_GRPC_OPTIONS = rules.defaults({ ...DEFAULTS, handleSignals: true, listen: '127.0.0.1:0' });

type Parsed = ServeGrpcOptions & typeof DEFAULT_SERVE_GRPC_OPTIONS;

const { liveness: _liveness, metrics: _metrics, ...SHARED_SPEC } = SERVE_SPEC;
const SERVE_GRPC_SPEC: OptionSpec = {
  ...SHARED_SPEC,
  registry: registryUrls,
  listen: (value, path, problems) => {
    const parsed = parseHostPort(value, true);
    if (typeof parsed === 'string') problems.push({ path, message: parsed });
  },
  credentials: rules.object,
  healthServices: rules.strings,
};

let defaultLogger: LinkLogger | undefined;
const stderrLogger = (): LinkLogger => (defaultLogger ??= createLogger('warn', process.stderr));

/**
 * Makes a `@grpc/grpc-js` Server a member of a service, as serve() does for an HTTP server:
 * binds it, serves grpc.health.v1.Health (NOT_SERVING while starting and draining, SERVING when
 * ready), registers with every registry once its readiness checks pass — with metadata
 * `protocol: grpc`, so a gateway or client knows to speak gRPC to it — heartbeats, and drains
 * on SIGTERM/SIGINT (or close()). Add the application's services before calling it; it adds
 * the health service itself.
 */
export async function serveGrpc(server: GrpcServerLike, serveOptions: ServeGrpcOptions): Promise<ServedGrpcInstance> {
  const options = parseOptions<Parsed>('serveGrpc()', serveOptions, SERVE_GRPC_SPEC, DEFAULT_SERVE_GRPC_OPTIONS, ['service', 'registry']);
  const log = options.logger ?? stderrLogger();
  const readiness = new Map(Object.entries(options.readiness ?? {}));
  const health = new HealthService([options.service, ...(options.healthServices ?? [])]);
  const hooks: DrainHook[] = options.onDrain === undefined ? [] : typeof options.onDrain === 'function' ? [options.onDrain] : [...options.onDrain];
  let state: ServedState = 'starting';
  let links: RegistryLink[] = [];
  let closing: Promise<void> | undefined;

  const drain = async () => {
    state = 'draining';
    health.set('NOT_SERVING');
    log.info({ msg: 'draining' });
    // Each gateway and client has stopped picking this instance when its registry answers.
    await Promise.all(links.map((l) => l.setState('draining', 3000)));
    await sleep(options.drainQuietPeriod);
    health.endWatches();
    log.info({ msg: 'refusing new calls' });
    await shutDown(server, options.drainTimeout, log);
    await Promise.all(links.map((l) => l.stop(2000)));
    await closeBusesAndHooks(hooks, options.drainTimeout, log);
    state = 'closed';
    log.info({ msg: 'drained' });
  };
  const close = () => (closing ??= drain());
  if (options.handleSignals) drainOnSignals(close, log);

  server.addService(HEALTH_SERVICE, health.handlers);
  const credentials = options.credentials ?? (await loadOptional('@grpc/grpc-js', 'serveGrpc()', () => import('@grpc/grpc-js'))).ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, credentials, (error, bound) => {
      if (error) reject(new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `serveGrpc(): cannot listen on ${options.listen}: ${error.message}`, { cause: error }));
      else resolve(bound);
    });
  });
  const bindHost = (parseHostPort(options.listen, true) as HostPort).host;
  const wildcard = bindHost === '0.0.0.0' || bindHost === '::';
  const host = options.host ?? (wildcard ? '127.0.0.1' : bindHost);
  const advertisedPort = options.port ?? port;
  const address = formatHostPort(host, advertisedPort);
  const id = options.id ?? `${hostname()}-${process.pid}-${advertisedPort}`.replace(/[^A-Za-z0-9_.:@-]/g, '-');

  while (state === 'starting' && !(await allPass(readiness))) await sleep(100);
  if (state === 'starting') {
    state = 'ready';
    health.set('SERVING');
    const registration = (): Registration => ({
      service: options.service, id, address, zone: options.zone, weight: options.weight, ttl: options.ttl,
      metadata: { ...options.metadata, protocol: 'grpc' },
    });
    links = await joinRegistries(options, registration, log);
  }
  return {
    id,
    address,
    port,
    get state() { return state; },
    get health() { return health.current; },
    leases: () => Object.fromEntries(links.map((l) => [l.url, l.leaseId])),
    addCheck: (_kind, name, check) => { readiness.set(name, check); },
    onDrain: (hook) => {
      hooks.push(hook);
      return { dispose: () => { const i = hooks.indexOf(hook); if (i >= 0) hooks.splice(i, 1); } };
    },
    close,
  };
}

/**
 * grpc-js's graceful shutdown (its listeners close, every connection gets a GOAWAY, running
 * calls finish), cut short by forceShutdown when calls are still running after `timeoutMs`.
 */
async function shutDown(server: GrpcServerLike, timeoutMs: number, log: LinkLogger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = new Promise<void>((resolve) => server.tryShutdown((err) => {
    if (err) log.warn({ msg: 'graceful shutdown failed', error: err.message });
    resolve();
  }));
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs); });
  const timedOut = await Promise.race([graceful.then(() => false), late]);
  clearTimeout(timer);
  if (timedOut) {
    log.warn({ msg: 'calls still running after drainTimeout; cancelling them', drainTimeout: timeoutMs });
    server.forceShutdown();
  }
}
