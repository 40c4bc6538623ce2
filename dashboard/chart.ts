// A service's last minutes as three small SVG charts: requests per second, error rate, p99.
// One <path> per line, its `d` rebuilt only when a point arrives (once a second per service);
// the SVG scales to its box (viewBox + non-scaling strokes), so the layout decides the width.
import { attr, el, fmt, set, svg } from './dom.js';
import type { HistoryPoint, ServiceHistory } from './types.js';

/** Points kept: 5 minutes at one a second (the gateway keeps as many). */
export const MAX_POINTS = 300;
/** The narrowest time span drawn: a young gateway's first minute fills the chart from the left. */
const MIN_SPAN_MS = 60_000;
const W = 300;
const H = 48;

type Metric = 'rate' | 'errorRate' | 'p99Ms';

/** A service's points, oldest first, filled from the history message and then one per snapshot. */
export class Series {
  intervalMs = 1000;
  readonly t: number[] = [];
  readonly rate: number[] = [];
  readonly errorRate: number[] = [];
  readonly p99Ms: Array<number | null> = [];

  replace(h: ServiceHistory): void {
    this.intervalMs = h.intervalMs;
    for (const k of ['t', 'rate', 'errorRate', 'p99Ms'] as const) {
      const column = this[k] as unknown[];
      column.length = 0;
      column.push(...h[k].slice(-MAX_POINTS));
    }
  }

  /** Appends a point newer than the last; false when it is not new. */
  add(p: HistoryPoint): boolean {
    if (this.t.length > 0 && p.t <= this.t[this.t.length - 1]!) return false;
    this.t.push(p.t);
    this.rate.push(p.rate);
    this.errorRate.push(p.errorRate);
    this.p99Ms.push(p.p99Ms);
    if (this.t.length > MAX_POINTS) for (const c of [this.t, this.rate, this.errorRate, this.p99Ms]) c.shift();
    return true;
  }

  get last(): number {
    return this.t[this.t.length - 1] ?? 0;
  }
}

interface ChartSpec {
  metric: Metric;
  label: string;
  format: (v: number) => string;
  /** The scale's top is at least this. */
  floor: number;
  /** Filled below the line. */
  area?: boolean;
}

export const CHARTS: readonly ChartSpec[] = [
  { metric: 'rate', label: 'req/s', format: fmt.rate, floor: 1, area: true },
  { metric: 'errorRate', label: 'errors', format: (v) => fmt.pct(v), floor: 0.1 },
  { metric: 'p99Ms', label: 'p99', format: (v) => fmt.ms(v), floor: 10 },
];

/** A round number at or above n: 1, 2, 2.5, 5 × a power of ten. */
function niceTop(n: number): number {
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export class Chart {
  readonly root = el('figure', 'chart');
  private readonly value = el('b');
  private readonly scale = el('span', 'dim');
  private readonly plot = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img' });
  private readonly fill = svg('path', { class: 'area' });
  private readonly line = svg('path', { class: 'line', 'vector-effect': 'non-scaling-stroke' });
  private readonly mark = svg('line', { class: 'threshold', x1: '0', x2: String(W), 'vector-effect': 'non-scaling-stroke' });
  private readonly cursor = svg('line', { class: 'cursor', y1: '0', y2: String(H), 'vector-effect': 'non-scaling-stroke', visibility: 'hidden' });
  private series: Series | undefined;
  private xs: number[] = [];
  private hovering = false;

  constructor(private readonly spec: ChartSpec, private threshold?: number) {
    this.root.dataset.metric = spec.metric;
    const caption = el('figcaption');
    caption.append(el('span', 'label', spec.label), ' ', this.value, ' ', this.scale);
    if (!spec.area) this.fill.remove();
    this.plot.append(this.fill, this.line, this.mark, this.cursor);
    this.mark.style.display = 'none';
    this.root.append(caption, this.plot);
    this.plot.addEventListener('pointermove', (e) => this.hover(e));
    this.plot.addEventListener('pointerleave', () => {
      this.hovering = false;
      this.cursor.setAttribute('visibility', 'hidden');
      this.caption();
    });
  }

  setThreshold(share: number): void {
    this.threshold = share;
  }

  /** Redraws from the series: the last 5 minutes, right edge = the newest point. */
  draw(series: Series): void {
    this.series = series;
    const values = series[this.spec.metric];
    const end = series.last;
    const span = Math.min(MAX_POINTS * series.intervalMs, Math.max(MIN_SPAN_MS, end - (series.t[0] ?? end)));
    let max = -1;
    for (const v of values) if (v !== null && v > max) max = v;
    const top = niceTop(Math.max(this.spec.floor, max, this.threshold ?? 0));
    const y = (v: number) => (H - 1 - (Math.min(v, top) / top) * (H - 2)).toFixed(1);
    let line = '';
    let area = '';
    let open = false;
    let firstX = '';
    let lastX = '';
    const xs: number[] = [];
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      const x = W - ((end - series.t[i]!) / span) * W;
      xs.push(x);
      // A gap (no sample for a while: the gateway was busy or restarted) breaks the line.
      const gap = i > 0 && series.t[i]! - series.t[i - 1]! > 2.5 * series.intervalMs;
      if (v === null || v === undefined || gap) {
        if (open && this.spec.area) area += `L${lastX} ${H}Z`;
        open = false;
        if (v === null || v === undefined) continue;
      }
      const xt = x.toFixed(1);
      if (!open) {
        line += `M${xt} ${y(v)}`;
        firstX = xt;
        if (this.spec.area) area += `M${firstX} ${H}L${xt} ${y(v)}`;
        open = true;
      } else {
        line += `L${xt} ${y(v)}`;
        if (this.spec.area) area += `L${xt} ${y(v)}`;
      }
      lastX = xt;
    }
    if (open && this.spec.area) area += `L${lastX} ${H}Z`;
    this.xs = xs;
    attr(this.line, 'd', line);
    if (this.spec.area) attr(this.fill, 'd', area);
    if (this.threshold !== undefined) {
      this.mark.style.display = '';
      attr(this.mark, 'y1', y(this.threshold));
      attr(this.mark, 'y2', y(this.threshold));
    }
    attr(this.plot, 'data-points', String(values.length));
    attr(this.plot, 'data-last', String(end));
    set(this.scale, `${Math.round(span / 60_000)} min max ${max < 0 ? '–' : this.spec.format(max)}`);
    if (!this.hovering) this.caption();
  }

  /** The newest value, or the hovered one with its time. */
  private caption(index?: number): void {
    const s = this.series;
    if (!s) return;
    const values = s[this.spec.metric];
    const i = index ?? values.length - 1;
    const v = values[i];
    const text = v === null || v === undefined ? '–' : this.spec.format(v);
    set(this.value, index === undefined ? text : `${text} at ${fmt.time(s.t[i]!)}`);
  }

  private hover(e: PointerEvent): void {
    if (this.xs.length === 0) return;
    const box = this.plot.getBoundingClientRect();
    const x = ((e.clientX - box.left) / Math.max(1, box.width)) * W;
    let best = 0;
    for (let i = 1; i < this.xs.length; i++) if (Math.abs(this.xs[i]! - x) < Math.abs(this.xs[best]! - x)) best = i;
    this.hovering = true;
    const cx = this.xs[best]!.toFixed(1);
    this.cursor.setAttribute('x1', cx);
    this.cursor.setAttribute('x2', cx);
    this.cursor.setAttribute('visibility', 'visible');
    this.caption(best);
  }
}
