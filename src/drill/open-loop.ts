import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool, type Dispatcher } from 'undici';

/**
 * Open-loop load for drills: request i is sent at t0 + i/rate whatever happened to the earlier
 * ones (a closed loop would slow down with the system under test and hide its stalls), and its
 * latency is measured from that scheduled time. Used by `npm run drill` and `tandem demo --drill`.
 */

export interface LoadRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadResult {
  /** The request's id (`x-drill-id`). */
  id: string;
  method: string;
  /** Scheduled send time, ms after the start; null when it never settled. */
  t: number | null;
  /** ms from the scheduled send time to the end of the response. */
  lat: number;
  /** HTTP status; 0 when there was no response. */
  status: number;
  /** What went wrong without a response: timeout, refused, reset, …; null when answered. */
  err: string | null;
  /** The value of the response header named by `OpenLoopOptions.tagHeader`, when asked for and present. */
  tag?: string;
  /** With `retryUnanswered`: the first attempt's error ('reset' or 'refused') when this result is the second attempt's. */
  firstErr?: string;
}

export interface OpenLoopOptions {
  /** e.g. http://127.0.0.1:8080 */
  origin: string;
  rate: number;
  durationS: number;
  /** The i-th request (its id is `${idPrefix}-${i}`, sent as `x-drill-id`). */
  request: (i: number, id: string) => LoadRequest;
  idPrefix: string;
  /** A request not answered within this is a failure ('timeout'). */
  timeoutMs: number;
  /** A response header to keep per result as `tag` (e.g. the header naming the backend that answered). */
  tagHeader?: string;
  /** Live counters: `outstanding` while it runs, `t0` once started. */
  state?: { outstanding: number; t0?: number };
  /**
   * Send a request once more when its connection was refused or reset before any response —
   * what a client of an idempotent API does (a GET; a POST with its idempotency key): a gateway
   * killed with the request in flight answers nothing at all. The second attempt goes
   * RESEND_AFTER_MS later on a new connection, and the result is its outcome, with `firstErr`.
   * Default false: every attempt's outcome is final.
   */
  retryUnanswered?: boolean;
}

export interface OpenLoopRun {
  results: LoadResult[];
  /** Largest delay between a request's scheduled and actual send (the generator's own lag). */
  maxSendLagMs: number;
  /** True when the safety stop ended the run with requests unsettled. */
  hardStopped: boolean;
}

/** retryUnanswered's wait before the second attempt. */
export const RESEND_AFTER_MS = 100;

/** Names an error without a response the way the drill tables do. */
export function classifyError(err: unknown): string {
  const e = err as { name?: string; code?: string } | undefined;
  if (!e) return 'error';
  if (e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  if (e.code === 'ECONNREFUSED') return 'refused';
  if (e.code === 'ECONNRESET' || e.code === 'UND_ERR_SOCKET' || e.code === 'EPIPE') return 'reset';
  return e.code ?? e.name ?? 'error';
}

/** Nearest-rank percentile `p` (0–100) of ascending `sorted`; null when empty. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function openLoop(options: OpenLoopOptions): Promise<OpenLoopRun> {
  const { origin, rate, durationS, timeoutMs, idPrefix } = options;
  const tagHeader = options.tagHeader?.toLowerCase();
  const state = options.state ?? { outstanding: 0 };
  const pool = new Pool(origin, {
    connections: 8192,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    connect: { timeout: timeoutMs },
  });
  const total = Math.round(rate * durationS);
  const results: Array<LoadResult | undefined> = new Array<LoadResult | undefined>(total);
  let maxSendLagMs = 0;
  let settled = 0;
  let resolveAll!: () => void;
  const all = new Promise<void>((resolve) => { resolveAll = resolve; });
  const t0 = performance.now();
  state.t0 = t0;

  const fire = (i: number, sched: number) => {
    const id = `${idPrefix}-${i}`;
    const lag = performance.now() - sched;
    if (lag > maxSendLagMs) maxSendLagMs = lag;
    state.outstanding++;
    const req = options.request(i, id);
    let firstErr: string | undefined;
    const done = (status: number, err: unknown, tag?: string) => {
      results[i] = { id, method: req.method, t: Math.round(sched - t0), lat: performance.now() - sched, status, err: err ? classifyError(err) : null };
      if (tag !== undefined) results[i]!.tag = tag;
      if (firstErr !== undefined) results[i]!.firstErr = firstErr;
      state.outstanding--;
      if (++settled === total) resolveAll();
    };
    const send = (via: Dispatcher): Promise<void> => via.request({
      path: req.path,
      method: req.method as 'GET',
      headers: { ...req.headers, 'x-drill-id': id },
      body: req.body,
      signal: AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs - (performance.now() - sched)))),
    }).then(
      (res) => {
        const tag = tagHeader === undefined ? undefined : res.headers[tagHeader];
        const value = typeof tag === 'string' ? tag : undefined;
        return res.body.text().then(() => done(res.statusCode, null, value), (e: unknown) => done(res.statusCode, e, value));
      },
      (e: unknown) => {
        const kind = classifyError(e);
        if (options.retryUnanswered === true && firstErr === undefined && (kind === 'reset' || kind === 'refused')) {
          firstErr = kind;
          // On a connection of its own — the pool's others may be as dead as the one that failed —
          // and after a usual retry's backoff: a connection opened in the instant of a SIGKILL is
          // accepted by the dying process's listener and reset with it.
          const fresh = new Client(origin, { connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
          return sleep(RESEND_AFTER_MS).then(() => send(fresh)).finally(() => fresh.destroy().catch(() => {}));
        }
        done(0, e);
      },
    );
    void send(pool);
  };

  let i = 0;
  const tick = () => {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
    while (i < due) {
      fire(i, t0 + (i * 1000) / rate);
      i++;
    }
    if (i < total) setTimeout(tick, 1);
  };
  tick();
  // Bounded: every request has its own timeout; the extra margin only guards against a bug.
  let hardTimer: NodeJS.Timeout | undefined;
  const hardStop = new Promise<'hard-stop'>((resolve) => {
    hardTimer = setTimeout(() => resolve('hard-stop'), durationS * 1000 + timeoutMs + 5000);
    hardTimer.unref();
  });
  return Promise.race([all, hardStop]).then(async (how) => {
    clearTimeout(hardTimer);
    await pool.destroy().catch(() => {});
    const out = results.map((r, k) => r ?? { id: `${idPrefix}-${k}`, method: '?', t: null, lat: timeoutMs, status: 0, err: 'unsettled' });
    return { results: out, maxSendLagMs, hardStopped: how === 'hard-stop' };
  });
}
