// No cascading ejection (issue 12, part 3): an instance that fails because the service it calls
// is down says so (x-tandem-failed-dependency); the gateway then neither retries the request on
// its siblings, who share the dependency, nor ejects it. Real processes: a gateway, express
// instances of `greeter` calling `pricing` through tandem/client, SDK instances of `pricing`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, metricSum, clusterService, type RunningGateway } from './helpers/gateway.js';
import { spawnInstance, until, type SdkInstance } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { createClient } from '../src/client/index.js';
import { FAILED_DEPENDENCY_HEADER } from '../src/node/index.js';
import { TandemError } from '../src/core/errors.js';
import { freePort } from './helpers/backend.js';

const { defer, track } = cleanupAfterAll();

interface ClusterEntry { endpoints: Array<{ id: string; state: string; timesEjected?: number }> }

async function greeterStates(gw: RunningGateway): Promise<string[]> {
  return (await clusterService<ClusterEntry>(gw, 'greeter')).endpoints.map((e) => e.state);
}

async function kill(instance: SdkInstance): Promise<void> {
  instance.proc.kill('SIGKILL');
  await instance.exited;
}

test('a failed dependency neither ejects its healthy callers nor is retried on their siblings; they serve again once it is back', async () => {
  const gw = track(await startGateway({
    services: { greeter: { outlier: { consecutiveFailures: 2 } }, pricing: {} },
    routes: [{ prefix: '/', service: 'greeter' }],
  }));
  const pricing = [track(await spawnInstance({ registry: gw.adminUrl, service: 'pricing' })), track(await spawnInstance({ registry: gw.adminUrl, service: 'pricing' }))];
  for (let i = 0; i < 2; i++) track(await spawnInstance({ registry: gw.adminUrl, service: 'greeter', callee: 'pricing' }, 'express-caller'));
  await until(async () => (await greeterStates(gw)).filter((s) => s === 'healthy').length === 2, 'both greeter instances healthy at the gateway');
  assert.equal((await fetch(gw.url)).status, 200);

  for (const p of pricing) await kill(p);
  const retriesBefore = await metricSum(gw, /^tandem_retries_total\{service="greeter"/);
  const answers: Array<{ status: number; dependency: string | null }> = [];
  for (let i = 0; i < 20; i++) {
    const res = await fetch(i % 2 === 0 ? gw.url : `${gw.url}/caught`);
    await res.arrayBuffer();
    answers.push({ status: res.status, dependency: res.headers.get(FAILED_DEPENDENCY_HEADER) });
  }
  // express's error handler answers with the error's status and copies err.headers; /caught
  // answers 503 itself and tandem/node marks it.
  for (const a of answers) {
    assert.ok(a.status === 502 || a.status === 503, `a failed dependency is a 5xx: ${JSON.stringify(a)}`);
    assert.equal(a.dependency, 'pricing', 'the answer names the dependency that failed');
  }
  assert.equal(await metricSum(gw, /^tandem_retries_total\{service="greeter"/) - retriesBefore, 0, 'not retried on a sibling');
  assert.deepEqual(await greeterStates(gw), ['healthy', 'healthy'], 'no greeter instance ejected');
  assert.equal(await metricSum(gw, /^tandem_outlier_ejections_total\{service="greeter"/), 0);

  // pricing comes back (new instances register): greeter serves again.
  track(await spawnInstance({ registry: gw.adminUrl, service: 'pricing' }));
  await until(async () => (await fetch(gw.url).then(async (r) => { await r.arrayBuffer(); return r.status; })) === 200, 'greeter serving again');
  for (let i = 0; i < 6; i++) assert.equal((await fetch(gw.url).then(async (r) => { await r.arrayBuffer(); return r.status; })), 200);

  // The control: greeter's own 503s (no dependency named) are still retried and eject it.
  const own = await fetch(`${gw.url}/own-503`);
  await own.arrayBuffer();
  assert.equal(own.status, 503);
  assert.equal(own.headers.get(FAILED_DEPENDENCY_HEADER), null);
  assert.ok(await metricSum(gw, /^tandem_retries_total\{service="greeter"/) - retriesBefore > 0, "the instance's own 503 is retried on a sibling");
});

test('tandem/client: a failed call carries the dependency on the error, and a marked answer is not held against the callee', async () => {
  const dead = `127.0.0.1:${await freePort()}`;
  const c = createClient('pricing', { endpoints: [dead], settings: { healthCheck: false } });
  defer(() => c.close());
  const err = await c.request({ path: '/' }).then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof TandemError, String(err));
  assert.equal(err.dependency, 'pricing');
  assert.deepEqual(err.headers, { [FAILED_DEPENDENCY_HEADER]: 'pricing' });
  // A caller that gives up is not the dependency's failure.
  const controller = new AbortController();
  controller.abort();
  const aborted = await c.request({ path: '/', signal: controller.signal }).then(() => undefined, (e: unknown) => e);
  assert.ok(aborted instanceof TandemError && aborted.code === 'TANDEM_ERR_CLIENT_ABORTED', String(aborted));
  assert.equal(aborted.dependency, undefined);
});
