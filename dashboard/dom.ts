// Small DOM and formatting helpers shared by the dashboard's modules.

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string> = {}): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** Writes text only when it changed: no layout work for the cells that did not. */
export function set(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets an attribute only when it changed. */
export function attr(node: Element, name: string, value: string): void {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

export const fmt = {
  rate: (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1)),
  pct: (n: number) => (n === 0 ? '0' : n < 0.001 ? '<0.1%' : `${(n * 100).toFixed(1)}%`),
  ms: (n: number | null) => (n === null ? '–' : n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n >= 10 ? n.toFixed(0) : n.toFixed(1)} ms`),
  bytes: (n: number) => `${(n / 1024 / 1024).toFixed(0)} MiB`,
  uptime: (s: number) => (s < 120 ? `${s} s` : s < 7200 ? `${Math.floor(s / 60)} min` : `${(s / 3600).toFixed(1)} h`),
  time: (t: string | number) => new Date(t).toLocaleTimeString([], { hour12: false }),
};

/** Words for why an instance left (the registry's cause). */
export const CAUSE_TEXT: Record<string, string> = {
  drained: 'drained',
  deregistered: 'deregistered',
  'connection-lost': 'connection lost',
  'lease-expired': 'lease expired',
};
