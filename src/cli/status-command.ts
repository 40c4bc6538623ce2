import { tokenFor, TOKEN_ENV, TOKEN_FILE_ENV } from '../core/secret.js';
import type { DashboardSnapshot, Departure, EndpointView, ServiceView, TimelineEvent } from '../gateway/dashboard-feed.js';
import type { HealthReason } from '../gateway/dashboard-health.js';
import { TandemError } from '../core/errors.js';

/**
 * `tandem status`: the dashboard's picture in the terminal — the gateway's health and why,
 * its version, each service with its instances (state, req/s, errors, p99, latency estimate,
 * in flight) and those that left lately with why, and the recent events — read from the admin
 * listener's /admin/dashboard once a second.
 */
export interface StatusOptions {
  admin: string;
  once: boolean;
  intervalMs: number;
  out?: NodeJS.WriteStream | NodeJS.WritableStream;
}

export async function runStatus(options: StatusOptions): Promise<number> {
  const out = options.out ?? process.stdout;
  const tty = 'isTTY' in out && out.isTTY === true;
  const base = options.admin.replace(/\/+$/, '');
  const url = `${/^https?:\/\//.test(base) ? base : `http://${base}`}/admin/dashboard`;
  /** When the gateway stopped answering (refreshing mode), for "disconnected since". */
  let downSince: Date | undefined;
  for (;;) {
    let text: string;
    let ok = true;
    try {
      // Read each time: a gateway started after this command may have made the local secret.
      const token = tokenFor(new URL(url));
      const res = await fetch(url, { signal: AbortSignal.timeout(3000), headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
      if (res.status === 401) throw new TandemError('TANDEM_ERR_UNAUTHORIZED', `the gateway wants its secret: set ${TOKEN_ENV} (or ${TOKEN_FILE_ENV}) to the gateway's registry.token${token === undefined ? '' : ' — the one sent was refused'}`);
      // Anything but the admin listener's JSON: most likely the public listener (or another server) was named.
      const json = res.headers.get('content-type')?.includes('application/json') === true;
      if (res.status !== 200 || !json) throw new TandemError('TANDEM_ERR_CLI', `${url} answered ${res.status}${json && res.status !== 404 ? '' : ` ${res.headers.get('content-type') ?? 'without a type'} — is ${new URL(url).origin} a tandem admin listener? (the config's \`admin\`, not \`listen\`)`}`);
      const snap = (await res.json()) as DashboardSnapshot;
      const rows = tty && !options.once ? (process.stdout.rows ?? 40) : Infinity;
      text = render(snap, { color: tty, maxRows: rows });
      downSince = undefined;
    } catch (err) {
      ok = false;
      downSince ??= new Date();
      const since = options.once ? '' : `disconnected since ${downSince.toTimeString().slice(0, 8)}, retrying — `;
      text = `tandem status: ${since}${unreachable(url, err as Error)}\n`;
    }
    if (options.once) {
      (ok ? out : process.stderr).write(text);
      return ok ? 0 : 1;
    }
    out.write(tty ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
  }
}

/** What to do about a gateway that cannot be read, in words a person can act on. */
export function unreachable(url: string, err: Error): string {
  const where = new URL(url).origin;
  const code = (err.cause as NodeJS.ErrnoException | undefined)?.code ?? (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return `no gateway answers at ${where} (connection refused): is it running? Start one with \`tandem gateway --config FILE\` (or \`tandem demo\`), or point --admin at its admin listener (the config's \`admin\`).`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve the host of ${where}: check --admin.`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${where} cannot be reached from here (${code}): check --admin and the network.`;
    case 'ECONNRESET':
      return `${where} closed the connection: is that a tandem admin listener? (the config's \`admin\`, not \`listen\`)`;
  }
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `${where} did not answer within 3 s: the gateway may be overloaded or frozen (SIGSTOP?).`;
  return `cannot read ${url}: ${err.message}`;
}

const STATE_COLOR: Record<string, string> = { healthy: '32', probation: '36', ejected: '31', unhealthy: '31', draining: '33' };
const HEALTH_COLOR: Record<string, string> = { ok: '32', degraded: '31', draining: '33' };
const CAUSE_TEXT: Record<string, string> = { drained: 'drained', deregistered: 'deregistered', 'connection-lost': 'connection lost', 'lease-expired': 'lease expired' };

interface RenderOptions { color: boolean; maxRows: number }

/** The whole picture as text. With a row budget (a terminal), healthy instances are summarized first. */
export function render(snap: DashboardSnapshot, opts: RenderOptions = { color: false, maxRows: Infinity }): string {
  const c = (code: string, s: string) => (opts.color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const g = snap.gateway;
  const lines: string[] = [];
  lines.push(`${c('1', `tandem ${g.version}`)}  ${c(HEALTH_COLOR[g.health] ?? '33', g.health)}  listen ${g.listen}  up ${g.uptimeSeconds} s  ${fmtRate(g.rate)} req/s  errors ${fmtPct(g.errorRate)}  in flight ${g.inflight}  sampled ${snap.sampledAt.slice(11, 19)}`);
  const why = reasonLines(g.reasons ?? []);
  for (const line of why) lines.push(`  ${c(HEALTH_COLOR[g.health] ?? '33', '!')} ${line}`);
  const pair = gatewaysLine(snap.gateways ?? []);
  if (pair !== undefined) lines.push(`  ${pair}`);
  const events = snap.timeline.slice(-8).reverse();
  const instances = snap.services.reduce((n, s) => n + s.endpoints.length, 0);
  const departed = snap.services.reduce((n, s) => n + (s.departed?.length ?? 0), 0);
  // Rows for the instance tables: what is left after headers, reasons, service lines, departures and events.
  const budget = opts.maxRows - 2 - why.length - (pair === undefined ? 0 : 1) - snap.services.length * 3 - departed - (events.length + 2);
  for (const s of snap.services) {
    const room = Math.max(1, Math.floor(budget * (s.endpoints.length / Math.max(1, instances))));
    lines.push('', ...serviceLines(s, Number.isFinite(opts.maxRows) ? room : Infinity, c));
  }
  lines.push('');
  lines.push(c('1', 'recent events'));
  for (const ev of events) lines.push(`  ${ev.time.slice(11, 19)}  ${pad(ev.kind, 8)} ${where(ev)}${ev.text}`);
  return `${lines.join('\n')}\n`;
}

/** "gateways: 10.0.0.1:9901 (this) ready, holds the address · 10.0.0.2:9901 not answering"; none for a gateway alone. */
function gatewaysLine(list: NonNullable<DashboardSnapshot['gateways']>): string | undefined {
  if (list.length <= 1 && !list.some((g) => g.holdsAddress !== null)) return undefined;
  const word = (g: (typeof list)[number]) => (g.error !== undefined ? `not answering (${g.error})` : g.ready === null ? 'asking' : g.ready ? 'ready' : 'not ready');
  return `gateways: ${list.map((g) => `${g.address}${g.self ? ' (this)' : ''} ${word(g)}${g.holdsAddress ? ', holds the address' : ''}`).join(' · ')}`;
}

/** A service's line, its instances (the unhealthy first, at most `room`) and those that left lately. */
function serviceLines(s: ServiceView, room: number, c: (code: string, s: string) => string): string[] {
  const lines = [
    `${c('1', s.name)}${s.panic ? ` ${c('31', 'PANIC')}` : ''}  ${fmtRate(s.rate)} req/s  errors ${fmtPct(s.errorRate)}  p99 ${fmtMs(s.p99Ms)}  active ${s.active}  retries ${fmtRate(s.retriesPerSecond)}/s  ${counts(s)}`,
    `  ${pad('STATE', 12)} ${pad('INSTANCE', 24)} ${lpad('REQ/S', 8)} ${lpad('ERRORS', 7)} ${lpad('P99', 8)} ${lpad('ESTIMATE', 9)} ${lpad('IN FLIGHT', 9)}`,
  ];
  const ordered = [...s.endpoints].sort((a, b) => Number(a.state === 'healthy') - Number(b.state === 'healthy'));
  const shown = ordered.slice(0, room);
  for (const e of shown) lines.push(`  ${c(STATE_COLOR[e.state] ?? '0', pad(e.state, 12))} ${pad(e.id, 24)} ${lpad(fmtRate(e.rate), 8)} ${lpad(fmtPct(e.errorRate), 7)} ${lpad(fmtMs(e.p99Ms), 8)} ${lpad(fmtMs(e.latencyEstimateMs), 9)} ${lpad(String(e.inflight), 9)}${ejected(e)}`);
  if (shown.length < ordered.length) lines.push(c('2', `  … ${ordered.length - shown.length} more (${ordered.slice(shown.length).every((e) => e.state === 'healthy') ? 'all healthy' : 'see the dashboard'})`));
  for (const d of s.departed ?? []) lines.push(c('2', `  ${pad('left', 12)} ${pad(d.id, 24)} ${left(d)}`));
  return lines;
}

/** One line per service with problems ("shop: no eligible instance (…), in panic: …"), the gateway's own first. */
function reasonLines(reasons: readonly HealthReason[]): string[] {
  const byService = new Map<string, string[]>();
  for (const r of reasons) byService.set(r.service ?? '', [...(byService.get(r.service ?? '') ?? []), r.text]);
  return [...byService].map(([service, texts]) => `${service === '' ? '' : `${service}: `}${texts.join(', ')}`);
}

const left = (d: Departure) => `${CAUSE_TEXT[d.cause] ?? d.cause} at ${d.time.slice(11, 19)} (${d.instance})`;

function counts(s: ServiceView): string {
  const m = new Map<string, number>();
  for (const e of s.endpoints) m.set(e.state, (m.get(e.state) ?? 0) + 1);
  return [...m].sort().map(([k, v]) => `${v} ${k}`).join(', ') || 'no instances';
}

const where = (ev: TimelineEvent) => (ev.service === undefined ? '' : `${ev.service}${ev.endpoint === undefined ? '' : ` ${ev.endpoint}`}: `);
const ejected = (e: EndpointView) => (e.ejectedUntil === undefined ? '' : `  until ${e.ejectedUntil.slice(11, 19)}`);
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
const fmtRate = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const fmtPct = (n: number) => (n === 0 ? '0' : `${(n * 100).toFixed(1)}%`);
const fmtMs = (n: number | null) => (n === null ? '-' : n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n >= 10 ? n.toFixed(0) : n.toFixed(1)} ms`);
