import { readFileSync } from 'node:fs';
import { parseHostPort } from '../core/address.js';
import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';
import { OptionsError, parseOptions, type OptionProblem, type OptionSpec } from '../core/options.js';
import * as rules from '../core/options.js';
import type { EtcdConnection } from './etcd-client.js';

export interface EtcdRegistryOptions {
  /**
   * The members' client listeners: `host:port` (plain HTTP), `http://host:port` or
   * `https://host:port`. Requests go to one at a time and move on when it fails.
   */
  endpoints: readonly string[];
  /** Where tandem's keys live: `<prefix>/services/<service>/<id>`. Default `/tandem`. */
  prefix?: string;
  /** An etcd user (etcd's `auth enable`); its token is fetched and renewed by itself. */
  username?: string;
  password?: string;
  /** TLS to etcd: PEM text of the CA, and of a client certificate and key when etcd asks for one. */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Lease TTL when a registration asks for none (ms, rounded up to whole seconds). Default 10 s. */
  ttl?: number;
  /** Longest wait for one answer from a member before the next is asked (ms). Default 2 s. */
  requestTimeout?: number;
  /**
   * How often a process that watches checks that the member serving its watches still answers
   * and has a leader (ms); a frozen or cut-off member is left for the next. Default 2 s.
   */
  checkInterval?: number;
}

export const ETCD_DEFAULTS = Object.freeze({
  prefix: DISCOVERY_DEFAULTS.etcd.prefix,
  ttl: DISCOVERY_DEFAULTS.ttl,
  requestTimeout: DISCOVERY_DEFAULTS.etcd.requestTimeout,
  checkInterval: DISCOVERY_DEFAULTS.etcd.checkInterval,
});

export type ParsedEtcdOptions = Readonly<{ connection: EtcdConnection; prefix: string; ttl: number; checkInterval: number }>;

const TLS_SPEC: OptionSpec = { ca: rules.string, cert: rules.string, key: rules.string };
const SPEC: OptionSpec = {
  endpoints: (v, path, problems) => {
    rules.strings(v, path, problems);
    if (Array.isArray(v) && v.length === 0) problems.push({ path, message: 'expected at least one etcd member (host:port)' });
    if (Array.isArray(v)) v.forEach((e, i) => { if (typeof e === 'string' && e !== '' && typeof baseUrl(e) !== 'string') problems.push({ path: `${path}[${i}]`, message: (baseUrl(e) as { error: string }).error }); });
  },
  prefix: rules.pattern(/^\/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$/, 'a key prefix such as "/tandem"'),
  username: rules.string,
  password: rules.anyString,
  tls: rules.nested(TLS_SPEC),
  ttl: rules.duration(DISCOVERY_DEFAULTS.minTtl, DISCOVERY_DEFAULTS.maxTtl),
  requestTimeout: rules.duration(1),
  checkInterval: rules.duration(100),
};

/** Validates EtcdRegistry's options once; throws TANDEM_ERR_INVALID_ARGUMENT naming each problem. */
export function parseEtcdOptions(options: unknown): ParsedEtcdOptions {
  const o = parseOptions<EtcdRegistryOptions & typeof ETCD_DEFAULTS>('EtcdRegistry', options, SPEC, ETCD_DEFAULTS, ['endpoints'], (p) => {
    const problems: OptionProblem[] = [];
    if (p.password !== undefined && p.username === undefined) problems.push({ path: 'options.password', message: 'a password needs a username' });
    return problems;
  });
  // A bare host:port speaks TLS when TLS options are given.
  const endpoints = o.endpoints.map((e) => baseUrl(e, o.tls !== undefined) as string);
  return Object.freeze({
    connection: Object.freeze({ endpoints, username: o.username, password: o.password, tls: o.tls, requestTimeout: o.requestTimeout }),
    prefix: o.prefix, ttl: o.ttl, checkInterval: o.checkInterval,
  });
}

/** `host:port` → `http://host:port`; a URL must be http: or https: with nothing after the port. */
function baseUrl(endpoint: string, secure = false): string | { error: string } {
  if (/^https?:\/\//.test(endpoint)) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      return { error: `"${endpoint}" is not a URL` };
    }
    if (url.pathname !== '/' || url.search !== '' || url.username !== '') return { error: `"${endpoint}": give the scheme, host and port only` };
    return `${url.protocol}//${url.host}`;
  }
  const hp = parseHostPort(endpoint);
  if (typeof hp === 'string') return { error: `"${endpoint}" is not host:port (${hp})` };
  return `${secure ? 'https' : 'http'}://${hp.host.includes(':') ? `[${hp.host}]` : hp.host}:${hp.port}`;
}

/**
 * The registry URL of serve() and createClient(): `etcd://[user:password@]host:port[,host:port…][/prefix][?ca=…&cert=…&key=…]`.
 * `etcds://` (or any of ca, cert, key) speaks TLS; ca, cert and key name PEM files. The password
 * may also come from TANDEM_ETCD_PASSWORD, so it need not be written in a URL.
 */
export function etcdOptionsFromUrl(url: string, env: NodeJS.ProcessEnv = process.env): EtcdRegistryOptions {
  const where = `registry "${url.replace(/\/\/[^@/]*@/, '//…@')}"`;
  const m = /^(etcds?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)(\/[^?]*)?(?:\?(.*))?$/.exec(url);
  if (!m) throw new OptionsError(where, [{ path: 'registry', message: 'expected etcd://[user:password@]host:port[,host:port…][/prefix][?ca=file&cert=file&key=file]' }]);
  const [, scheme, user, password, hosts, prefix, query] = m;
  const params = new URLSearchParams(query ?? '');
  const problems: OptionProblem[] = [];
  for (const key of params.keys()) if (!['ca', 'cert', 'key'].includes(key)) problems.push({ path: `registry?${key}`, message: 'unknown parameter (known: ca, cert, key)' });
  const read = (key: string): string | undefined => {
    const file = params.get(key);
    if (file === null) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      problems.push({ path: `registry?${key}`, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      return undefined;
    }
  };
  const tls = { ca: read('ca'), cert: read('cert'), key: read('key') };
  if (problems.length > 0) throw new OptionsError(where, problems);
  const secure = scheme === 'etcds' || params.size > 0;
  const username = user === undefined || user === '' ? undefined : decodeURIComponent(user);
  const pass = password !== undefined ? decodeURIComponent(password) : username !== undefined ? env.TANDEM_ETCD_PASSWORD : undefined;
  return {
    endpoints: hosts!.split(',').map((h) => (secure ? `https://${h}` : h)),
    ...(prefix !== undefined && prefix !== '/' ? { prefix: prefix.replace(/\/$/, '') } : {}),
    ...(username !== undefined ? { username, password: pass } : {}),
    ...(secure ? { tls: Object.fromEntries(Object.entries(tls).filter(([, v]) => v !== undefined)) } : {}),
  };
}

export function isEtcdUrl(url: string): boolean {
  return /^etcds?:\/\//.test(url);
}
