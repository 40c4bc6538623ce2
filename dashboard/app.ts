// The tandem dashboard: one page, no framework, no CDN. It reads /admin/stream (server-sent
// events: the services' last minutes once, then a snapshot a second and each timeline event
// as it happens) and updates the page in place — a burst of messages is drawn once per
// animation frame, table cells are written only when their text changes, charts only when a
// point arrives — so 500 instances stay cheap to show.
import { $, attr, CAUSE_TEXT, el, fmt, set } from './dom.js';
import { Series } from './chart.js';
import { Link } from './link.js';
import { renderGateways } from './gateways.js';
import { renderCaches } from './caches.js';
import { ServiceBox, type Filter } from './service-box.js';
import type { HealthReason, HistoryMessage, Snapshot, TimelineEvent } from './types.js';

const services = new Map<string, ServiceBox>();
const series = new Map<string, Series>();
let errorShare: number | undefined;
let latest: Snapshot | undefined;
let pending = false;
/** The newest timeline event shown; events are numbered per gateway process. */
let lastSeq = 0;
const stats = { renders: 0, lastRenderMs: 0, maxRenderMs: 0, events: 0 };
(window as unknown as { __tandemDashboard: typeof stats }).__tandemDashboard = stats;

function filterNow(): Filter {
  const problems = $<HTMLInputElement>('only-problems').checked;
  const text = $<HTMLInputElement>('search').value.trim();
  return (id, state) => (!problems || state !== 'healthy') && (text === '' || id.includes(text));
}

function seriesOf(name: string): Series {
  let s = series.get(name);
  if (!s) {
    s = new Series();
    series.set(name, s);
  }
  return s;
}

function render(): void {
  pending = false;
  badge();
  const snap = latest;
  if (!snap) return;
  const t0 = performance.now();
  const g = snap.gateway;
  set($('gw-version'), `tandem ${g.version}`);
  renderGateways(snap.gateways ?? []);
  renderCaches(snap.caches ?? []);
  set($('gw-facts'), `listen ${g.listen || '–'} · pid ${g.pid} · up ${fmt.uptime(g.uptimeSeconds)} · ${fmt.rate(g.rate)} req/s · errors ${fmt.pct(g.errorRate)} · in flight ${g.inflight} · ${fmt.bytes(g.rssBytes)}`);
  const filter = filterNow();
  const list = $('services');
  const names = new Set<string>();
  let instances = 0;
  let shown = 0;
  for (const s of snap.services) {
    names.add(s.name);
    let box = services.get(s.name);
    if (!box) {
      box = new ServiceBox(s.name);
      if (errorShare !== undefined) box.setErrorThreshold(errorShare);
      services.set(s.name, box);
      list.append(box.root);
    }
    shown += box.update(s, (g.reasons ?? []).filter((r) => r.service === s.name), filter);
    const points = seriesOf(s.name);
    if (s.point) points.add(s.point);
    box.drawCharts(points);
    instances += s.endpoints.length;
  }
  for (const [name, box] of services) {
    if (!names.has(name)) {
      box.root.remove();
      services.delete(name);
      series.delete(name);
    }
  }
  set($('shown'), `${shown} of ${instances} instances in ${snap.services.length} services`);
  for (const ev of snap.timeline) addEvent(ev);
  set($('sampled'), `sampled ${fmt.time(snap.sampledAt)}`);
  stats.renders++;
  stats.lastRenderMs = performance.now() - t0;
  stats.maxRenderMs = Math.max(stats.maxRenderMs, stats.lastRenderMs);
  document.body.dataset.renders = String(stats.renders);
}

/** The one word for the cluster and why: the gateway's own, or `disconnected` while the stream is down. */
function badge(): void {
  const state = link.current;
  const health = state.up ? latest?.gateway.health ?? 'connecting' : state.attempts === 0 && state.lastData === undefined ? 'connecting' : 'disconnected';
  const pill = $('gw-health');
  set(pill, health);
  attr(pill, 'data-health', health);
  attr(document.body, 'data-health', health);
  document.body.classList.toggle('stale', health === 'disconnected');
  const why = $('gw-reason');
  if (!state.up) {
    const last = state.lastData === undefined ? '' : ` · last data ${fmt.time(state.lastData)}`;
    set(why, health === 'connecting' ? '' : `since ${fmt.time(state.since)}${last} · ${state.why} · retrying (${state.attempts} ${state.attempts === 1 ? 'attempt' : 'attempts'})`);
  } else set(why, reasonText(latest?.gateway.reasons ?? []));
}

/** "shop: no eligible instance (…), in panic: … · orders: 12 % of …", the gateway's own first. */
function reasonText(reasons: readonly HealthReason[]): string {
  const byService = new Map<string, string[]>();
  for (const r of reasons) {
    const key = r.service ?? '';
    byService.set(key, [...(byService.get(key) ?? []), r.text]);
  }
  const parts = [...byService].map(([service, texts]) => `${service === '' ? '' : `${service}: `}${texts.join(', ')}`);
  return parts.length > 4 ? `${parts.slice(0, 3).join(' · ')} · and ${parts.length - 3} more services` : parts.join(' · ');
}

function schedule(): void {
  if (!pending) {
    pending = true;
    requestAnimationFrame(render);
  }
}

const TIMELINE_MAX = 200;

function addEvent(ev: TimelineEvent): void {
  if (ev.seq <= lastSeq) return;
  lastSeq = ev.seq;
  stats.events++;
  const li = el('li', `k-${ev.kind}`);
  li.dataset.kind = ev.kind;
  const kind = el('span', 'kind', ev.kind);
  if (ev.cause !== undefined) {
    li.dataset.cause = ev.cause;
    kind.textContent = `${ev.kind} · ${CAUSE_TEXT[ev.cause] ?? ev.cause}`;
  }
  li.append(el('time', undefined, fmt.time(ev.time)), kind, el('span', 'where', [ev.service, ev.endpoint].filter(Boolean).join(' ')), el('span', 'text', ev.text));
  const ul = $('timeline');
  ul.prepend(li);
  while (ul.childElementCount > TIMELINE_MAX) ul.lastElementChild?.remove();
}

function history(h: HistoryMessage): void {
  if (h.errorRule) {
    errorShare = h.errorRule.share;
    for (const box of services.values()) box.setErrorThreshold(errorShare);
  }
  // A new stream (a reload, a reconnect): the gateway's history replaces what the page had.
  series.clear();
  for (const s of h.services) seriesOf(s.service).replace(s);
  for (const [name, box] of services) box.drawCharts(seriesOf(name), true);
}

const link = new Link('/admin/stream', {
  history,
  snapshot: (s) => {
    // Another gateway process (a restart): its events are numbered from 1 again.
    if (latest && (s.gateway.pid !== latest.gateway.pid || s.gateway.uptimeSeconds < latest.gateway.uptimeSeconds)) {
      lastSeq = 0;
      $('timeline').replaceChildren();
    }
    latest = s;
    schedule();
  },
  event: addEvent,
  change: () => schedule(),
});

$('only-problems').addEventListener('change', schedule);
$('search').addEventListener('input', schedule);
link.start();
// The "since" and attempt count move while the stream is down, with no message to trigger a render.
window.setInterval(() => { if (!link.current.up) schedule(); }, 1000);
