// The node SDK notices a gateway that froze or vanished without closing its connection (issue
// 13): the answer check itself with a fake clock, the keep-alive stream against a raw server
// that never answers, and real gateways frozen with SIGSTOP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { createServer, type Server } from 'node:http';
import { FakeClock } from '../src/core/clock.js';
import { AnswerWatch } from '../src/discovery/answer-watch.js';
import { HttpRegistry } from '../src/discovery/http.js';
import type { LeaseLoss, ServiceSnapshot } from '../src/discovery/types.js';
import { serve } from '../src/node/index.js';
import { tokenFor } from '../src/core/secret.js';
import { startGateway } from './helpers/gateway.js';
import { registrySnapshot, spawnInstance, until } from './helpers/sdk.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { freePort } from './helpers/backend.js';

const { defer, track } = cleanupAfterAll();
/** One turn of the event loop: what AnswerWatch waits for before its verdict. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

test('AnswerWatch: silent only when something sent stays unanswered for the timeout; an answer read before the verdict wins', async () => {
  const clock = new FakeClock();
  const verdicts: number[] = [];
  const watch = new AnswerWatch(clock, 1500, (ms) => verdicts.push(ms));
  // Nothing owed: however long the silence (this process stalled, or nothing to say), no verdict.
  clock.advance(10_000);
  await turn();
  assert.deepEqual(verdicts, []);
  // Owed and answered in time, again and again: a timer re-armed lazily, no verdict.
  for (let i = 0; i < 5; i++) {
    watch.sent();
    clock.advance(1000);
    watch.answered();
    await turn();
  }
  assert.deepEqual(verdicts, []);
  // An answer that arrives in the same loop turn as the late timer (read in the I/O phase) wins.
  watch.sent();
  clock.advance(1500);
  watch.answered();
  await turn();
  assert.deepEqual(verdicts, []);
  // Owed since the first unanswered beat; later beats do not move the deadline.
  watch.sent();
  clock.advance(1000);
  watch.sent();
  clock.advance(499);
  await turn();
  assert.deepEqual(verdicts, []);
  clock.advance(1);
  await turn();
  assert.deepEqual(verdicts, [1500]);
  // Once: nothing more after the verdict.
  watch.sent();
  clock.advance(5000);
  await turn();
  assert.deepEqual(verdicts, [1500]);
  assert.equal(clock.pending, 0);
});

test('HttpRegistry.keepAlive: a registry that accepts the connection and never answers is lost after the timeout; the stream is ended cleanly', async () => {
  // A frozen gateway as the network sees it: the kernel accepted the connection, nobody reads or answers.
  const sockets: Socket[] = [];
  let received = '';
  const changed = new Set<() => void>();
  const raw = createNetServer((socket) => {
    sockets.push(socket);
    socket.setEncoding('utf8').on('data', (d: string) => {
      received += d;
      for (const c of changed) c();
    });
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  defer(() => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    raw.close(resolve);
  }));
  const seen = (text: string) => new Promise<void>((resolve) => {
    const check = () => {
      if (!received.includes(text)) return;
      changed.delete(check);
      resolve();
    };
    changed.add(check);
    check();
  });
  const clock = new FakeClock();
  const registry = new HttpRegistry({ url: `http://127.0.0.1:${(raw.address() as AddressInfo).port}`, token: 'secret', clock });
  const ka = registry.keepAlive('lease-1', { interval: 1000, timeout: 1500 });
  let loss: LeaseLoss | undefined;
  void ka.lost.then((l) => { loss = l; });
  await seen('/registry/v1/leases/lease-1/keepalive');
  clock.advance(1000);
  await seen('1\r\n\n\r\n');
  clock.advance(499);
  await turn();
  await turn();
  assert.equal(loss, undefined, 'not lost before the timeout');
  clock.advance(1);
  const l = await ka.lost;
  assert.equal(l.kind, 'disconnected');
  assert.equal(l.kind === 'disconnected' ? l.silentMs : undefined, 1500);
  assert.match(l.kind === 'disconnected' ? l.error.message : '', /no answer on the keep-alive stream for 1500 ms/);
  // The last chunk of a chunked body: a gateway that wakes up reads a clean end, not this process's crash.
  await seen('0\r\n\r\n');
  await registry.close();
});

/** A gateway child process routing `shop` to its registered instances. */
const shopGateway = async () => track(await startGateway({ services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] }));

test('a frozen gateway (SIGSTOP): the SDK notices, keeps beating to the other gateway (never leaves it), and is a member again after SIGCONT', async (t) => {
  const [a, b] = [await shopGateway(), await shopGateway()];
  // A lease as short as the registry allows beats, so a stall of the beats to B would show as a departure.
  const inst = track(await spawnInstance({ registry: [a.adminUrl, b.adminUrl], service: 'shop', ttl: 2000, heartbeatInterval: 500 }));
  // Every snapshot B's registry publishes, from before the freeze to the end.
  const fromB: ServiceSnapshot[] = [];
  const watcher = new HttpRegistry({ url: b.adminUrl, token: tokenFor(new URL(b.adminUrl)) });
  defer(() => watcher.close());
  void (async () => { for await (const s of watcher.watch('shop')) fromB.push(s); })();
  await until(() => fromB.some((s) => s.instances.some((i) => i.id === inst.id)), 5000, 'the instance in B');
  await until(async () => (await registrySnapshot(a.adminUrl, 'shop')).instances.some((i) => i.id === inst.id), 5000, 'the instance in A');

  const frozeAt = performance.now();
  a.proc.kill('SIGSTOP');
  defer(async () => { a.proc.kill('SIGCONT'); });
  const noticed = await inst.waitForLine((l) => l.msg === 'registry not answering; reconnecting' && l.registry === a.adminUrl, 15_000);
  const noticedMs = performance.now() - frozeAt;

  // B's clock must run past a whole lease after the freeze: a probe registered now with the same
  // TTL and no heartbeat expires first only if the instance's beats to B kept going.
  const probeRegistry = new HttpRegistry({ url: b.adminUrl, token: tokenFor(new URL(b.adminUrl)) });
  defer(() => probeRegistry.close());
  await probeRegistry.register({ service: 'probe', id: 'probe-1', address: '127.0.0.1:1', ttl: 2000 });
  await b.waitForLog((l) => l.msg === 'registry' && l.change === 'expired' && l.instance === 'probe-1', 15_000);
  assert.ok((await registrySnapshot(b.adminUrl, 'shop')).instances.some((i) => i.id === inst.id && i.state === 'ready'), 'still a member of B');
  const afterFirst = fromB.slice(fromB.findIndex((s) => s.instances.some((i) => i.id === inst.id)));
  assert.ok(afterFirst.every((s) => s.instances.some((i) => i.id === inst.id)), `never left B: ${JSON.stringify(afterFirst)}`);
  assert.ok(!inst.lines.some((l) => l.registry === b.adminUrl && String(l.msg).includes('reconnecting')), 'the stream to B never broke');

  const thawedAt = performance.now();
  a.proc.kill('SIGCONT');
  await until(async () => (await registrySnapshot(a.adminUrl, 'shop')).instances.some((i) => i.id === inst.id && i.state === 'ready'), 15_000, 'the instance back in A');
  const backMs = performance.now() - thawedAt;
  t.diagnostic(`SIGSTOP → noticed after ${Math.round(noticedMs)} ms (silent ${String(noticed.silentMs)} ms); SIGCONT → a member of A again after ${Math.round(backMs)} ms`);
});

function recorder() {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  const push = (level: string) => (fields: Record<string, unknown>) => {
    lines.push({ level, ...fields });
    for (const w of [...waiters]) w();
  };
  const waitFor = (pred: (l: Record<string, unknown>) => boolean, ms = 15_000) => new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      waiters.delete(check);
      reject(new Error(`no such log line within ${ms} ms: ${JSON.stringify(lines)}`));
    }, ms);
    const check = () => {
      const hit = lines.find(pred);
      if (!hit) return;
      waiters.delete(check);
      clearTimeout(timer);
      resolve(hit);
    };
    waiters.add(check);
    check();
  });
  return { logger: { info: push('info'), warn: push('warn') }, lines, waitFor };
}

/**
 * An instance of `shop` registered with the gateway at `adminUrl` (heartbeats every 500 ms), with
 * one request in flight that its server holds until `release()`.
 */
async function instanceWithHeldRequest(adminUrl: string) {
  let release!: () => void;
  const held = new Promise<void>((resolve) => { release = resolve; });
  let started!: () => void;
  const inFlight = new Promise<void>((resolve) => { started = resolve; });
  const server: Server = createServer((_req, res) => {
    started();
    void held.then(() => res.end('done'));
  }).listen(0, '127.0.0.1');
  const log = recorder();
  const instance = await serve(server, { service: 'shop', registry: adminUrl, handleSignals: false, logger: log.logger, drainQuietPeriod: 0, heartbeatInterval: 500 });
  defer(async () => { release(); await instance.close(); });
  const slow = fetch(`http://${instance.address}/slow`).then((r) => r.text());
  await inFlight;
  return { instance, log, slow, release };
}

test('a drain begun while a gateway is frozen reaches it when it wakes: the instance is draining there, not ready', async () => {
  const a = await shopGateway();
  const { instance, log, slow, release } = await instanceWithHeldRequest(a.adminUrl);

  a.proc.kill('SIGSTOP');
  defer(async () => { a.proc.kill('SIGCONT'); });
  await log.waitFor((l) => l.msg === 'registry not answering; reconnecting');
  const closing = instance.close();
  // The frozen gateway cannot acknowledge it; the drain goes on (bounded wait) without it.
  await log.waitFor((l) => l.msg === 'state change not acknowledged' && l.state === 'draining');
  a.proc.kill('SIGCONT');
  await until(async () => (await registrySnapshot(a.adminUrl, 'shop')).instances.some((i) => i.id === instance.id && i.state === 'draining'), 15_000, 'draining in A');
  // Not left to the request sent during the freeze (it may never arrive): the SDK sends it again once the gateway answers.
  await log.waitFor((l) => l.msg === 'state sent again' && l.state === 'draining');
  release();
  assert.equal(await slow, 'done');
  await closing;
  assert.equal((await registrySnapshot(a.adminUrl, 'shop')).instances.length, 0, 'deregistered');
});

test('a frozen gateway replaced by a new process on the same address (its host rebooted): the instance registers again there, same id, still draining', async () => {
  const admin = await freePort();
  const config = { admin: `127.0.0.1:${admin}`, services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }] };
  const a = track(await startGateway(config));
  const { instance, log, slow, release } = await instanceWithHeldRequest(a.adminUrl);

  a.proc.kill('SIGSTOP');
  await log.waitFor((l) => l.msg === 'registry not answering; reconnecting');
  const closing = instance.close();
  await log.waitFor((l) => l.msg === 'state change not acknowledged' && l.state === 'draining');
  a.proc.kill('SIGKILL');
  await a.exited;
  const b = track(await startGateway(config));
  await until(async () => (await registrySnapshot(b.adminUrl, 'shop')).instances.some((i) => i.id === instance.id && i.state === 'draining'), 15_000, 'registered again, draining');
  await log.waitFor((l) => l.msg === 'registered' && l.state === 'draining');
  release();
  assert.equal(await slow, 'done');
  await closing;
  assert.equal((await registrySnapshot(b.adminUrl, 'shop')).instances.length, 0, 'deregistered');
});
