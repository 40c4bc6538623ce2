// The routes' response caches (config `routes[].cache`): a row per route — hit ratio, hits,
// misses, stale answers served, entries and memory, and the Redis level's hits, errors and
// fallbacks when the route has one. Hidden while no route caches.
import { $, attr, el, fmt, set } from './dom.js';
import type { CacheView } from './types.js';

const rows = new Map<string, { tr: HTMLElement; stale: number }>();
const COLUMNS = ['c-route', 'c-ratio', 'c-hits', 'c-misses', 'c-stale', 'c-entries', 'c-bytes', 'c-redis'];

export function renderCaches(list: readonly CacheView[]): void {
  const panel = $('caches');
  panel.hidden = list.length === 0;
  const body = $('cache-rows');
  const seen = new Set<string>();
  for (const c of list) {
    seen.add(c.route);
    let row = rows.get(c.route);
    if (!row) {
      const tr = el('tr');
      tr.dataset.route = c.route;
      for (const name of COLUMNS) tr.append(el('td', name));
      row = { tr, stale: c.stale };
      rows.set(c.route, row);
      body.append(row.tr);
    }
    const cells = row.tr.children;
    set(cells[0]!, c.route);
    set(cells[1]!, c.hitRatio === null ? '–' : fmt.pct(c.hitRatio));
    set(cells[2]!, String(c.hits));
    set(cells[3]!, String(c.misses));
    set(cells[4]!, String(c.stale));
    set(cells[5]!, String(c.entries));
    set(cells[6]!, c.bytes < 1024 * 1024 ? `${(c.bytes / 1024).toFixed(0)} KiB` : fmt.bytes(c.bytes));
    set(cells[7]!, c.redis === undefined ? '–' : `${c.redis.hits} · ${c.redis.errors} · ${c.redis.fallbacks}`);
    // Stale answers going up: the origin is failing and the cache answers in its place.
    attr(row.tr, 'data-stale-rising', String(c.stale > row.stale));
    row.stale = c.stale;
  }
  for (const [route, row] of rows) {
    if (!seen.has(route)) {
      row.tr.remove();
      rows.delete(route);
    }
  }
}
