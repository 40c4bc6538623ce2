import { TandemError } from '../core/errors.js';
import { loadOptional } from '../core/optional.js';
import { OptionsError, kindOf, parseOptions, type OptionProblem, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import { closest } from '../core/suggest.js';
import type { PoolSettings } from '../upstream/endpoint.js';
import type { UpstreamSettings } from '../upstream/settings.js';
import { ServiceClient, type ClientOptions } from './client.js';
import { GRPC_CLIENT_DEFAULTS } from './defaults.js';
import { GrpcConnection } from './grpc-transport.js';
import {
  GrpcCaller, IDEMPOTENT_AS,
  type GrpcCallback, type GrpcCallLog, type GrpcCallLogger, type GrpcCallOptions, type GrpcMetadataLike, type GrpcMethodDefinition, type GrpcServiceDefinition, type GrpcUnaryCall,
} from './grpc-call.js';
import type { GrpcBidiStream, GrpcClientStream, GrpcServerStream } from './grpc-stream.js';

export { GrpcUnaryCall } from './grpc-call.js';
export { GrpcServerStream, GrpcClientStream, GrpcBidiStream } from './grpc-stream.js';
export type { GrpcStatusObject } from './grpc-stream.js';
export type { GrpcCallback, GrpcCallLog, GrpcCallLogger, GrpcCallOptions, GrpcMetadataLike, GrpcMethodDefinition, GrpcServiceDefinition, GrpcServiceError } from './grpc-call.js';

/**
 * A unary method as grpc-js clients have it: `(request, [metadata], [options], callback)`,
 * returning the call.
 */
export interface GrpcUnaryMethod {
  (request: unknown, callback: GrpcCallback): GrpcUnaryCall;
  (request: unknown, metadata: GrpcMetadataLike, callback: GrpcCallback): GrpcUnaryCall;
  (request: unknown, options: GrpcCallOptions, callback: GrpcCallback): GrpcUnaryCall;
  (request: unknown, metadata: GrpcMetadataLike, options: GrpcCallOptions, callback: GrpcCallback): GrpcUnaryCall;
}

export interface GrpcClientOptions extends Omit<ClientOptions, 'steps'> {
  /**
   * Methods (as named in the definition, or their camelCase `originalName`) that are safe to
   * run twice: retried on another instance after UNAVAILABLE, a reset or a timeout, and hedged.
   * Besides these, every method whose .proto says `option idempotency_level = IDEMPOTENT` or
   * `NO_SIDE_EFFECTS` is. Any other call is sent again only when it certainly never reached an
   * instance's application (refused connection, refused stream, GOAWAY before it). Default none.
   */
  idempotent?: readonly string[];
  /** Where calls are logged (pino's shape, `{ info, warn }`): one line per call, with its method and gRPC status. Default none. */
  logger?: GrpcCallLogger;
  /** Which calls `logger` gets: `errors` (those not OK, at warn; the default), `all` (OK ones at info), `off`. */
  logCalls?: GrpcCallLog;
  /**
   * Bytes of a client-streaming or bidirectional call's request messages kept so the call can
   * go to another instance (gRPC's per-call retry buffer). Past it the call is committed to its
   * instance: it is never sent again, and goes on there. 0 keeps nothing: such calls are sent
   * again only when not a byte of them went out. Default 256 KiB, gRPC's own.
   */
  retryBuffer?: number;
}

/** What every client made by createGrpcClient has besides its service's methods. */
export interface GrpcClientControls {
  readonly service: string;
  /** The instances in use now, with their state (as in the gateway's /admin/cluster). */
  snapshot(): ReturnType<ServiceClient['snapshot']>;
  /** Stops watching the registries and closes the connections once their calls are done. */
  close(): Promise<void>;
}

/**
 * A server-streaming method as grpc-js clients have it: `(request, [metadata], [options])`,
 * returning the stream of response messages.
 */
export interface GrpcServerStreamMethod {
  (request: unknown, metadata?: GrpcMetadataLike, options?: GrpcCallOptions): GrpcServerStream;
  (request: unknown, options?: GrpcCallOptions): GrpcServerStream;
}

/**
 * A client-streaming method as grpc-js clients have it: `([metadata], [options], callback)`,
 * returning the stream the request messages are written to.
 */
export interface GrpcClientStreamMethod {
  (callback: GrpcCallback): GrpcClientStream;
  (metadata: GrpcMetadataLike, callback: GrpcCallback): GrpcClientStream;
  (options: GrpcCallOptions, callback: GrpcCallback): GrpcClientStream;
  (metadata: GrpcMetadataLike, options: GrpcCallOptions, callback: GrpcCallback): GrpcClientStream;
}

/** A bidirectional method as grpc-js clients have it: `([metadata], [options])`, returning the duplex stream. */
export interface GrpcBidiStreamMethod {
  (metadata?: GrpcMetadataLike, options?: GrpcCallOptions): GrpcBidiStream;
  (options?: GrpcCallOptions): GrpcBidiStream;
}

/**
 * A client made by createGrpcClient: its service's methods, by name and by `originalName`
 * (typed loosely: which kind each is comes from the definition, at run time).
 */
export type GrpcClient = GrpcClientControls & Record<string, GrpcUnaryMethod & GrpcServerStreamMethod & GrpcClientStreamMethod & GrpcBidiStreamMethod>;

const GRPC_KEYS = new Set(['idempotent', 'logger', 'logCalls', 'retryBuffer']);

/** What an unset GrpcClientOptions field of its own means (the ones with a fixed default). */
export const DEFAULT_GRPC_CLIENT_OPTIONS = rules.defaults({ ...GRPC_CLIENT_DEFAULTS });

/**
 * Calls a gRPC service's instances directly, with the engine the gateway and createClient use:
 * each call picks an instance (the service's balancer: peak-EWMA by default), a failure goes
 * to another instance when that is safe, idempotent calls are hedged, the deadline bounds every
 * attempt and travels as `grpc-timeout`, and members come from the registries (serveGrpc()
 * instances) or `endpoints`. The client has the service's methods — unary, server-streaming,
 * client-streaming and bidirectional — with grpc-js's signatures, so code written for a grpc-js
 * client keeps working:
 *
 *   const payments = createGrpcClient('payments', Payments.service, { registry });
 *   payments.charge({ amount: 5 }, { deadline: Date.now() + 1000 }, (err, reply) => …);
 *
 * A call whose requests stream keeps the messages written so far (`retryBuffer`) until its
 * answer begins, so it too goes to another instance when that is safe; it is never hedged.
 * Errors are grpc-js ServiceErrors with gRPC status codes (UNAVAILABLE when no instance can
 * take the call). See docs/grpc.md for why this shape and not a grpc-js channel.
 */
export function createGrpcClient(service: string, definition: GrpcServiceDefinition | { service: GrpcServiceDefinition }, options: GrpcClientOptions = {}): GrpcClient {
  const where = `createGrpcClient(${JSON.stringify(service)})`;
  const methods = definitionOf(where, definition);
  const { idempotent, logger, logCalls, retryBuffer, clientOptions } = splitOptions(where, options, methods);
  const client = new ServiceClient(service, clientOptions, {
    pool: (endpoint, settings: PoolSettings) => new GrpcConnection(endpoint.id, settings),
    settings: grpcSettings,
  });
  const grpc = loadOptional('@grpc/grpc-js', 'createGrpcClient()', () => import('@grpc/grpc-js'));
  // Reported when a call needs it; unhandled until then would end the process.
  grpc.catch(() => {});
  const caller = new GrpcCaller(client, grpc, logger, logCalls, retryBuffer);
  const out: Record<string, unknown> = {
    service,
    snapshot: () => client.snapshot(),
    close: () => client.close(),
  };
  for (const [name, method] of Object.entries(methods)) {
    const safe = idempotent.has(name);
    const call = method.requestStream
      ? method.responseStream ? bidiStreaming(caller, method, safe) : clientStreaming(caller, method, safe)
      : method.responseStream ? serverStreaming(caller, method, safe) : unary(caller, method, safe);
    out[name] = call;
    if (method.originalName !== undefined && !(method.originalName in out)) out[method.originalName] = call;
  }
  return out as GrpcClient;
}

/** The engine's settings for gRPC calls (grpc-call.ts: IDEMPOTENT_AS says how methods map). */
function grpcSettings(settings: UpstreamSettings): UpstreamSettings {
  return {
    ...settings,
    // The engine's active checks are HTTP/1.1 GETs, which a gRPC server cannot answer; the
    // instances are judged by their calls (outlier detection) and the registry's state.
    healthCheck: false,
    hedge: settings.hedge === false ? false : { ...settings.hedge, methods: [IDEMPOTENT_AS] },
  };
}


function definitionOf(where: string, definition: unknown): GrpcServiceDefinition {
  const candidate = typeof definition === 'function' || (typeof definition === 'object' && definition !== null && 'service' in definition && typeof (definition as { service: unknown }).service === 'object')
    ? (definition as { service: unknown }).service
    : definition;
  const problems: OptionProblem[] = [];
  if (typeof candidate !== 'object' || candidate === null || Object.keys(candidate).length === 0) {
    problems.push({ path: 'definition', message: `expected a grpc-js service definition (Constructor.service from proto-loader or grpc-tools), got ${kindOf(candidate)}` });
  } else {
    for (const [name, m] of Object.entries(candidate as Record<string, unknown>)) {
      const method = m as Partial<GrpcMethodDefinition> | null;
      if (typeof method?.path !== 'string' || typeof method.requestSerialize !== 'function' || typeof method.responseDeserialize !== 'function') {
        problems.push({ path: `definition.${name}`, message: 'expected a method definition with path, requestSerialize and responseDeserialize' });
      }
    }
  }
  if (problems.length > 0) throw new OptionsError(where, problems);
  return candidate as GrpcServiceDefinition;
}

function splitOptions(where: string, options: GrpcClientOptions, methods: GrpcServiceDefinition): { idempotent: Set<string>; logger: GrpcCallLogger | undefined; logCalls: GrpcCallLog; retryBuffer: number; clientOptions: ClientOptions } {
  if (typeof options !== 'object' || options === null) throw new OptionsError(where, [{ path: 'options', message: `expected an options object, got ${kindOf(options)}` }]);
  const own: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) (GRPC_KEYS.has(key) ? own : rest)[key] = value;
  const problems: OptionProblem[] = [];
  if ('steps' in rest) problems.push({ path: 'options.steps', message: 'request steps see HTTP requests; the gRPC client takes none' });
  const settings = rest.settings as Record<string, unknown> | undefined;
  if (settings !== undefined && typeof settings === 'object' && settings !== null) {
    if (settings.healthCheck !== undefined && settings.healthCheck !== false) problems.push({ path: 'options.settings.healthCheck', message: 'active health checks are HTTP/1.1 GETs, which a gRPC server cannot answer: leave it unset (gRPC instances are judged by their calls)' });
    const hedge = settings.hedge as Record<string, unknown> | undefined;
    if (typeof hedge === 'object' && hedge !== null && hedge.methods !== undefined) problems.push({ path: 'options.settings.hedge.methods', message: 'gRPC calls are hedged by method idempotency: list the methods in `idempotent` (or mark them in the .proto)' });
  }
  const names = new Map<string, string>();
  for (const [name, m] of Object.entries(methods)) {
    names.set(name, name);
    if (m.originalName !== undefined) names.set(m.originalName, name);
  }
  const spec: OptionSpec = { idempotent: rules.strings, logger: rules.methods('info', 'warn'), logCalls: rules.oneOf(['errors', 'all', 'off']), retryBuffer: rules.integer(0, Infinity, 'bytes') };
  const parsed = parseOptions<{ idempotent?: readonly string[]; logger?: GrpcCallLogger; logCalls?: GrpcCallLog; retryBuffer: number }>(where, own, spec, DEFAULT_GRPC_CLIENT_OPTIONS);
  for (const [i, name] of (parsed.idempotent ?? []).entries()) {
    if (names.has(name)) continue;
    const hint = closest(name, [...names.keys()]);
    problems.push({ path: `options.idempotent[${i}]`, message: `no method ${JSON.stringify(name)} in the service${hint ? ` — did you mean ${hint}?` : ''}` });
  }
  if (problems.length > 0) throw new OptionsError(where, problems);
  const idempotent = new Set<string>();
  for (const name of parsed.idempotent ?? []) idempotent.add(names.get(name)!);
  for (const [name, m] of Object.entries(methods)) {
    const level = m.options?.idempotency_level;
    if (level === 'IDEMPOTENT' || level === 'NO_SIDE_EFFECTS' || level === 1 || level === 2) idempotent.add(name);
  }
  return { idempotent, logger: parsed.logger, logCalls: parsed.logCalls ?? 'errors', retryBuffer: parsed.retryBuffer, clientOptions: rest as ClientOptions };
}

/** Call options or metadata, in grpc-js's order, before the callback of a unary call or at the end of a stream's. */
function callArguments(path: string, args: readonly unknown[]): { metadata: GrpcMetadataLike | undefined; options: GrpcCallOptions } {
  let metadata: GrpcMetadataLike | undefined;
  let options: GrpcCallOptions | undefined;
  for (const arg of args) {
    if (isMetadata(arg)) metadata = arg;
    else if (typeof arg === 'object' && arg !== null) options = arg as GrpcCallOptions;
    else if (arg !== undefined) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${path}: expected metadata or call options, got ${kindOf(arg)}`);
  }
  return { metadata, options: options ?? {} };
}

function serverStreaming(caller: GrpcCaller, method: GrpcMethodDefinition, idempotent: boolean): GrpcServerStreamMethod {
  return ((request: unknown, ...rest: unknown[]) => {
    if (typeof rest[rest.length - 1] === 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path} is a server-streaming method: it takes (request, [metadata], [options]) and returns the stream, no callback`);
    const { metadata, options } = callArguments(method.path, rest);
    return caller.serverStream(method, idempotent, request, metadata, options);
  }) as GrpcServerStreamMethod;
}

function clientStreaming(caller: GrpcCaller, method: GrpcMethodDefinition, idempotent: boolean): GrpcClientStreamMethod {
  return ((...args: unknown[]) => {
    const callback = args.pop();
    if (typeof callback !== 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path} is a client-streaming method: the last argument must be a callback ([metadata], [options], callback)`);
    const { metadata, options } = callArguments(method.path, args);
    return caller.clientStream(method, idempotent, metadata, options, callback as GrpcCallback);
  }) as GrpcClientStreamMethod;
}

function bidiStreaming(caller: GrpcCaller, method: GrpcMethodDefinition, idempotent: boolean): GrpcBidiStreamMethod {
  return ((...args: unknown[]) => {
    if (typeof args[args.length - 1] === 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path} is a bidirectional streaming method: it takes ([metadata], [options]) and returns the stream, no callback`);
    const { metadata, options } = callArguments(method.path, args);
    return caller.bidiStream(method, idempotent, metadata, options);
  }) as GrpcBidiStreamMethod;
}

function unary(caller: GrpcCaller, method: GrpcMethodDefinition, idempotent: boolean): GrpcUnaryMethod {
  return ((request: unknown, ...rest: unknown[]) => {
    const callback = rest.pop();
    if (typeof callback !== 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path}: the last argument must be a callback (request, [metadata], [options], callback)`);
    const { metadata, options } = callArguments(method.path, rest);
    return caller.call(method, idempotent, request, metadata, options, callback as GrpcCallback);
  }) as GrpcUnaryMethod;
}

function isMetadata(value: unknown): value is GrpcMetadataLike {
  return typeof value === 'object' && value !== null && typeof (value as GrpcMetadataLike).toHttp2Headers === 'function';
}

