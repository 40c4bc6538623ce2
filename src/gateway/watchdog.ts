import { request, Agent } from 'node:http';
import type { Clock, TimerHandle } from '../core/clock.js';
import { TandemError } from '../core/errors.js';

/**
 * The watchdog of a gateway behind a virtual address (`tandem watchdog`, docs/deployment.md):
 * a small process beside the gateway that asks its /readyz every `intervalMs` and writes
 * keepalived's track file — 1 when the gateway stopped answering, 0 when it answers again — so
 * that keepalived moves the address within `deadAfterMs` of a freeze instead of its script
 * checks' whole seconds (keepalived runs a vrrp_script at most once a second, and a frozen
 * process passes `kill -0`). keepalived reads a track file by inotify: the write is the move.
 *
 * What counts:
 * - no answer for `deadAfterMs` since the last one (frozen: SIGSTOP, swapping, a stuck loop) → 1;
 * - the connection refused (nobody listens: the process died) → 1 at once;
 * - 503 from /readyz (not ready, draining) → 1 at once;
 * - `rise` answers of 200 in a row after a 1 → 0. The first verdict after start needs one: a
 *   watchdog restarted beside a serving gateway must not move the address.
 * Every other error (a reset, a timeout of one probe) only waits for the next probe: the
 * deadline above decides. A late tick of the watchdog itself (its own process starved) judges
 * nothing: the answer may be waiting behind it in the event loop.
 */
export type Verdict = 0 | 1;
export type ProbeResult = 'ready' | 'not-ready' | 'refused' | 'error';

export interface WatchdogOptions {
  clock: Clock;
  /** One probe; aborted (`signal`) once it is older than deadAfterMs. */
  probe(signal: AbortSignal): Promise<ProbeResult>;
  /** Records the verdict (the track file); called on changes only. */
  write(verdict: Verdict, reason: string): void;
  intervalMs: number;
  deadAfterMs: number;
  rise: number;
}

export const WATCHDOG_DEFAULTS = { intervalMs: 100, deadAfterMs: 500, rise: 3 } as const;

export class Watchdog {
  private verdict: Verdict | undefined = undefined;
  private lastAnswerAt: number;
  private okInARow = 0;
  private inFlight: AbortController | undefined = undefined;
  private inFlightSince = 0;
  private timer: TimerHandle | undefined = undefined;
  private dueAt = 0;
  private stopped = false;

  constructor(private readonly o: WatchdogOptions) {
    if (!(o.intervalMs > 0) || !(o.deadAfterMs > o.intervalMs)) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `the watchdog wants 0 < interval < dead-after, got ${o.intervalMs} and ${o.deadAfterMs} ms`);
    if (!Number.isInteger(o.rise) || o.rise < 1) throw new TandemError('TANDEM_ERR_INVALID_ARGUMENT', `rise wants a whole number ≥ 1, got ${o.rise}`);
    this.lastAnswerAt = o.clock.now();
  }

  get current(): Verdict | undefined {
    return this.verdict;
  }

  start(): void {
    this.tick();
  }

  stop(): void {
    this.stopped = true;
    this.inFlight?.abort();
    if (this.timer !== undefined) this.o.clock.clearTimeout(this.timer);
  }

  private tick(): void {
    if (this.stopped) return;
    const now = this.o.clock.now();
    const late = this.dueAt !== 0 && now - this.dueAt > this.o.intervalMs;
    if (this.inFlight !== undefined && now - this.inFlightSince >= this.o.deadAfterMs) this.inFlight.abort();
    if (!late && now - this.lastAnswerAt >= this.o.deadAfterMs) this.decide(1, `no answer for ${Math.round(now - this.lastAnswerAt)} ms`);
    if (this.inFlight === undefined) this.send(now);
    this.dueAt = now + this.o.intervalMs;
    this.timer = this.o.clock.setTimeout(() => this.tick(), this.o.intervalMs, true);
  }

  private send(now: number): void {
    const controller = new AbortController();
    this.inFlight = controller;
    this.inFlightSince = now;
    this.o.probe(controller.signal).catch((): ProbeResult => 'error').then((result) => {
      if (this.inFlight === controller) this.inFlight = undefined;
      if (this.stopped || controller.signal.aborted) return;
      this.answer(result);
    });
  }

  private answer(result: ProbeResult): void {
    if (result === 'error') return;
    if (result === 'refused') {
      this.okInARow = 0;
      this.decide(1, 'connection refused');
      return;
    }
    this.lastAnswerAt = this.o.clock.now();
    if (result === 'not-ready') {
      this.okInARow = 0;
      this.decide(1, 'not ready');
      return;
    }
    this.okInARow++;
    if (this.verdict === undefined || this.okInARow >= this.o.rise) this.decide(0, 'ready');
  }

  private decide(verdict: Verdict, reason: string): void {
    if (verdict === 1) this.okInARow = 0;
    if (this.verdict === verdict) return;
    this.verdict = verdict;
    this.o.write(verdict, reason);
  }
}

/** A probe of `url` (/readyz) over one kept-alive connection: 200 ready, 503 not ready. */
export function readyzProbe(url: string): (signal: AbortSignal) => Promise<ProbeResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return (signal) => new Promise((resolve) => {
    const req = request(url, { agent, signal }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? 'ready' : 'not-ready'));
      res.on('error', () => resolve('error'));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'refused' : 'error'));
    req.end();
  });
}
