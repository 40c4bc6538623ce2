// Logs: every line the gateway writes is JSON with the documented fields (docs/logging.md):
// access lines per request, and one line per state change — join, leave, ejection, drain,
// reload, retry budget exhausted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, tempDir } from './helpers/gateway.js';
import { freePort, kill, spawnBackend, startBackend } from './helpers/backend.js';
import { spawnInstance } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

const { defer } = cleanupAfterAll();

/** The fields docs/logging.md promises on every line, on access lines and on each state change. */
const BASE = ['level', 'time', 'pid', 'msg'];
const ACCESS = ['requestId', 'traceId', 'method', 'path', 'route', 'service', 'endpoint', 'status', 'durationMs', 'attempts'];
const EVENTS: Record<string, string[]> = {
  join: ['service', 'instance', 'address', 'state'],
  leave: ['service', 'instance', 'address', 'change', 'cause'],
  drain: ['service', 'instance', 'address', 'state'],
  ejection: ['service', 'endpoint', 'from', 'to', 'reason'],
  reload: ['services', 'routes'],
  'budget-exhausted': ['service', 'refused'],
};

function hasFields(line: Record<string, unknown>, fields: readonly string[], what: string): void {
  for (const f of fields) assert.ok(line[f] !== undefined && line[f] !== null, `${what}: field ${f} missing in ${JSON.stringify(line)}`);
}

test('gateway log lines are JSON with the documented fields: access lines and one line per state change', async () => {
  const port = await freePort();
  const victim = await spawnBackend(port);
  defer(() => kill(victim));
  const steadyPort = await freePort();
  const steady = await spawnBackend(steadyPort);
  defer(() => kill(steady));
  const unavailable = [await startBackend('u1', (req, res) => { req.resume(); res.writeHead(503).end('busy'); }), await startBackend('u2', (req, res) => { req.resume(); res.writeHead(503).end('busy'); })];
  defer(...unavailable.map((b) => () => b.close()));
  const dir = tempDir('tandem-logs-test-');
  defer(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'gateway.json');
  const config = {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    log: { level: 'info', access: 'all' },
    services: {
      shop: { endpoints: [`127.0.0.1:${port}`, `127.0.0.1:${steadyPort}`], balancer: 'round-robin', outlier: { consecutiveFailures: 1 } },
      // Every retry is refused by a budget of zero.
      busy: { endpoints: unavailable.map((b) => b.address), healthCheck: false, retry: { budget: { percent: 0, minPerSecond: 0 } } },
      reg: {},
    },
    routes: [{ prefix: '/busy', service: 'busy' }, { prefix: '/reg', service: 'reg' }, { prefix: '/', service: 'shop' }],
  };
  const gw = await startGateway(config, { file });
  defer(() => gw.stop('SIGKILL'));

  // access lines
  const traced = await fetch(`${gw.url}/item?x=1`, { headers: { 'x-request-id': 'req-42' } });
  assert.equal(traced.status, 200);
  const access = await gw.waitForLog((l) => l.msg === 'request' && l.requestId === 'req-42');
  hasFields(access, [...BASE, ...ACCESS], 'access line');
  assert.deepEqual([access.method, access.path, access.route, access.service, access.status, access.attempts], ['GET', '/item?x=1', '/', 'shop', 200, 1]);
  assert.ok([`127.0.0.1:${port}`, `127.0.0.1:${steadyPort}`].includes(String(access.endpoint)));
  assert.match(String(access.traceId), /^[0-9a-f]{32}$/);
  assert.equal(typeof access.durationMs, 'number');

  // join, then drain and leave of an SDK instance
  const inst = await spawnInstance({ registry: gw.adminUrl, service: 'reg' });
  defer(async () => { inst.proc.kill('SIGKILL'); await inst.exited; });
  hasFields(await gw.waitForLog((l) => l.event === 'join' && l.instance === inst.id), [...BASE, ...EVENTS.join!], 'join');
  inst.proc.kill('SIGTERM');
  hasFields(await gw.waitForLog((l) => l.event === 'drain' && l.instance === inst.id), [...BASE, ...EVENTS.drain!], 'drain');
  hasFields(await gw.waitForLog((l) => l.event === 'leave' && l.instance === inst.id), [...BASE, ...EVENTS.leave!], 'leave');

  // ejection: a shop endpoint dies; the next request that tries it ejects it and is retried
  await kill(victim);
  for (let i = 0; i < 2; i++) assert.equal((await fetch(`${gw.url}/item`, { headers: { 'x-request-id': `after-kill-${i}` } })).status, 200);
  const ejection = await gw.waitForLog((l) => l.event === 'ejection' && l.endpoint === `127.0.0.1:${port}`);
  hasFields(ejection, [...BASE, ...EVENTS.ejection!], 'ejection');
  assert.equal(ejection.level, 'warn');
  const retried = await gw.waitForLog((l) => l.msg === 'request' && String(l.requestId).startsWith('after-kill-') && l.attempts === 2);
  assert.equal(retried.endpoint, `127.0.0.1:${steadyPort}`, 'the access line names the endpoint that answered');

  // retry budget exhausted: a 503 would be retried, the budget says no
  for (let i = 0; i < 5; i++) await (await fetch(`${gw.url}/busy/x`)).arrayBuffer();
  const busyAccess = await gw.waitForLog((l) => l.msg === 'request' && l.service === 'busy');
  assert.equal(busyAccess.attempts, 1, 'no retry was sent');
  assert.equal(busyAccess.status, 503);
  assert.equal(busyAccess.level, 'warn', 'a 5xx is logged as a warning: log.level warn still shows it');
  assert.equal(access.level, 'info');
  const budget = await gw.waitForLog((l) => l.event === 'budget-exhausted' && l.service === 'busy');
  hasFields(budget, [...BASE, ...EVENTS['budget-exhausted']!], 'budget exhausted');
  assert.ok(Number(budget.refused) >= 1);

  // reload
  writeFileSync(file, JSON.stringify({ ...config, services: { ...config.services, extra: { endpoints: ['127.0.0.1:9'] } } }));
  gw.proc.kill('SIGHUP');
  hasFields(await gw.waitForLog((l) => l.event === 'reload'), [...BASE, ...EVENTS.reload!], 'reload');

  // the gateway's own drain
  await gw.stop('SIGTERM');
  hasFields(gw.logs.find((l) => l.msg === 'draining')!, [...BASE, 'event', 'inflight'], 'gateway drain');

  // every line is JSON (the helper keeps unparsable lines as {raw}) with the base fields and a known level
  assert.ok(gw.logs.length > 10);
  for (const line of gw.logs) {
    assert.equal(line.raw, undefined, `not JSON: ${String(line.raw)}`);
    hasFields(line, BASE, 'every line');
    assert.ok(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(String(line.level)), String(line.level));
    assert.ok(!Number.isNaN(Date.parse(String(line.time))), 'ISO time');
  }
});

test('log.access "errors" (the default) writes failed requests only; "off" none', async () => {
  const ok = await startBackend('ok', (req, res) => { req.resume(); res.writeHead(req.url === '/fail' ? 500 : 200).end(); });
  defer(() => ok.close());
  const gw = await startGateway({ services: { shop: { endpoints: [ok.address], retry: false } }, routes: [{ prefix: '/', service: 'shop' }] });
  defer(() => gw.stop('SIGKILL'));
  await (await fetch(`${gw.url}/fine`, { headers: { 'x-request-id': 'fine-1' } })).arrayBuffer();
  await (await fetch(`${gw.url}/fail`, { headers: { 'x-request-id': 'fail-1' } })).arrayBuffer();
  const line = await gw.waitForLog((l) => l.requestId === 'fail-1');
  assert.equal(line.status, 500);
  assert.equal(gw.logs.find((l) => l.requestId === 'fine-1'), undefined, 'a 200 is not logged by default');

  const quiet = await startGateway({ log: { access: 'off' }, services: { shop: { endpoints: [ok.address], retry: false } }, routes: [{ prefix: '/', service: 'shop' }] });
  defer(() => quiet.stop('SIGKILL'));
  assert.equal((await fetch(`${quiet.url}/fail`, { headers: { 'x-request-id': 'fail-2' } })).status, 500);
  // A line the gateway writes afterwards (a reload of the same file): an access line for the
  // request would be ahead of it.
  quiet.proc.kill('SIGHUP');
  await quiet.waitForLog((l) => l.event === 'reload');
  assert.equal(quiet.logs.find((l) => l.requestId === 'fail-2'), undefined);
});

test('log.access is a request step of each service: a reload from "off" to "all" puts it in the chain for the next request', async () => {
  const ok = await startBackend('ok', (req, res) => { req.resume(); res.writeHead(200).end(); });
  defer(() => ok.close());
  const dir = tempDir('tandem-logs-step-');
  defer(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'gateway.json');
  const config = { listen: '127.0.0.1:0', admin: '127.0.0.1:0', log: { access: 'off' }, services: { shop: { endpoints: [ok.address], retry: false } }, routes: [{ prefix: '/', service: 'shop' }] };
  const gw = await startGateway(config, { file });
  defer(() => gw.stop('SIGKILL'));
  await (await fetch(`${gw.url}/before`, { headers: { 'x-request-id': 'before-reload' } })).arrayBuffer();
  writeFileSync(file, JSON.stringify({ ...config, log: { access: 'all' } }));
  gw.proc.kill('SIGHUP');
  await gw.waitForLog((l) => l.event === 'reload');
  // An access line is written as its response ends, so one for the first request would be in
  // the log ahead of the reload line.
  assert.equal(gw.logs.find((l) => l.requestId === 'before-reload'), undefined, 'no access line while off');
  await (await fetch(`${gw.url}/after`, { headers: { 'x-request-id': 'after-reload' } })).arrayBuffer();
  const line = await gw.waitForLog((l) => l.requestId === 'after-reload');
  assert.deepEqual([line.msg, line.path, line.service, line.status, line.attempts], ['request', '/after', 'shop', 200, 1]);
});
