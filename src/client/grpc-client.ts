import { EventEmitter } from 'node:events';
import { TandemError, isTandemError } from '../core/errors.js';
import { loadOptional } from '../core/optional.js';
import { OptionsError, kindOf, parseOptions, type OptionProblem, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import { closest } from '../core/suggest.js';
import type { PoolSettings } from '../upstream/endpoint.js';
import type { UpstreamSettings } from '../upstream/settings.js';
import { ServiceClient, type ClientOptions, type ClientResponse } from './client.js';
import { GrpcConnection } from './grpc-transport.js';
import { GRPC_STATUS, grpcStatusName, grpcStatusOfError, grpcStatusOfHttp } from './grpc-status.js';

/**
 * One method of a grpc-js service definition — what `@grpc/proto-loader` and grpc-tools make —
 * as this client uses it (declared here: tandem's types do not import grpc-js's).
 */
export interface GrpcMethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: never): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
  originalName?: string;
  /** The method's options from the .proto (proto-loader): `idempotency_level` is read. */
  options?: { idempotency_level?: unknown };
}

/** A grpc-js service definition (`Constructor.service`), by method name. */
export type GrpcServiceDefinition = Readonly<Record<string, GrpcMethodDefinition>>;

/** grpc-js's `Metadata`, as far as this client uses it. */
export interface GrpcMetadataLike {
  toHttp2Headers(): Record<string, string | string[] | number | undefined>;
}

/** grpc-js's `ServiceError`: an Error with the call's status. */
export interface GrpcServiceError extends Error {
  code: number;
  details: string;
  /** grpc-js `Metadata`: the response's headers and trailers. */
  metadata: unknown;
}

/** grpc-js's call options, as far as this client takes them. */
export interface GrpcCallOptions {
  /**
   * When the call must be done: a Date or milliseconds since the epoch (grpc-js's `Deadline`).
   * Unset: what is left of the deadline of the request being handled (tandem/node), capped by
   * the service's `timeout` (default 15 s) — never unbounded.
   */
  deadline?: Date | number;
}

export type GrpcCallback<T = unknown> = (error: GrpcServiceError | null, response?: T) => void;

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
}

/** What every client made by createGrpcClient has besides its service's methods. */
export interface GrpcClientControls {
  readonly service: string;
  /** The instances in use now, with their state (as in the gateway's /admin/cluster). */
  snapshot(): ReturnType<ServiceClient['snapshot']>;
  /** Stops watching the registries and closes the connections once their calls are done. */
  close(): Promise<void>;
}

/** A client made by createGrpcClient: its service's unary methods, by name and by `originalName`. */
export type GrpcClient = GrpcClientControls & Record<string, GrpcUnaryMethod>;

/** The call a method returns: cancel it as a grpc-js call; 'metadata' and 'status' are emitted as grpc-js does. */
export class GrpcUnaryCall extends EventEmitter {
  /** The instance that answered (`host:port`), once known. */
  peer = '';

  constructor(private readonly aborts: AbortController) {
    super();
  }

  /** Ends the call with CANCELLED (the caller's callback hears it). */
  cancel(): void {
    this.aborts.abort();
  }

  getPeer(): string {
    return this.peer;
  }
}

const GRPC_KEYS = new Set(['idempotent']);

/**
 * Calls a gRPC service's instances directly, with the engine the gateway and createClient use:
 * each call picks an instance (the service's balancer: peak-EWMA by default), a failure goes
 * to another instance when that is safe, idempotent calls are hedged, the deadline bounds every
 * attempt and travels as `grpc-timeout`, and members come from the registries (serveGrpc()
 * instances) or `endpoints`. The client has the service's unary methods with grpc-js's
 * signatures, so code written for a grpc-js client keeps working:
 *
 *   const payments = createGrpcClient('payments', Payments.service, { registry });
 *   payments.charge({ amount: 5 }, { deadline: Date.now() + 1000 }, (err, reply) => …);
 *
 * Errors are grpc-js ServiceErrors with gRPC status codes (UNAVAILABLE when no instance can
 * take the call). See docs/grpc.md for why this shape and not a grpc-js channel.
 */
export function createGrpcClient(service: string, definition: GrpcServiceDefinition | { service: GrpcServiceDefinition }, options: GrpcClientOptions = {}): GrpcClient {
  const where = `createGrpcClient(${JSON.stringify(service)})`;
  const methods = definitionOf(where, definition);
  const { idempotent, clientOptions } = splitOptions(where, options, methods);
  const client = new ServiceClient(service, clientOptions, {
    pool: (endpoint, settings: PoolSettings) => new GrpcConnection(endpoint.id, settings),
    settings: grpcSettings,
  });
  const grpc = loadOptional('@grpc/grpc-js', 'createGrpcClient()', () => import('@grpc/grpc-js'));
  // Reported when a call needs it; unhandled until then would end the process.
  grpc.catch(() => {});
  const caller = new GrpcCaller(client, grpc);
  const out: Record<string, unknown> = {
    service,
    snapshot: () => client.snapshot(),
    close: () => client.close(),
  };
  for (const [name, method] of Object.entries(methods)) {
    const call = method.requestStream || method.responseStream
      ? streaming(where, name)
      : unary(caller, method, idempotent.has(name));
    out[name] = call;
    if (method.originalName !== undefined && !(method.originalName in out)) out[method.originalName] = call;
  }
  return out as GrpcClient;
}

/** The engine's settings for gRPC calls (see GrpcCaller for the method mapping). */
function grpcSettings(settings: UpstreamSettings): UpstreamSettings {
  return {
    ...settings,
    // The engine's active checks are HTTP/1.1 GETs, which a gRPC server cannot answer; the
    // instances are judged by their calls (outlier detection) and the registry's state.
    healthCheck: false,
    hedge: settings.hedge === false ? false : { ...settings.hedge, methods: [IDEMPOTENT_AS] },
  };
}

/**
 * The engine decides retries and hedging by HTTP method. A gRPC call is always a POST on the
 * wire; to the engine an idempotent call is presented as a GET (repeatable, hedged when hedging
 * is on), any other as a POST (sent again only when it never reached the instance).
 */
const IDEMPOTENT_AS = 'GET';
const NOT_IDEMPOTENT_AS = 'POST';

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

function splitOptions(where: string, options: GrpcClientOptions, methods: GrpcServiceDefinition): { idempotent: Set<string>; clientOptions: ClientOptions } {
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
  const spec: OptionSpec = { idempotent: rules.strings };
  const parsed = parseOptions<{ idempotent?: readonly string[] }>(where, own, spec);
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
  return { idempotent, clientOptions: rest as ClientOptions };
}

function streaming(where: string, name: string): () => never {
  return () => {
    throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${where}: ${name} is a streaming method; tandem's gRPC client makes unary calls (use a grpc-js client for streams)`);
  };
}

function unary(caller: GrpcCaller, method: GrpcMethodDefinition, idempotent: boolean): GrpcUnaryMethod {
  return ((request: unknown, ...rest: unknown[]) => {
    const callback = rest.pop();
    if (typeof callback !== 'function') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path}: the last argument must be a callback (request, [metadata], [options], callback)`);
    let metadata: GrpcMetadataLike | undefined;
    let options: GrpcCallOptions | undefined;
    for (const arg of rest) {
      if (isMetadata(arg)) metadata = arg;
      else if (typeof arg === 'object' && arg !== null) options = arg as GrpcCallOptions;
      else if (arg !== undefined) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `${method.path}: expected metadata or call options before the callback, got ${kindOf(arg)}`);
    }
    return caller.call(method, idempotent, request, metadata, options ?? {}, callback as GrpcCallback);
  }) as GrpcUnaryMethod;
}

function isMetadata(value: unknown): value is GrpcMetadataLike {
  return typeof value === 'object' && value !== null && typeof (value as GrpcMetadataLike).toHttp2Headers === 'function';
}

const CALL_OPTIONS: OptionSpec = {
  deadline: (value, path, problems) => {
    if (!(value instanceof Date) && typeof value !== 'number') problems.push({ path, message: `expected a Date or milliseconds since the epoch, got ${kindOf(value)}` });
  },
};

/** Headers of the request the caller may not set: the transport's own. */
const RESERVED = new Set(['content-type', 'te', 'grpc-timeout', 'content-length', 'user-agent']);

type GrpcModule = typeof import('@grpc/grpc-js');

/** Makes the calls of one client: encodes, sends through the ServiceClient, decodes. */
class GrpcCaller {
  private module: GrpcModule | undefined;

  constructor(
    private readonly client: ServiceClient,
    private readonly grpc: Promise<GrpcModule>,
  ) {
    void grpc.then((m) => { this.module = m; }, () => {});
  }

  call(method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, callback: GrpcCallback): GrpcUnaryCall {
    // Like grpc-js, a malformed call throws at once; everything else reaches the callback.
    parseOptions('a gRPC call', options, CALL_OPTIONS);
    const aborts = new AbortController();
    const call = new GrpcUnaryCall(aborts);
    void this.run(method, idempotent, request, metadata, options, aborts.signal, call).then(
      (reply) => callback(null, reply),
      (error: GrpcServiceError) => callback(error),
    );
    return call;
  }

  private async run(method: GrpcMethodDefinition, idempotent: boolean, request: unknown, metadata: GrpcMetadataLike | undefined, options: GrpcCallOptions, signal: AbortSignal, call: GrpcUnaryCall): Promise<unknown> {
    const grpc = this.module ?? (await this.grpc);
    let message: Buffer;
    try {
      message = (method.requestSerialize as (value: unknown) => Buffer)(request);
    } catch (err) {
      throw serviceError(grpc, GRPC_STATUS.INTERNAL, `request message serialization failure: ${(err as Error).message}`, undefined, err);
    }
    const deadline = options.deadline === undefined ? Infinity : Number(options.deadline);
    let timeout: number | undefined;
    if (Number.isFinite(deadline)) {
      timeout = Math.floor(deadline - Date.now());
      if (timeout <= 0) throw serviceError(grpc, GRPC_STATUS.DEADLINE_EXCEEDED, 'the deadline passed before the call started');
    }
    let res: ClientResponse;
    try {
      res = await this.client.request({
        method: idempotent ? IDEMPOTENT_AS : NOT_IDEMPOTENT_AS,
        path: method.path,
        headers: headersOf(metadata),
        body: frame(message),
        timeout,
        signal,
      });
    } catch (err) {
      if (!isTandemError(err)) throw err;
      throw serviceError(grpc, grpcStatusOfError(err), err.message, undefined, err);
    }
    call.peer = res.endpoint;
    const responseMetadata = metadataOf(grpc, res.headers);
    call.emit('metadata', responseMetadata);
    const status = Number(res.headers['grpc-status']);
    const code = Number.isInteger(status) ? status : grpcStatusOfHttp(res.status);
    const details = detailsOf(res.headers['grpc-message']);
    call.emit('status', { code, details, metadata: responseMetadata });
    if (code !== GRPC_STATUS.OK) throw serviceError(grpc, code, details, responseMetadata);
    const body = onlyMessage(res.body);
    if (typeof body === 'string') throw serviceError(grpc, GRPC_STATUS.INTERNAL, body, responseMetadata);
    try {
      return method.responseDeserialize(body);
    } catch (err) {
      throw serviceError(grpc, GRPC_STATUS.INTERNAL, `response message parsing error: ${(err as Error).message}`, responseMetadata, err);
    }
  }
}

/** A gRPC message frame: uncompressed flag, length (big-endian), bytes. */
function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** The one message of a unary response, or what is wrong with the frames. */
function onlyMessage(body: Buffer): Buffer | string {
  if (body.length < 5) return body.length === 0 ? 'the response has no message' : 'the response ends inside a message frame';
  if (body[0] !== 0) return 'the response message is compressed, and the call accepted no compression';
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) return body.length < 5 + length ? 'the response ends inside a message frame' : 'a unary call got more than one response message';
  return body.subarray(5);
}

function headersOf(metadata: GrpcMetadataLike | undefined): Record<string, string | readonly string[]> {
  const out: Record<string, string | readonly string[]> = {};
  if (metadata === undefined) return out;
  for (const [name, value] of Object.entries(metadata.toHttp2Headers())) {
    if (value === undefined || RESERVED.has(name)) continue;
    out[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

/** The response's headers and trailers as grpc-js Metadata, without the protocol's own. */
function metadataOf(grpc: GrpcModule, headers: Record<string, string | string[]>): InstanceType<GrpcModule['Metadata']> {
  const own: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name === 'grpc-status' || name === 'grpc-message' || name === 'content-type' || name === 'content-length' || name.startsWith('grpc-')) continue;
    own[name] = value;
  }
  return grpc.Metadata.fromHttp2Headers(own);
}

/** grpc-message is percent-encoded (PROTOCOL-HTTP2.md). */
function detailsOf(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(', ') : value ?? '';
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function serviceError(grpc: GrpcModule, code: number, details: string, metadata?: unknown, cause?: unknown): GrpcServiceError {
  const error = new Error(`${code} ${grpcStatusName(code)}: ${details}`, cause === undefined ? undefined : { cause }) as GrpcServiceError;
  error.code = code;
  error.details = details;
  error.metadata = metadata ?? new grpc.Metadata();
  return error;
}
