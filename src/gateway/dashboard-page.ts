import { readdirSync, readFileSync } from 'node:fs';

/**
 * The dashboard page served at `/` on the admin listener. The markup and styles are here; the
 * scripts are dashboard/*.ts, compiled by `npm run build` (a second tsc project) into
 * dist/dashboard/*.js and served under /dashboard/ (ES modules; app.js imports the rest; also
 * /dashboard.js). Nothing is loaded from elsewhere.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tandem</title>
<style>
:root { --bg: #0f1419; --panel: #171d24; --line: #26303b; --text: #d8dee6; --dim: #8793a0; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; --p99: #bc8cff; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--text); }
header.top { display: flex; gap: 6px 12px; align-items: center; padding: 10px 16px; border-bottom: 1px solid var(--line); background: var(--panel); position: sticky; top: 0; z-index: 1; flex-wrap: wrap; }
header.top h1 { font-size: 15px; margin: 0; }
.badge { padding: 1px 10px; border-radius: 10px; font-size: 12px; font-weight: 600; border: 1px solid currentColor; color: var(--dim); }
.badge[data-health=ok] { color: var(--ok); }
.badge[data-health=degraded] { background: var(--bad); border-color: var(--bad); color: #fff; }
.badge[data-health=draining] { background: var(--warn); border-color: var(--warn); color: #111; }
.badge[data-health=disconnected] { background: #6e7681; border-color: #6e7681; color: #fff; }
.badge[data-health=connecting] { border-style: dashed; }
#gw-reason { flex: 1 1 260px; min-width: 0; overflow-wrap: anywhere; }
body[data-health=degraded] #gw-reason { color: #ffa198; } body[data-health=draining] #gw-reason { color: var(--warn); }
body[data-health=disconnected] #gw-reason { color: var(--text); }
.facts, .dim { color: var(--dim); }
#gw-facts { flex: 1 1 100%; order: 3; }
#gateways { flex: 1 1 100%; order: 3; display: flex; flex-wrap: wrap; gap: 4px 8px; } #gateways:empty { display: none; }
.gw { border: 1px solid var(--line); border-radius: 4px; padding: 0 8px; display: inline-flex; gap: 6px; overflow-wrap: anywhere; }
.gw::before { content: "●"; color: var(--dim); } .gw[data-state=ready]::before { color: var(--ok); } .gw[data-state=not-ready]::before { color: var(--warn); } .gw[data-state=silent]::before { color: var(--bad); }
.gw[data-holds=true] { border-color: var(--info); } .gw-state { color: var(--dim); }
.controls { display: flex; gap: 6px 10px; align-items: center; flex-wrap: wrap; order: 4; flex: 1 1 100%; }
.controls #sampled { margin-left: auto; }
.controls input[type=search] { background: var(--bg); color: var(--text); border: 1px solid var(--line); padding: 3px 6px; border-radius: 4px; min-width: 0; }
body.stale main { opacity: .45; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 16px; padding: 12px 16px; }
#services, #services-col { min-width: 0; }
section.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; margin-bottom: 12px; }
section.panel header { display: flex; gap: 4px 12px; align-items: baseline; padding: 8px 10px; border-bottom: 1px solid var(--line); }
section.panel h2 { font-size: 14px; margin: 0; }
#caches th:first-child, #caches td.c-route { text-align: left; } #caches th:nth-child(2) { text-align: right; }
#caches tr[data-stale-rising=true] td.c-stale { color: var(--warn); }
section.service { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; margin-bottom: 12px; content-visibility: auto; contain-intrinsic-size: auto 400px; }
section.service[data-health=degraded] { border-color: var(--bad); }
section.service header { display: flex; gap: 4px 12px; align-items: baseline; padding: 8px 10px; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
section.service h2 { font-size: 14px; margin: 0; }
section.service h2.panic { color: var(--bad); }
.summary { color: var(--text); } .counts { color: var(--dim); margin-left: auto; }
.why { flex: 1 1 100%; color: #ffa198; overflow-wrap: anywhere; } .why:empty { display: none; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 8px 16px; padding: 8px 10px; border-bottom: 1px solid var(--line); }
.chart { margin: 0; min-width: 0; }
.chart figcaption { display: flex; gap: 6px; align-items: baseline; white-space: nowrap; overflow: hidden; }
.chart figcaption .label { color: var(--dim); } .chart figcaption .dim { margin-left: auto; font-size: 11px; }
.chart svg { display: block; width: 100%; height: 48px; background: var(--bg); border-radius: 3px; touch-action: none; }
.chart .line { fill: none; stroke-width: 1.5; }
.chart .area { stroke: none; }
.chart[data-metric=rate] .line { stroke: var(--info); } .chart[data-metric=rate] .area { fill: rgba(88, 166, 255, .18); }
.chart[data-metric=errorRate] .line { stroke: var(--bad); }
.chart[data-metric=p99Ms] .line { stroke: var(--p99); }
.chart .threshold { stroke: var(--warn); stroke-dasharray: 3 3; stroke-width: 1; opacity: .7; }
.chart .cursor { stroke: var(--dim); stroke-width: 1; }
.rows { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 2px 10px; white-space: nowrap; }
th { color: var(--dim); font-weight: normal; border-bottom: 1px solid var(--line); }
th:nth-child(-n+2), td.c-state, td.c-id, td.c-note { text-align: left; }
td.c-state::before { content: "●"; margin-right: 6px; }
tr.s-healthy td.c-state::before { color: var(--ok); }
tr.s-probation td.c-state::before { color: var(--info); }
tr.s-ejected td.c-state::before, tr.s-unhealthy td.c-state::before { color: var(--bad); }
tr.s-draining td.c-state::before { color: var(--warn); }
tr.s-ejected, tr.s-unhealthy { background: rgba(248, 81, 73, .08); }
tr.s-draining { background: rgba(210, 153, 34, .08); }
tr.s-left { color: var(--dim); } tr.s-left td.c-state::before { content: "○"; }
tr.s-left[data-cause=connection-lost] td.c-state, tr.s-left[data-cause=lease-expired] td.c-state { color: #ffa198; }
td.c-note { color: var(--dim); white-space: normal; }
td.bad { color: var(--bad); }
aside { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; align-self: start; position: sticky; top: 96px; max-height: calc(100vh - 112px); overflow: auto; min-width: 0; }
aside h2 { font-size: 14px; margin: 0; padding: 8px 10px; border-bottom: 1px solid var(--line); }
#timeline { list-style: none; margin: 0; padding: 0; }
#timeline li { padding: 4px 10px; border-bottom: 1px solid var(--line); display: grid; grid-template-columns: auto auto minmax(0, 1fr); gap: 0 8px; }
#timeline time { color: var(--dim); }
#timeline .kind { font-weight: 600; }
#timeline .where { color: var(--dim); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#timeline .text { grid-column: 1 / -1; overflow-wrap: anywhere; }
.k-join .kind { color: var(--ok); } .k-leave .kind, .k-ejection .kind, .k-budget .kind, .k-panic .kind, .k-cache .kind { color: var(--bad); }
.k-leave[data-cause=drained] .kind { color: var(--warn); }
.k-drain .kind, .k-retry .kind { color: var(--warn); } .k-reload .kind, .k-start .kind, .k-state .kind, .k-peer .kind { color: var(--info); }
@media (max-width: 1000px) { main { grid-template-columns: minmax(0, 1fr); } aside { position: static; max-height: none; } }
@media (max-width: 640px) {
  header.top { position: static; padding: 8px 10px; }
  main { padding: 8px; gap: 8px; }
  .controls input[type=search] { flex: 1 1 120px; }
  .counts { margin-left: 0; }
  table { font-size: 12px; }
  th, td { padding: 2px 4px; }
  td.c-state { white-space: normal; }
  .c-est, .c-inflight, .c-weight { display: none; }
  .charts { grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 6px; padding: 6px 8px; }
  .chart figcaption .dim { display: none; }
  .chart svg { height: 40px; }
}
</style>
</head>
<body data-health="connecting">
<header class="top">
  <h1 id="gw-version">tandem</h1>
  <span id="gw-health" class="badge" data-health="connecting">connecting</span>
  <span id="gw-reason"></span>
  <span id="gw-facts" class="facts"></span>
  <div id="gateways" aria-label="gateways"></div>
  <div class="controls">
    <span id="shown" class="dim"></span>
    <label><input type="checkbox" id="only-problems"> only not healthy</label>
    <input type="search" id="search" placeholder="filter instances">
    <span id="sampled" class="dim"></span>
  </div>
</header>
<main>
  <div id="services-col">
  <section id="caches" class="panel" hidden><header><h2>Response caches</h2><span class="dim">since the gateway started</span></header><div class="rows"><table>
    <thead><tr><th>route</th><th>hit ratio</th><th>hits</th><th>misses</th><th>stale served</th><th>entries</th><th>memory</th><th class="c-redis">Redis hits · errors · fallbacks</th></tr></thead>
    <tbody id="cache-rows"></tbody></table></div></section>
  <div id="services"></div>
  </div>
  <aside><h2>Recent events</h2><ul id="timeline"></ul></aside>
</main>
<script type="module" src="/dashboard/app.js"></script>
</body>
</html>
`;

const scripts = new Map<string, string>();

/**
 * The dashboard's compiled modules (dist/dashboard/*.js), read once: `name` is a file name such
 * as `app.js`; anything else is undefined (nothing outside that folder is ever served).
 */
export function dashboardScript(name = 'app.js'): string | undefined {
  if (scripts.size === 0) {
    const dir = new URL('../../dashboard/', import.meta.url);
    for (const file of readdirSync(dir)) if (file.endsWith('.js')) scripts.set(file, readFileSync(new URL(file, dir), 'utf8'));
  }
  return scripts.get(name);
}
