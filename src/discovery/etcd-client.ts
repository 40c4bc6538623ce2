import { Agent, request } from 'undici';
import { TandemError } from '../core/errors.js';

/** Where and how to reach etcd (EtcdRegistryOptions, checked and filled in). */
export interface EtcdConnection {
  /** Base URLs of the members' client listeners, `http://host:port` or `https://host:port`. */
  readonly endpoints: readonly string[];
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** PEM text for TLS to etcd: the CA that signed the members' certificates, and a client certificate. */
  readonly tls: { readonly ca?: string; readonly cert?: string; readonly key?: string } | undefined;
  /** Longest wait for one answer (ms); past it the next member is asked. */
  readonly requestTimeout: number;
}

/** An etcd JSON-gateway error body: `{ error, message, code }` (unary) or `{ error: { grpc_code, message } }` (streams). */
interface GatewayError {
  error?: string | { grpc_code?: number; message?: string };
  message?: string;
  code?: number;
}

/** gRPC status codes the gateway reports, the ones that change what we do. */
const GRPC = { CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, PERMISSION_DENIED: 7, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/**
 * etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/lease/grant`, …) over undici. Every request goes
 * to the current member; a member that does not answer in time, refuses with "unavailable" or
 * has no leader (`hasleader` metadata: a member cut off from the quorum says so at once instead
 * of serving stale reads) is left for the next one, and the request is tried there. With a user
 * name, a token from /v3/auth/authenticate rides every request and is renewed when etcd says it
 * is no longer valid.
 */
export class EtcdClient {
  private current: number;
  private token: string | undefined;
  private authenticating: Promise<string> | undefined;
  private readonly agent: Agent;
  private readonly rotated = new Set<(current: number) => void>();

  constructor(readonly connection: EtcdConnection) {
    // Instances of one service spread over the members rather than all asking the first.
    this.current = Math.floor(Math.random() * connection.endpoints.length);
    const tls = connection.tls;
    this.agent = new Agent({ connect: tls === undefined ? {} : { ca: tls.ca, cert: tls.cert, key: tls.key }, keepAliveTimeout: 30_000 });
  }

  /** The member requests go to now. */
  get endpoint(): number {
    return this.current;
  }

  /** Calls `listener` when requests move to another member (the watches follow). */
  onRotate(listener: (current: number) => void): () => void {
    this.rotated.add(listener);
    return () => this.rotated.delete(listener);
  }

  /** Moves on from `from` (if requests still go there) to the next member. */
  rotate(from: number): void {
    if (this.current !== from || this.connection.endpoints.length === 1) return;
    this.current = (from + 1) % this.connection.endpoints.length;
    for (const l of [...this.rotated]) l(this.current);
  }

  /** One unary call; tried on each member in turn while they are unavailable. */
  async call<T>(path: string, body: object, timeout?: number): Promise<T> {
    let last: TandemError | undefined;
    for (let tries = 0; tries < this.connection.endpoints.length; tries++) {
      const at = this.current;
      try {
        return await this.callAt<T>(at, path, body, true, timeout);
      } catch (err) {
        if (!(err instanceof TandemError) || err.code !== 'TANDEM_ERR_REGISTRY_UNAVAILABLE') throw err;
        last = err;
        this.rotate(at);
      }
    }
    throw last!;
  }

  /** One unary call to member `at`, no failover (the watch's check of its own member). */
  async callAt<T>(at: number, path: string, body: object, reauth = true, timeout = this.connection.requestTimeout): Promise<T> {
    const headers = await this.headers(at, path !== '/v3/auth/authenticate');
    const base = this.connection.endpoints[at]!;
    let status: number;
    let text: string;
    try {
      const res = await request(`${base}${path}`, {
        method: 'POST', body: JSON.stringify(body), headers, dispatcher: this.agent,
        headersTimeout: timeout, bodyTimeout: timeout,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw unavailable(base, err as Error);
    }
    const parsed = parseJson(text);
    if (status === 200 && parsed !== undefined && !isError(parsed)) return parsed as T;
    const err = errorOf(base, status, parsed as GatewayError | undefined, text);
    if (err.code === 'TANDEM_ERR_UNAUTHORIZED' && reauth && this.connection.username !== undefined && !path.startsWith('/v3/auth/')) {
      this.token = undefined;
      return await this.callAt<T>(at, path, body, false, timeout);
    }
    throw err;
  }

  /**
   * Opens a streaming call (a watch) on the current member; its body is one JSON message per
   * line. The request body is sent whole: etcd's HTTP/1.1 gateway answers a stream only once
   * it has the whole request, so a stream cannot be written to after it opened.
   */
  async stream(path: string, body: object, signal: AbortSignal): Promise<{ at: number; lines: AsyncIterable<unknown> }> {
    const at = this.current;
    const headers = await this.headers(at);
    const base = this.connection.endpoints[at]!;
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${base}${path}`, {
        method: 'POST', body: JSON.stringify(body), headers, dispatcher: this.agent, signal,
        headersTimeout: this.connection.requestTimeout, bodyTimeout: 0,
      });
    } catch (err) {
      // A member that cannot be reached is left at once (not only at the next check).
      if (!signal.aborted) this.rotate(at);
      throw unavailable(base, err as Error);
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      throw errorOf(base, res.statusCode, parseJson(text) as GatewayError | undefined, text);
    }
    return { at, lines: ndjson(res.body) };
  }

  /** Forgets the token (etcd refused it): the next request authenticates again. */
  dropToken(): void {
    this.token = undefined;
  }

  async close(): Promise<void> {
    this.rotated.clear();
    await this.agent.destroy();
  }

  private async headers(at: number, authenticated = true): Promise<Record<string, string>> {
    // grpc-gateway passes Grpc-Metadata-* on as gRPC metadata: etcd then refuses requests and
    // ends watches on a member that has lost its leader.
    const headers: Record<string, string> = { 'content-type': 'application/json', 'grpc-metadata-hasleader': 'true' };
    if (authenticated && this.connection.username !== undefined) headers.authorization = await this.authToken(at);
    return headers;
  }

  private authToken(at: number): Promise<string> {
    if (this.token !== undefined) return Promise.resolve(this.token);
    this.authenticating ??= this.callAt<{ token: string }>(at, '/v3/auth/authenticate', { name: this.connection.username, password: this.connection.password ?? '' }, false)
      .then((r) => {
        this.token = r.token;
        return r.token;
      })
      .finally(() => { this.authenticating = undefined; });
    return this.authenticating;
  }
}

async function* ndjson(body: AsyncIterable<Buffer | string>): AsyncIterable<unknown> {
  let buffered = '';
  for await (const chunk of body) {
    buffered += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line !== '') yield parseJson(line);
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isError(v: unknown): boolean {
  return typeof v === 'object' && v !== null && 'error' in v;
}

/** The TandemError for an error answer of the gateway (or of a stream message). */
export function errorOf(base: string, status: number, body: GatewayError | undefined, text: string): TandemError {
  const inner = typeof body?.error === 'object' ? body.error : undefined;
  const code = inner?.grpc_code ?? body?.code;
  const message = inner?.message ?? body?.message ?? (typeof body?.error === 'string' ? body.error : text.slice(0, 200));
  if (code === GRPC.NOT_FOUND && /lease not found/.test(message)) {
    return new TandemError('TANDEM_ERR_LEASE_NOT_FOUND', 'lease not found: it expired or never existed — register again', { status: 404 });
  }
  if (code === GRPC.UNAUTHENTICATED || code === GRPC.PERMISSION_DENIED || /authentication failed|user name is empty|permission denied/.test(message)) {
    return new TandemError('TANDEM_ERR_UNAUTHORIZED', `etcd ${base} refused the request: ${message} — check the etcd user and password (docs/registry.md)`, { status: 401 });
  }
  if (code === GRPC.INVALID_ARGUMENT) return new TandemError('TANDEM_ERR_REGISTRY_INVALID', `etcd ${base}: ${message}`, { status: 400 });
  return new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `etcd ${base} answered ${status}: ${message}`, { retryable: true });
}

function unavailable(base: string, cause: Error): TandemError {
  if (cause instanceof TandemError) return cause;
  const code = (cause as NodeJS.ErrnoException).code;
  return new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `etcd ${base}: ${code ?? cause.message}`, { cause, retryable: true });
}

export { GRPC };
