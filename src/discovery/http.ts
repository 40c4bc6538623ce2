import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { ERROR_CATALOG, TandemError, type ErrorCode } from '../core/errors.js';
import { Latest } from './latest.js';
import { tokenFor } from '../core/secret.js';
import { DISCOVERY_DEFAULTS } from '../core/defaults/discovery.js';
import { realClock, type Clock, type TimerHandle } from '../core/clock.js';
import { AnswerWatch } from './answer-watch.js';
import type {
  InstanceState, KeepAlive, KeepAliveOptions, Lease, LeaseLoss, Registration, Registry, ServiceSnapshot, WatchOptions,
} from './types.js';

export interface HttpRegistryOptions {
  /** The gateway's admin listener, e.g. `http://127.0.0.1:9901`. */
  url: string;
  /**
   * The gateway's secret, sent as a bearer token. Unset: TANDEM_TOKEN, TANDEM_TOKEN_FILE, or
   * for a gateway on this host the secret it generated (core/secret.ts, docs/security.md).
   */
  token?: string;
  /** Longest wait for one request's answer (ms). Default 5 s. */
  timeout?: number;
  /** Times the keep-alive stream's beats and its answer check; tests pass a FakeClock. */
  clock?: Clock;
}

const PREFIX = '/registry/v1';
/** A watch stream silent for this long (the gateway pings every 15 s) is taken for dead. */
const WATCH_IDLE_TIMEOUT = 40_000;

/**
 * The embedded registry of a gateway, used from another process over its admin listener (see
 * docs/registry.md). Heartbeats ride one long-lived request per lease (keepAlive), so a beat
 * costs a few bytes, and the gateway notices at once when this process dies. Watches stream
 * snapshots as NDJSON and reconnect by themselves (with backoff) when the gateway restarts.
 */
export class HttpRegistry implements Registry {
  readonly url: URL;
  private readonly token: string | undefined;
  private readonly timeout: number;
  private readonly clock: Clock;
  private readonly agent: http.Agent;
  private readonly open = new Set<{ close(): void }>();

  constructor(options: HttpRegistryOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `registry url must be http: or https:, got ${options.url}`);
    this.token = options.token;
    this.timeout = options.timeout ?? DISCOVERY_DEFAULTS.requestTimeout;
    this.clock = options.clock ?? realClock;
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: 16 });
  }

  async register(registration: Registration): Promise<Lease> {
    const body = await this.call('POST', `${PREFIX}/instances`, registration) as { lease: { id: string; ttl: number }; instance: Lease['instance'] };
    return { id: body.lease.id, ttl: body.lease.ttl, instance: body.instance };
  }

  async heartbeat(leaseId: string): Promise<void> {
    await this.call('POST', `${PREFIX}/leases/${encodeURIComponent(leaseId)}/heartbeat`);
  }

  async setState(leaseId: string, state: InstanceState): Promise<void> {
    await this.call('PUT', `${PREFIX}/leases/${encodeURIComponent(leaseId)}/state`, { state });
  }

  async deregister(leaseId: string): Promise<void> {
    await this.call('DELETE', `${PREFIX}/leases/${encodeURIComponent(leaseId)}`);
  }

  async snapshot(service: string): Promise<ServiceSnapshot> {
    return await this.call('GET', `${PREFIX}/services/${encodeURIComponent(service)}`) as ServiceSnapshot;
  }

  /**
   * With `options.timeout`, the gateway must answer the stream's start, and (when it says it
   * acknowledges beats: `"ack":true` on its first line) every beat, within that time; a gateway
   * that is frozen or gone without closing the connection is `disconnected` then, not when TCP
   * gives up minutes later. The abandoned stream is ended cleanly before it is dropped, so a
   * gateway that wakes up does not read it as this process's crash.
   */
  keepAlive(leaseId: string, options: KeepAliveOptions): KeepAlive {
    let settle!: (loss: LeaseLoss) => void;
    const lost = new Promise<LeaseLoss>((resolve) => { settle = resolve; });
    let done = false;
    let acks = false;
    let beatTimer: TimerHandle | undefined;
    const beat = () => {
      if (done) return;
      req.write('\n');
      if (acks) watch?.sent();
      beatTimer = this.clock.setTimeout(beat, options.interval);
    };
    const finish = (loss: LeaseLoss | undefined) => {
      if (done) return;
      done = true;
      if (beatTimer !== undefined) this.clock.clearTimeout(beatTimer);
      watch?.stop();
      this.open.delete(handle);
      if (loss) settle(loss);
    };
    const endCleanly = () => {
      // A clean end of the body: the gateway lets the lease run out on its TTL.
      req.end();
      setTimeout(() => req.destroy(), 1000).unref();
    };
    const watch = options.timeout === undefined ? undefined : new AnswerWatch(this.clock, options.timeout, (waited) => {
      finish({ kind: 'disconnected', error: unavailable(this.url, `no answer on the keep-alive stream for ${Math.round(waited)} ms (frozen or gone)`), silentMs: waited });
      endCleanly();
    });
    const req = this.request('POST', `${PREFIX}/leases/${encodeURIComponent(leaseId)}/keepalive`, {
      agent: false, headers: { 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
    });
    const handle = {
      close: () => {
        if (done) return;
        finish(undefined);
        endCleanly();
      },
    };
    this.open.add(handle);
    req.on('socket', (socket) => socket.setNoDelay(true));
    req.on('response', (res) => {
      watch?.answered();
      if (res.statusCode !== 200) {
        void readBody(res).then((text) => {
          const err = errorOf(res.statusCode ?? 0, text);
          finish(err.code === 'TANDEM_ERR_LEASE_NOT_FOUND' ? { kind: 'expired' } : { kind: 'disconnected', error: err });
          req.destroy();
        });
        return;
      }
      let buffered = '';
      let first = true;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        watch?.answered();
        buffered += d;
        if (first && buffered.includes('\n')) {
          first = false;
          acks = buffered.includes('"ack":true');
        }
        if (buffered.includes('"expired"')) {
          finish({ kind: 'expired' });
          req.destroy();
        }
        const nl = buffered.lastIndexOf('\n');
        if (nl >= 0) buffered = buffered.slice(nl + 1);
      });
      res.on('close', () => finish({ kind: 'disconnected', error: unavailable(this.url, 'the keep-alive stream closed') }));
    });
    req.on('error', (err) => finish({ kind: 'disconnected', error: unavailable(this.url, err) }));
    req.on('close', () => finish({ kind: 'disconnected', error: unavailable(this.url, 'the keep-alive connection closed') }));
    req.flushHeaders();
    watch?.sent();
    beatTimer = this.clock.setTimeout(beat, options.interval);
    return { lost, close: () => { handle.close(); return Promise.resolve(); } };
  }

  watch(service: string, options: WatchOptions = {}): AsyncIterable<ServiceSnapshot> {
    let current: ClientRequest | undefined;
    let retry: NodeJS.Timeout | undefined;
    const handle = { close: () => latest.end() };
    const latest: Latest<ServiceSnapshot> = new Latest(() => {
      this.open.delete(handle);
      clearTimeout(retry);
      current?.destroy();
    }, options.signal);
    if (latest.isEnded) return latest;
    this.open.add(handle);
    let backoff = 100;
    const connect = () => {
      if (latest.isEnded) return;
      const req = this.request('GET', `${PREFIX}/services/${encodeURIComponent(service)}/watch`, { agent: false });
      current = req;
      const again = () => {
        if (latest.isEnded || current !== req) return;
        current = undefined;
        retry = setTimeout(connect, backoff);
        retry.unref();
        backoff = Math.min(backoff * 2, 2_000);
      };
      req.on('response', (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          res.on('end', again);
          return;
        }
        backoff = 100;
        let buffered = '';
        res.setEncoding('utf8');
        // The gateway pings a quiet stream every 15 s; silence for longer means a dead peer
        // (a host gone without closing the connection): reconnect.
        res.setTimeout(WATCH_IDLE_TIMEOUT, () => res.destroy());
        res.on('data', (d: string) => {
          buffered += d;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl);
            buffered = buffered.slice(nl + 1);
            if (line.trim() === '') continue;
            try {
              const parsed = JSON.parse(line) as ServiceSnapshot;
              if (parsed.kind === 'snapshot') latest.push(parsed);
            } catch { /* a torn line from a dying gateway: the reconnect brings a whole snapshot */ }
          }
        });
        res.on('close', again);
      });
      req.on('error', again);
      req.end();
    };
    connect();
    return latest;
  }

  close(): Promise<void> {
    for (const h of [...this.open]) h.close();
    this.agent.destroy();
    return Promise.resolve();
  }

  private request(method: string, path: string, extra: { agent?: http.Agent | false; headers?: Record<string, string> } = {}): ClientRequest {
    const headers: Record<string, string> = { ...extra.headers };
    const token = this.token ?? tokenFor(this.url);
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    const mod = this.url.protocol === 'https:' ? https : http;
    const base = this.url.pathname.replace(/\/$/, '');
    return mod.request({
      protocol: this.url.protocol, hostname: this.url.hostname.replace(/^\[|\]$/g, ''), port: this.url.port, method, path: `${base}${path}`,
      headers, agent: extra.agent ?? this.agent,
    });
  }

  /** One JSON request; rejects with the registry's TandemError, or TANDEM_ERR_REGISTRY_UNAVAILABLE. */
  private call(method: string, path: string, body?: unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      // Writes are JSON, even an empty one: the gateway takes no other kind (a browser cannot send it cross-site).
      const write = method !== 'GET' && method !== 'HEAD';
      const req = this.request(method, path, write ? { headers: { 'content-type': 'application/json', 'content-length': String(payload?.length ?? 0) } } : {});
      const timer = setTimeout(() => req.destroy(unavailable(this.url, `no answer within ${this.timeout} ms`)), this.timeout);
      timer.unref();
      req.on('response', (res) => {
        void readBody(res).then((text) => {
          clearTimeout(timer);
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            try {
              resolve(text.trim() === '' ? undefined : JSON.parse(text) as unknown);
            } catch {
              reject(unavailable(this.url, `the registry answered ${status} with a body that is not JSON`));
            }
          } else reject(errorOf(status, text));
        }, (err: unknown) => {
          clearTimeout(timer);
          reject(unavailable(this.url, err as Error));
        });
      });
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(unavailable(this.url, err));
      });
      req.end(payload);
    });
  }
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => { text += d; });
    res.on('end', () => resolve(text));
    res.on('error', reject);
  });
}

function errorOf(status: number, text: string): TandemError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    const code = body.error?.code;
    if (code !== undefined && code in ERROR_CATALOG) return new TandemError(code as ErrorCode, body.error?.message ?? code, { status });
  } catch { /* not ours */ }
  return new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `the registry answered ${status}: ${text.slice(0, 200)}`, { status: 502, retryable: true });
}

/** `cause`: the socket's error, or why the answer is unusable; one already made here is kept as it is. */
function unavailable(url: URL, cause: Error | string): TandemError {
  if (cause instanceof TandemError) return cause;
  if (typeof cause === 'string') return new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `registry ${url.origin}: ${cause}`, { retryable: true });
  const code = (cause as NodeJS.ErrnoException).code;
  return new TandemError('TANDEM_ERR_REGISTRY_UNAVAILABLE', `registry ${url.origin}: ${code ?? cause.message}`, { cause, retryable: true });
}
