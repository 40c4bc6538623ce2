// The tandem dashboard: one page, no framework, no CDN. It reads /admin/stream (server-sent
// events: a snapshot a second and each timeline event as it happens) and updates a table row
// per endpoint in place — cells are written only when their text changes, and a burst of
// messages is drawn once per animation frame — so 500 instances stay cheap to show.

interface EndpointView {
  id: string; state: string; rate: number; errorRate: number; p99Ms: number | null;
  latencyEstimateMs: number; inflight: number; weight: number; ejectedUntil?: string;
}
interface ServiceView {
  name: string; panic: boolean; rate: number; errorRate: number; p99Ms: number | null;
  active: number; retriesPerSecond: number; budgetExhausted: number; endpoints: EndpointView[];
}
interface TimelineEvent { seq: number; time: string; kind: string; service?: string; endpoint?: string; text: string }
interface Snapshot {
  gateway: { version: string; pid: number; uptimeSeconds: number; health: string; inflight: number; listen: string; rssBytes: number; rate: number; errorRate: number };
  services: ServiceView[];
  timeline: TimelineEvent[];
  sampledAt: string;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Writes text only when it changed: no layout work for the cells that did not. */
function set(node: HTMLElement, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

const fmt = {
  rate: (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1)),
  pct: (n: number) => (n === 0 ? '0' : n < 0.001 ? '<0.1%' : `${(n * 100).toFixed(1)}%`),
  ms: (n: number | null) => (n === null ? '–' : n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n >= 10 ? n.toFixed(0) : n.toFixed(1)} ms`),
  bytes: (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`,
  uptime: (s: number) => (s < 120 ? `${s} s` : s < 7200 ? `${Math.floor(s / 60)} min` : `${(s / 3600).toFixed(1)} h`),
  time: (iso: string) => new Date(iso).toLocaleTimeString([], { hour12: false }),
};

const CELLS = ['state', 'id', 'rate', 'err', 'p99', 'est', 'inflight', 'weight'] as const;
type Cell = (typeof CELLS)[number];

class Row {
  readonly tr = el('tr');
  readonly cells = {} as Record<Cell, HTMLTableCellElement>;
  state = '';
  constructor(readonly id: string) {
    for (const c of CELLS) {
      const td = el('td', `c-${c}`);
      this.cells[c] = td;
      this.tr.append(td);
    }
    this.tr.dataset.endpoint = id;
    set(this.cells.id, id);
  }
  update(e: EndpointView): void {
    if (e.state !== this.state) {
      this.state = e.state;
      this.tr.dataset.state = e.state;
      this.tr.className = `s-${e.state}`;
    }
    set(this.cells.state, e.state === 'ejected' && e.ejectedUntil ? `ejected until ${fmt.time(e.ejectedUntil)}` : e.state);
    set(this.cells.rate, fmt.rate(e.rate));
    set(this.cells.err, fmt.pct(e.errorRate));
    set(this.cells.p99, fmt.ms(e.p99Ms));
    set(this.cells.est, fmt.ms(e.latencyEstimateMs));
    set(this.cells.inflight, String(e.inflight));
    set(this.cells.weight, String(e.weight));
    this.cells.err.classList.toggle('bad', e.errorRate >= 0.05);
  }
}

class ServiceBox {
  readonly root = el('section', 'service');
  private readonly title = el('h2');
  private readonly summary = el('div', 'summary');
  private readonly counts = el('div', 'counts');
  private readonly tbody = el('tbody');
  private readonly rows = new Map<string, Row>();
  private order = '';
  constructor(readonly name: string) {
    this.root.dataset.service = name;
    const head = el('header');
    head.append(this.title, this.summary, this.counts);
    const table = el('table');
    const thead = el('thead');
    const tr = el('tr');
    for (const h of ['state', 'instance', 'req/s', 'errors', 'p99', 'estimate', 'in flight', 'weight']) tr.append(el('th', undefined, h));
    thead.append(tr);
    table.append(thead, this.tbody);
    this.root.append(head, table);
  }
  update(s: ServiceView, filter: (e: EndpointView) => boolean): number {
    set(this.title, s.name);
    this.title.classList.toggle('panic', s.panic);
    set(this.summary, `${fmt.rate(s.rate)} req/s · errors ${fmt.pct(s.errorRate)} · p99 ${fmt.ms(s.p99Ms)} · active ${s.active} · retries ${fmt.rate(s.retriesPerSecond)}/s${s.panic ? ' · PANIC' : ''}`);
    const byState = new Map<string, number>();
    for (const e of s.endpoints) byState.set(e.state, (byState.get(e.state) ?? 0) + 1);
    set(this.counts, [...byState].sort().map(([k, v]) => `${v} ${k}`).join(' · ') || 'no instances');
    const seen = new Set<string>();
    const shown: Row[] = [];
    for (const e of s.endpoints) {
      seen.add(e.id);
      let row = this.rows.get(e.id);
      if (!row) {
        row = new Row(e.id);
        this.rows.set(e.id, row);
      }
      row.update(e);
      if (filter(e)) shown.push(row);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
    // Re-attach rows only when the shown set or its order changed.
    const order = shown.map((r) => r.id).join('\n');
    if (order !== this.order) {
      this.order = order;
      this.tbody.replaceChildren(...shown.map((r) => r.tr));
    }
    this.root.hidden = shown.length === 0 && s.endpoints.length > 0;
    return shown.length;
  }
}

const services = new Map<string, ServiceBox>();
let latest: Snapshot | undefined;
let pending = false;
let lastSeq = 0;
const stats = { renders: 0, lastRenderMs: 0, maxRenderMs: 0, events: 0 };
(window as unknown as { __tandemDashboard: typeof stats }).__tandemDashboard = stats;

function filterNow(): (e: EndpointView) => boolean {
  const problems = ($<HTMLInputElement>('only-problems')).checked;
  const text = ($<HTMLInputElement>('search')).value.trim();
  return (e) => (!problems || e.state !== 'healthy') && (text === '' || e.id.includes(text));
}

function render(): void {
  pending = false;
  const snap = latest;
  if (!snap) return;
  const t0 = performance.now();
  const g = snap.gateway;
  set($('gw-version'), `tandem ${g.version}`);
  const health = $('gw-health');
  set(health, g.health);
  health.className = `pill ${g.health === 'ok' ? 'ok' : 'warn'}`;
  set($('gw-facts'), `listen ${g.listen} · pid ${g.pid} · up ${fmt.uptime(g.uptimeSeconds)} · ${fmt.rate(g.rate)} req/s · errors ${fmt.pct(g.errorRate)} · in flight ${g.inflight} · ${fmt.bytes(g.rssBytes)}`);
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
      services.set(s.name, box);
      list.append(box.root);
    }
    shown += box.update(s, filter);
    instances += s.endpoints.length;
  }
  for (const [name, box] of services) {
    if (!names.has(name)) {
      box.root.remove();
      services.delete(name);
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
  li.append(el('time', undefined, fmt.time(ev.time)), el('span', 'kind', ev.kind), el('span', 'where', [ev.service, ev.endpoint].filter(Boolean).join(' ')), el('span', 'text', ev.text));
  const ul = $('timeline');
  ul.prepend(li);
  while (ul.childElementCount > TIMELINE_MAX) ul.lastElementChild?.remove();
}

function connect(): void {
  const status = $('conn');
  const source = new EventSource('/admin/stream');
  source.addEventListener('open', () => { set(status, 'live'); status.className = 'pill ok'; });
  source.addEventListener('error', () => { set(status, 'reconnecting…'); status.className = 'pill warn'; });
  source.addEventListener('snapshot', (m) => {
    latest = JSON.parse((m as MessageEvent<string>).data) as Snapshot;
    schedule();
  });
  source.addEventListener('event', (m) => addEvent(JSON.parse((m as MessageEvent<string>).data) as TimelineEvent));
}

$('only-problems').addEventListener('change', schedule);
$('search').addEventListener('input', schedule);
connect();
