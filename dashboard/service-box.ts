// One service on the page: its name and why it is degraded, its numbers, its charts, and a
// table row per instance — kept by instance, cells written only when their text changes —
// then the instances that left lately, each saying why.
import { attr, CAUSE_TEXT, el, fmt, set } from './dom.js';
import { Chart, CHARTS, type Series } from './chart.js';
import type { Departure, EndpointView, HealthReason, ServiceView } from './types.js';

const CELLS = ['state', 'id', 'rate', 'err', 'p99', 'est', 'inflight', 'weight'] as const;
const HEADINGS = ['state', 'instance', 'req/s', 'errors', 'p99', 'estimate', 'in flight', 'weight'];
type Cell = (typeof CELLS)[number];

export type Filter = (id: string, state: string) => boolean;

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

/** An instance that left: its last state is the cause. */
class DepartedRow {
  readonly tr = el('tr', 's-left');
  constructor(readonly id: string, d: Departure) {
    this.tr.dataset.endpoint = d.id;
    this.tr.dataset.state = 'left';
    this.tr.dataset.cause = d.cause;
    const note = el('td', 'c-note', `left ${fmt.time(d.time)} · ${d.instance}`);
    note.colSpan = CELLS.length - 2;
    this.tr.append(el('td', 'c-state', CAUSE_TEXT[d.cause] ?? d.cause), el('td', 'c-id', d.id), note);
  }
}

export class ServiceBox {
  readonly root = el('section', 'service');
  private readonly title = el('h2');
  private readonly summary = el('div', 'summary');
  private readonly counts = el('div', 'counts');
  private readonly why = el('div', 'why');
  private readonly charts = CHARTS.map((spec) => new Chart(spec));
  private readonly tbody = el('tbody');
  private readonly rows = el('div', 'rows');
  private readonly byId = new Map<string, Row>();
  private departed = new Map<string, DepartedRow>();
  private order = '';
  private drawn = -1;

  constructor(readonly name: string) {
    this.root.dataset.service = name;
    const head = el('header');
    head.append(this.title, this.summary, this.counts, this.why);
    const charts = el('div', 'charts');
    charts.append(...this.charts.map((c) => c.root));
    const table = el('table');
    const thead = el('thead');
    const tr = el('tr');
    CELLS.forEach((c, i) => tr.append(el('th', `c-${c}`, HEADINGS[i])));
    thead.append(tr);
    table.append(thead, this.tbody);
    this.rows.append(table);
    this.root.append(head, charts, this.rows);
  }

  /** The error chart's line at the share that makes a service degraded. */
  setErrorThreshold(share: number): void {
    this.charts[1]!.setThreshold(share);
    this.drawn = -1;
  }

  /** Redraws the charts when the series has a point they have not shown. */
  drawCharts(series: Series, force = false): void {
    if (series.last === this.drawn && !force) return;
    this.drawn = series.last;
    for (const c of this.charts) c.draw(series);
  }

  /** Returns how many of the service's instances the filter shows. */
  update(s: ServiceView, reasons: readonly HealthReason[], filter: Filter): number {
    set(this.title, s.name);
    this.title.classList.toggle('panic', s.panic);
    attr(this.root, 'data-health', reasons.length > 0 ? 'degraded' : 'ok');
    set(this.why, reasons.map((r) => r.text).join(' · '));
    set(this.summary, `${fmt.rate(s.rate)} req/s · errors ${fmt.pct(s.errorRate)} · p99 ${fmt.ms(s.p99Ms)} · active ${s.active} · retries ${fmt.rate(s.retriesPerSecond)}/s${s.panic ? ' · PANIC' : ''}`);
    const byState = new Map<string, number>();
    for (const e of s.endpoints) byState.set(e.state, (byState.get(e.state) ?? 0) + 1);
    const departed = s.departed ?? [];
    const left = departed.length > 0 ? ` · ${departed.length} left lately` : '';
    set(this.counts, ([...byState].sort().map(([k, v]) => `${v} ${k}`).join(' · ') || 'no instances') + left);
    const shown: Array<Row | DepartedRow> = [];
    const seen = new Set<string>();
    for (const e of s.endpoints) {
      seen.add(e.id);
      let row = this.byId.get(e.id);
      if (!row) {
        row = new Row(e.id);
        this.byId.set(e.id, row);
      }
      row.update(e);
      if (filter(e.id, e.state)) shown.push(row);
    }
    for (const [id, row] of this.byId) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.byId.delete(id);
      }
    }
    const instances = shown.length;
    shown.push(...this.departedRows(departed, filter));
    // Re-attach rows only when the shown set or its order changed.
    const order = shown.map((r) => r.id).join('\n');
    if (order !== this.order) {
      this.order = order;
      this.tbody.replaceChildren(...shown.map((r) => r.tr));
    }
    this.rows.hidden = shown.length === 0;
    this.root.hidden = shown.length === 0 && s.endpoints.length > 0;
    return instances;
  }

  private departedRows(departed: readonly Departure[], filter: Filter): DepartedRow[] {
    const next = new Map<string, DepartedRow>();
    const shown: DepartedRow[] = [];
    for (const d of departed) {
      const key = `left ${d.id} ${d.time}`;
      const row = this.departed.get(key) ?? new DepartedRow(key, d);
      next.set(key, row);
      if (filter(d.id, 'left')) shown.push(row);
    }
    this.departed = next;
    return shown;
  }
}
