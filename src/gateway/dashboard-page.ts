import { readFileSync } from 'node:fs';

/**
 * The dashboard page served at `/` on the admin listener. The markup and styles are here; the
 * script is dashboard/app.ts, compiled by `npm run build` (a second tsc project) into
 * dist/dashboard/app.js and served as /dashboard.js. Nothing is loaded from elsewhere.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tandem</title>
<style>
:root { --bg: #0f1419; --panel: #171d24; --line: #26303b; --text: #d8dee6; --dim: #8793a0; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--text); }
header.top { display: flex; gap: 12px; align-items: center; padding: 10px 16px; border-bottom: 1px solid var(--line); background: var(--panel); position: sticky; top: 0; z-index: 1; flex-wrap: wrap; }
header.top h1 { font-size: 15px; margin: 0; }
.pill { padding: 1px 8px; border-radius: 10px; font-size: 12px; border: 1px solid currentColor; }
.pill.ok { color: var(--ok); } .pill.warn { color: var(--warn); }
.facts, .dim { color: var(--dim); }
.controls { margin-left: auto; display: flex; gap: 10px; align-items: center; }
.controls input[type=search] { background: var(--bg); color: var(--text); border: 1px solid var(--line); padding: 3px 6px; border-radius: 4px; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 16px; padding: 12px 16px; }
section.service { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; margin-bottom: 12px; content-visibility: auto; contain-intrinsic-size: auto 300px; }
section.service header { display: flex; gap: 12px; align-items: baseline; padding: 8px 10px; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
section.service h2 { font-size: 14px; margin: 0; }
section.service h2.panic { color: var(--bad); }
.summary { color: var(--text); } .counts { color: var(--dim); margin-left: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 2px 10px; white-space: nowrap; }
th { color: var(--dim); font-weight: normal; border-bottom: 1px solid var(--line); }
th:nth-child(-n+2), td.c-state, td.c-id { text-align: left; }
td.c-state::before { content: "●"; margin-right: 6px; }
tr.s-healthy td.c-state::before { color: var(--ok); }
tr.s-probation td.c-state::before { color: var(--info); }
tr.s-ejected td.c-state::before, tr.s-unhealthy td.c-state::before { color: var(--bad); }
tr.s-draining td.c-state::before { color: var(--warn); }
tr.s-ejected, tr.s-unhealthy { background: rgba(248, 81, 73, .08); }
tr.s-draining { background: rgba(210, 153, 34, .08); }
td.bad { color: var(--bad); }
aside { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; align-self: start; position: sticky; top: 56px; max-height: calc(100vh - 72px); overflow: auto; }
aside h2 { font-size: 14px; margin: 0; padding: 8px 10px; border-bottom: 1px solid var(--line); }
#timeline { list-style: none; margin: 0; padding: 0; }
#timeline li { padding: 4px 10px; border-bottom: 1px solid var(--line); display: grid; grid-template-columns: auto auto 1fr; gap: 0 8px; }
#timeline time { color: var(--dim); }
#timeline .kind { font-weight: 600; }
#timeline .where { color: var(--dim); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#timeline .text { grid-column: 1 / -1; }
.k-join .kind { color: var(--ok); } .k-leave .kind, .k-ejection .kind, .k-budget .kind, .k-panic .kind { color: var(--bad); }
.k-drain .kind, .k-retry .kind { color: var(--warn); } .k-reload .kind, .k-start .kind, .k-state .kind { color: var(--info); }
@media (max-width: 1000px) { main { grid-template-columns: 1fr; } aside { position: static; max-height: none; } }
</style>
</head>
<body>
<header class="top">
  <h1 id="gw-version">tandem</h1>
  <span id="gw-health" class="pill">…</span>
  <span id="conn" class="pill warn">connecting…</span>
  <span id="gw-facts" class="facts"></span>
  <div class="controls">
    <span id="shown" class="dim"></span>
    <label><input type="checkbox" id="only-problems"> only not healthy</label>
    <input type="search" id="search" placeholder="filter instances">
    <span id="sampled" class="dim"></span>
  </div>
</header>
<main>
  <div id="services"></div>
  <aside><h2>Recent events</h2><ul id="timeline"></ul></aside>
</main>
<script type="module" src="/dashboard.js"></script>
</body>
</html>
`;

let script: string | undefined;

/** dist/dashboard/app.js, read once. */
export function dashboardScript(): string {
  script ??= readFileSync(new URL('../../dashboard/app.js', import.meta.url), 'utf8');
  return script;
}
