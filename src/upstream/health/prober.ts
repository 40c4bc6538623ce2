import { Client } from 'undici';
import { realClock, type Clock, type TimerHandle } from '../../core/clock.js';
import { UPSTREAM_DEFAULTS } from '../../core/defaults/upstream.js';
import type { EndpointHealth } from './state.js';
import { GrpcHealthProbe } from './grpc-probe.js';

export interface ProbeSettings {
  /** Path to GET, e.g. /healthz. */
  path: string;
  intervalMs: number;
  /** Connect, and then the whole answer, must each come within this. */
  timeoutMs: number;
  /** A gRPC endpoint: checked through grpc.health.v1.Health/Check for this service ('' = the server) instead of `path`. */
  grpcService?: string;
}

/** Checks are spread ±10 % so the probes of many gateways do not arrive in lock-step. */
const JITTER = 0.1;

/**
 * Active health checks of one endpoint. Its own one-connection keep-alive Client, not the
 * endpoint's data pool: a pool saturated by real traffic must not fail (or delay) the check,
 * and a check must not take a connection from real traffic.
 *
 * A 5xx, a timeout or a connection error fails a check; any other answer passes, 404
 * included, so a backend without a health route is still checked for being up and answering.
 * A check starts one interval after the previous one started, or as soon as it finished when it
 * took longer: a frozen endpoint fails a check every timeout, not every timeout + interval.
 */
export class HealthProber {
  private readonly client: Client;
  /** For a gRPC endpoint, the check that replaces the GET. */
  private readonly grpc: GrpcHealthProbe | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(
    private readonly target: { readonly id: string; readonly health: EndpointHealth },
    private readonly settings: Readonly<ProbeSettings>,
    private readonly clock: Clock = realClock,
    private readonly random: () => number = Math.random,
  ) {
    this.client = new Client(`http://${target.id}`, {
      pipelining: 1,
      connect: { timeout: settings.timeoutMs },
      headersTimeout: settings.timeoutMs,
      bodyTimeout: settings.timeoutMs,
      // Kept open between checks (an interval or so), closed well before a server's idle timeout.
      keepAliveTimeout: Math.min(UPSTREAM_DEFAULTS.keepAliveTimeout, settings.intervalMs * 2),
      keepAliveMaxTimeout: UPSTREAM_DEFAULTS.keepAliveTimeout,
    });
    // A connection error reported outside a request (e.g. the endpoint closed an idle socket).
    this.client.on('connectionError', () => {});
    this.grpc = settings.grpcService === undefined ? undefined : new GrpcHealthProbe(`http://${target.id}`, settings.grpcService, settings.timeoutMs);
  }

  /** Schedules the first check within one interval, at a random point, so probes spread out. */
  start(): void {
    if (this.stopped || this.timer !== undefined) return;
    this.schedule(this.random() * this.settings.intervalMs);
  }

  /** Stops checking; a check under way is abandoned and its result ignored. */
  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.grpc?.close();
    return this.client.destroy().catch(() => {});
  }

  private schedule(delayMs: number): void {
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, delayMs);
  }

  private async check(): Promise<void> {
    const started = this.clock.now();
    const passed = await this.probe();
    if (this.stopped) return;
    const now = this.clock.now();
    if (passed) this.target.health.checkPassed(now);
    else this.target.health.checkFailed(now);
    const next = this.settings.intervalMs * (1 + JITTER * (2 * this.random() - 1));
    this.schedule(Math.max(0, started + next - now));
  }

  private async probe(): Promise<boolean> {
    if (this.grpc !== undefined) return this.grpc.check();
    try {
      const res = await this.client.request({
        method: 'GET',
        path: this.settings.path,
        headers: { 'user-agent': 'tandem-health-check', accept: '*/*' },
        headersTimeout: this.settings.timeoutMs,
        bodyTimeout: this.settings.timeoutMs,
      });
      await res.body.dump();
      return res.statusCode < 500;
    } catch {
      return false;
    }
  }
}
