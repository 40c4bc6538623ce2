// Membership with real processes: `tandem gateway` children and service instances using the
// node SDK (test/helpers/sdk-instance.ts), joined over the gateway's admin listener.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, Agent } from 'undici';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { freePort, kill } from './helpers/backend.js';
import { registrySnapshot, spawnInstance, until, type SdkInstance } from './helpers/sdk.js';
import { waitFor } from './helpers/wait.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

const { track } = cleanupAfterAll();


async function gatewayFor(service: string, extra: Record<string, unknown> = {}): Promise<RunningGateway> {
  return track(await startGateway({ services: { [service]: {} }, routes: [{ prefix: '/', service }], ...extra }));
}

async function get(url: string, dispatcher?: Agent): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url, dispatcher ? { dispatcher } : {});
  const text = await res.body.text();
  let body: Record<string, unknown> = {};
  try { body = JSON.parse(text) as Record<string, unknown>; } catch { body = { text }; }
  return { status: res.statusCode, body };
}

test('join and leave (node:http): traffic once registered; SIGTERM drains, deregisters, exits 0', async () => {
  const gw = await gatewayFor('shop');
  const inst = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop' }));
  const snap = await registrySnapshot(gw.adminUrl, 'shop');
  assert.deepEqual(snap.instances.map((i) => [i.id, i.address, i.state]), [[inst.id, inst.address, 'ready']]);
  // serve() resolved after the registration: the very next request reaches the instance.
  const r = await get(`${gw.url}/hello`);
  assert.equal(r.status, 200);
  assert.equal(r.body.instance, inst.id);
  inst.proc.kill('SIGTERM');
  assert.equal(await inst.exited, 0);
  await gw.waitForLog((l) => l.msg === 'registry' && l.change === 'state' && l.state === 'draining');
  await gw.waitForLog((l) => l.msg === 'registry' && l.change === 'deregistered');
  assert.equal((await registrySnapshot(gw.adminUrl, 'shop')).instances.length, 0);
  const gone = await get(`${gw.url}/hello`);
  assert.equal(gone.status, 503);
  assert.equal((gone.body.error as { code: string }).code, 'TANDEM_ERR_NO_HEALTHY_ENDPOINT');
});

test('the SDK with express: GET and POST through the gateway, /healthz and /readyz answered by the SDK; SIGINT drains too', async () => {
  const gw = await gatewayFor('shop');
  const inst = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', kind: 'express' }));
  const g = await get(`${gw.url}/items?x=1`);
  assert.deepEqual([g.status, g.body.instance, g.body.url], [200, inst.id, '/items?x=1']);
  const p = await request(`${gw.url}/orders`, { method: 'POST', body: 'order-1', headers: { 'content-type': 'text/plain' } });
  assert.equal(p.statusCode, 200);
  const posted = await p.body.json() as Record<string, unknown>;
  assert.deepEqual([posted.instance, posted.method, posted.url, posted.body], [inst.id, 'POST', '/orders', 'order-1']);
  const ready = await get(`http://${inst.address}/readyz`);
  assert.deepEqual([ready.status, ready.body.status, ready.body.state], [200, 'ok', 'ready']);
  const health = await get(`http://${inst.address}/healthz`);
  assert.equal(health.status, 200);
  inst.proc.kill('SIGINT'); // Ctrl-C drains as SIGTERM does
  assert.equal(await inst.exited, 0);
  await inst.waitForLine((l) => l.msg === 'drained');
  assert.equal((await registrySnapshot(gw.adminUrl, 'shop')).instances.length, 0);
});

test('SIGKILL: the lease ends at once, with its keep-alive connection, not at the TTL; SIGSTOP: at the TTL, and back after SIGCONT', async (t) => {
  const gw = await gatewayFor('shop');
  const killed = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', ttl: 3000 }));
  const frozen = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop', ttl: 2000 }));
  assert.equal((await registrySnapshot(gw.adminUrl, 'shop')).instances.length, 2);
  const t0 = performance.now();
  killed.proc.kill('SIGKILL');
  await until(async () => !(await registrySnapshot(gw.adminUrl, 'shop')).instances.some((i) => i.id === killed.id), 'the killed instance to leave');
  const killedMs = performance.now() - t0;
  // What ended it, rather than how long it took: the closed connection, not the TTL.
  await gw.waitForLog((l) => l.msg === 'registry' && l.instance === killed.id && l.cause === 'connection-lost');
  // A frozen process keeps its connection open: only the TTL finds it.
  const t1 = performance.now();
  frozen.proc.kill('SIGSTOP');
  await until(async () => (await registrySnapshot(gw.adminUrl, 'shop')).instances.length === 0, 'the frozen instance to expire');
  const frozenMs = performance.now() - t1;
  // The TTL ended it (its timing is held on a FakeClock in registry-embedded.test.ts).
  await gw.waitForLog((l) => l.msg === 'registry' && l.change === 'expired' && l.instance === frozen.id && l.cause === 'lease-expired');
  // Thawed, it finds its lease gone (the gateway says so on the keep-alive stream) and registers again.
  const t2 = performance.now();
  frozen.proc.kill('SIGCONT');
  await until(async () => (await registrySnapshot(gw.adminUrl, 'shop')).instances.some((i) => i.id === frozen.id), 'the thawed instance to register again');
  const backMs = performance.now() - t2;
  await frozen.waitForLine((l) => l.msg === 'lease lost; registering again');
  t.diagnostic(`SIGKILL → removed after ${Math.round(killedMs)} ms; SIGSTOP → removed after ${Math.round(frozenMs)} ms; SIGCONT → registered again after ${Math.round(backMs)} ms`);
});

test('a gateway restart: every instance registers again by itself; traffic through the other gateway never fails', async (t) => {
  const [listenA, adminA] = [await freePort(), await freePort()];
  const cfg = (listen: number, admin: number) => ({ listen: `127.0.0.1:${listen}`, admin: `127.0.0.1:${admin}`, services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] });
  let gwA = track(await startGateway(cfg(listenA, adminA)));
  const gwB = await gatewayFor('shop');
  const instances: SdkInstance[] = [];
  for (let i = 0; i < 3; i++) instances.push(track(await spawnInstance({ registry: [gwA.adminUrl, gwB.adminUrl], service: 'shop' })));
  assert.equal((await registrySnapshot(gwA.adminUrl, 'shop')).instances.length, 3);
  assert.equal((await registrySnapshot(gwB.adminUrl, 'shop')).instances.length, 3);

  const agent = new Agent({ connections: 8 });
  let stop = false;
  const results = { ok: 0, failed: [] as string[] };
  const load = (async () => {
    while (!stop) {
      const r = await get(`${gwB.url}/through-b`, agent).catch((e: Error) => ({ status: 0, body: { error: e.message } }));
      if (r.status === 200) results.ok++;
      else results.failed.push(`${r.status} ${JSON.stringify(r.body)}`);
    }
  })();
  await waitFor('traffic through gateway B', () => results.ok >= 30);
  assert.equal(await gwA.stop('SIGTERM'), 0);
  gwA = track(await startGateway(cfg(listenA, adminA)));
  const backMs = await until(async () => (await registrySnapshot(gwA.adminUrl, 'shop')).instances.length === 3, 'all 3 instances back in the restarted gateway');
  const okAtBack = results.ok;
  await waitFor('more traffic through gateway B after the restart', () => results.ok >= okAtBack + 30);
  stop = true;
  await load;
  await agent.close();
  assert.deepEqual(results.failed, []);
  assert.ok(results.ok > 50, `${results.ok} requests through gateway B`);
  t.diagnostic(`all 3 back ${Math.round(backMs)} ms after the restarted gateway answered; ${results.ok} requests through the other, none failed`);
  const ids = new Set<unknown>();
  for (let i = 0; i < 30; i++) ids.add((await get(`${gwA.url}/after`)).body.instance);
  assert.equal(ids.size, 3, 'the restarted gateway sends to all three');
  for (const inst of instances) inst.proc.kill('SIGTERM');
  for (const inst of instances) assert.equal(await inst.exited, 0);
});

test('SIGTERM of an instance under steady GET + POST load through tandem gateway: zero failed requests', async (t) => {
  const gw = await gatewayFor('shop');
  const instances: SdkInstance[] = [];
  for (let i = 0; i < 3; i++) instances.push(track(await spawnInstance({ registry: gw.adminUrl, service: 'shop' })));
  const agent = new Agent({ connections: 16 });
  let stop = false;
  let n = 0;
  const results = { ok: 0, failed: [] as string[], posts: new Map<string, number>() };
  const worker = async () => {
    while (!stop) {
      const k = n++;
      const post = k % 2 === 1;
      try {
        // Some slow requests, so the drain has in-flight work to finish.
        const res = await request(`${gw.url}/w/${k}?delay=${k % 5 === 0 ? 150 : 2}`, post
          ? { dispatcher: agent, method: 'POST', body: `p${k}`, headers: { 'content-type': 'text/plain' } }
          : { dispatcher: agent });
        const body = await res.body.text();
        if (res.statusCode === 200) results.ok++;
        else results.failed.push(`${post ? 'POST' : 'GET'} ${res.statusCode} ${body}`);
      } catch (err) {
        results.failed.push(`${post ? 'POST' : 'GET'} ${(err as Error).message}`);
      }
    }
  };
  const started = performance.now();
  const workers = Array.from({ length: 8 }, worker);
  await waitFor('steady traffic before the SIGTERM', () => results.ok > 60);
  const victim = instances[0]!;
  const servedBefore = results.ok;
  victim.proc.kill('SIGTERM');
  const replacement = track(await spawnInstance({ registry: gw.adminUrl, service: 'shop' }));
  assert.equal(await victim.exited, 0, 'the drained instance exits 0');
  const okAtExit = results.ok;
  await waitFor('traffic after the drained instance left', () => results.ok >= Math.max(okAtExit, servedBefore) + 60);
  stop = true;
  await Promise.all(workers);
  t.diagnostic(`${results.ok} requests (half POST) in ${Math.round(performance.now() - started)} ms, ${results.failed.length} failed`);
  await agent.close();
  assert.deepEqual(results.failed, []);
  assert.ok(servedBefore > 50 && results.ok > servedBefore + 50, `${results.ok} requests`);
  const snap = await registrySnapshot(gw.adminUrl, 'shop');
  assert.deepEqual(snap.instances.map((i) => i.id).sort(), [instances[1]!.id, instances[2]!.id, replacement.id].sort());
  await kill(replacement.proc as never);
});
