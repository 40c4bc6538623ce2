import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HostPort } from '../core/address.js';
import { ConfigError } from '../config/problems.js';
import type { RegistryConfig } from '../config/types.js';
import type { ErrorCode } from '../core/errors.js';
import { cookieValue } from './headers.js';
import { isOwnAddress } from './own-address.js';
import {
  ensureLocalToken, isLoopbackHost, readTokenFile, sameSecret, tokenProblem, TOKEN_ENV, TOKEN_FILE_ENV, type Env,
} from '../core/secret.js';

/**
 * Who may use the admin listener (docs/security.md). In order, before any handler runs:
 * 1. /healthz, /readyz and /metrics are open to a GET from anyone who can reach the listener
 *    (load balancers, keepalived scripts and Prometheus carry no secret).
 * 2. Everything else answers only to a Host that is this listener's own address or a
 *    loopback name — a DNS-rebinding page names its own host and gets 403.
 * 3. A write (any method but GET/HEAD) is refused when a browser says it comes from another
 *    site (Origin, Sec-Fetch-Site), and when its body is not declared JSON (415): a
 *    cross-site form or `text/plain` fetch cannot pass without a CORS preflight, which this
 *    listener never grants.
 * 4. The secret: `Authorization: Bearer <secret>` for everything; for reads a browser may
 *    instead carry the cookie set by opening `/?token=<secret>` once (SameSite=Strict, so no
 *    other site's page sends it). Writes take the header only.
 */

export interface AdminSecret {
  readonly token: string;
  /** Where it came from, for the start-up log line. */
  readonly source: 'registry.token' | 'registry.tokenFile' | typeof TOKEN_ENV | typeof TOKEN_FILE_ENV | 'generated';
  /** The file it was read from or written to. */
  readonly file?: string;
}

/** The gateway's secret, by the precedence in the module comment of core/secret.ts. Throws ConfigError. */
export function adminSecret(registry: RegistryConfig, admin: HostPort, env: Env = process.env): AdminSecret {
  const fail = (path: string, message: string) => new ConfigError([{ path, message }]);
  if (registry.token !== undefined) return { token: registry.token, source: 'registry.token' };
  const fromFile = (path: string, key: string, source: AdminSecret['source']): AdminSecret => {
    try {
      return { token: readTokenFile(path), source, file: path };
    } catch (err) {
      throw fail(key, (err as Error).message);
    }
  };
  if (registry.tokenFile !== undefined) return fromFile(registry.tokenFile, 'registry.tokenFile', 'registry.tokenFile');
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv) {
    const problem = tokenProblem(fromEnv);
    if (problem) throw fail(TOKEN_ENV, `the environment variable ${problem}`);
    return { token: fromEnv, source: TOKEN_ENV };
  }
  const envFile = env[TOKEN_FILE_ENV];
  if (envFile) return fromFile(envFile, TOKEN_FILE_ENV, TOKEN_FILE_ENV);
  if (!isLoopbackHost(admin.host)) throw fail('registry.token', 'required when the admin listener is not on a loopback address');
  try {
    const { token, file } = ensureLocalToken(env);
    return { token, source: 'generated', file };
  } catch (err) {
    throw fail('registry.token', `no secret configured, and none could be kept for this user: ${(err as Error).message}`);
  }
}

export interface AdminGuardView {
  /** The secret in force (it can change on reload). */
  secret(): string;
  /** The listener's bound address. */
  address(): HostPort;
}

const OPEN_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
const JSON_TYPES = new Set(['application/json', 'application/x-ndjson']);

/** The dashboard's cookie, named after the port: two gateways on one host keep their own. */
export function cookieName(port: number): string {
  return `tandem-admin-${port}`;
}

/**
 * Answers and returns true when the request may not go on. `query` is the URL's search part
 * (with "?", or empty).
 */
export function refuseAdmin(view: AdminGuardView, req: IncomingMessage, res: ServerResponse, path: string, query: string): boolean {
  const read = req.method === 'GET' || req.method === 'HEAD';
  if (read && OPEN_PATHS.has(path)) return false;
  const self = view.address();
  const host = hostOf(req.headers.host);
  // A loopback name is always fine: only this host's processes can use it.
  if (host === undefined || !(isLoopbackHost(host) || isOwnAddress(host, self.host))) {
    return refuse(res, 403, 'TANDEM_ERR_FORBIDDEN', `Host "${String(req.headers.host ?? '').slice(0, 100)}" is not this admin listener's address: use ${self.host === '0.0.0.0' || self.host === '::' ? 'one of this host\'s addresses' : self.host} or a loopback name`);
  }
  if (!read) {
    const site = crossSite(req);
    if (site) return refuse(res, 403, 'TANDEM_ERR_FORBIDDEN', `a write from another site (${site}) is refused`);
    if ((req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH') && !JSON_TYPES.has(mediaType(req.headers['content-type']))) {
      return refuse(res, 415, 'TANDEM_ERR_FORBIDDEN', `writes are taken as application/json only (got ${req.headers['content-type'] === undefined ? 'no Content-Type' : `"${req.headers['content-type'].slice(0, 100)}"`})`);
    }
  }
  const secret = view.secret();
  const bearer = bearerOf(req.headers.authorization);
  if (bearer !== undefined) {
    if (sameSecret(bearer, secret)) return false;
    return unauthorized(res, 'wrong bearer token');
  }
  if (read) {
    const name = cookieName(self.port);
    if (path === '/' && query.startsWith('?')) {
      const given = new URLSearchParams(query).get('token');
      if (given !== null) {
        if (!sameSecret(given, secret)) return unauthorized(res, 'wrong token in the URL');
        // The secret leaves the address bar (and the history) at once; the cookie carries it.
        res.writeHead(303, {
          location: '/', 'cache-control': 'no-store', 'referrer-policy': 'no-referrer',
          'set-cookie': `${name}=${given}; Path=/; HttpOnly; SameSite=Strict`,
        }).end();
        return true;
      }
    }
    const cookie = cookieValue(req.headers.cookie, name);
    if (cookie !== undefined && sameSecret(cookie, secret)) return false;
  }
  return unauthorized(res, read
    ? 'this needs the gateway\'s secret: send Authorization: Bearer <secret>, or open /?token=<secret> once in a browser'
    : 'missing bearer token: send Authorization: Bearer <secret>');
}

function unauthorized(res: ServerResponse, message: string): true {
  return refuse(res, 401, 'TANDEM_ERR_UNAUTHORIZED', `${message} (docs/security.md says where the secret comes from)`, { 'www-authenticate': 'Bearer realm="tandem admin"' });
}

function refuse(res: ServerResponse, status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}): true {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
    .end(`${JSON.stringify({ error: { code, message } })}\n`);
  return true;
}

/** The host name of a Host header, lower case, without port or brackets; undefined when malformed. */
function hostOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 1 ? h.slice(1, end) : undefined;
  }
  const colon = h.indexOf(':');
  const name = colon >= 0 ? h.slice(0, colon) : h;
  return name === '' ? undefined : name.replace(/\.$/, '');
}

/** Why a browser's request comes from another site, or undefined. */
function crossSite(req: IncomingMessage): string | undefined {
  const fetchSite = req.headers['sec-fetch-site'];
  if (fetchSite !== undefined && fetchSite !== 'same-origin' && fetchSite !== 'none') return `Sec-Fetch-Site: ${fetchSite.slice(0, 40)}`;
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let originHost: string;
  try {
    originHost = new URL(origin).host;
  } catch {
    return `Origin: ${origin.slice(0, 100)}`;
  }
  return originHost === (req.headers.host ?? '').toLowerCase() ? undefined : `Origin: ${origin.slice(0, 100)}`;
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

function bearerOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] ?? '';
}
