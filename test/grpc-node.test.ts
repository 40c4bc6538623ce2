// tandem/node's serveGrpc(): a real @grpc/grpc-js server (in a child process, or in this one)
// registered with a real gateway's embedded registry, its grpc.health.v1 states, and its drain.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { registrySnapshot, spawnInstance, type SdkInstance } from './helpers/sdk.js';
import { freePort } from './helpers/backend.js';
import { waitFor } from './helpers/wait.js';
import { echoPackage, type EchoReply, type EchoRequest } from './helpers/grpc-echo.js';
import { HEALTH_SERVICE, SERVING_STATUS, serveGrpc } from '../src/node/index.js';

const Health = grpc.makeGenericClientConstructor(HEALTH_SERVICE, 'Health');
const { Echo } = echoPackage();
const quiet = { info: () => {}, warn: () => {} };
const cleanup: Array<() => unknown> = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

const SERVICE = 'echo';
let gw: RunningGateway | undefined;
async function gateway(): Promise<RunningGateway> {
  gw ??= await startGateway({ services: { [SERVICE]: { healthCheck: false } }, routes: [{ prefix: '/', service: SERVICE }] });
  const g = gw;
  cleanup.push(() => g.stop('SIGKILL'));
  return g;
}

function healthClient(address: string): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  const client = new Health(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  cleanup.push(() => client.close());
  return client;
}

function check(client: ReturnType<typeof healthClient>, service: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.Check!({ service }, (err: grpc.ServiceError | null, res?: { status: number }) => (err ? reject(err) : resolve(res!.status)));
  });
}

function spawnGrpc(options: Record<string, unknown>): Promise<SdkInstance> {
  return spawnInstance({ service: SERVICE, ...options }, 'grpc-instance').then((i) => {
    cleanup.push(() => { if (i.proc.exitCode === null && i.proc.signalCode === null) i.proc.kill('SIGKILL'); });
    return i;
  });
}

test('serveGrpc(): registers with the gateway\'s registry (protocol grpc), answers grpc.health.v1 Check and Watch, serves the app\'s calls', async () => {
  const g = await gateway();
  const instance = await spawnGrpc({ registry: g.adminUrl, id: 'grpc-a' });
  const snapshot = await registrySnapshot(g.adminUrl, SERVICE);
  const registered = snapshot.instances.find((i) => i.id === 'grpc-a') as (typeof snapshot.instances)[number] & { metadata?: Record<string, string> };
  assert.equal(registered?.address, instance.address);
  assert.equal(registered.state, 'ready');
  assert.equal(registered.metadata?.protocol, 'grpc', 'a gateway knows to speak gRPC to it');

  const health = healthClient(instance.address);
  assert.equal(await check(health, ''), SERVING_STATUS.SERVING, 'the server as a whole');
  assert.equal(await check(health, SERVICE), SERVING_STATUS.SERVING, 'the tandem service name');
  assert.equal(await check(health, 'tandem.test.Echo'), SERVING_STATUS.SERVING, 'a name from healthServices');
  await assert.rejects(check(health, 'nope.Nope'), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);

  const echo = new Echo(instance.address, grpc.credentials.createInsecure());
  cleanup.push(() => echo.close());
  const reply = await new Promise<EchoReply>((resolve, reject) => {
    (echo as unknown as { get(r: EchoRequest, cb: (e: Error | null, r?: EchoReply) => void): void }).get({ text: 'hi' }, (e, r) => (e ? reject(e) : resolve(r!)));
  });
  assert.deepEqual([reply.text, reply.instance], ['hi', 'grpc-a']);
  instance.proc.kill('SIGTERM');
  assert.equal(await instance.exited, 0);
});

test('serveGrpc(): SIGTERM — Watch says NOT_SERVING, the registry hears "draining", a call in flight finishes, new calls are refused (GOAWAY), deregistered, exit 0', async () => {
  const g = await gateway();
  const instance = await spawnGrpc({ registry: g.adminUrl, id: 'grpc-drain', drainQuietPeriod: 50 });
  const health = healthClient(instance.address);
  const statuses: number[] = [];
  const watch = health.Watch!({ service: '' }) as grpc.ClientReadableStream<{ status: number }>;
  watch.on('data', (m: { status: number }) => statuses.push(m.status));
  watch.on('error', () => {});
  await waitFor('the first Watch message', () => statuses.length > 0);
  assert.deepEqual(statuses, [SERVING_STATUS.SERVING]);

  const echo = new Echo(instance.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { get(r: EchoRequest, cb: (e: grpc.ServiceError | null, r?: EchoReply) => void): void };
  cleanup.push(() => echo.close());
  const unary = (req: EchoRequest) => new Promise<{ err: grpc.ServiceError | null; reply?: EchoReply }>((resolve) => echo.get(req, (err, reply) => resolve({ err, reply })));
  // The slow call is in the instance's hands before SIGTERM, held until SIGUSR2.
  let slowDone = false;
  const slow = unary({ text: 'slow', delayMs: -1 }).finally(() => { slowDone = true; });
  await instance.waitForLine((l) => l.msg === 'call' && l.text === 'slow');
  instance.proc.kill('SIGTERM');
  await instance.waitForLine((l) => l.msg === 'draining');
  await waitFor('Watch: NOT_SERVING', () => statuses.includes(SERVING_STATUS.NOT_SERVING));
  await waitFor('the registry hears "draining"', async () => (await registrySnapshot(g.adminUrl, SERVICE)).instances.find((i) => i.id === 'grpc-drain')?.state === 'draining');
  await instance.waitForLine((l) => l.msg === 'refusing new calls');
  const refused = await unary({ text: 'during the drain' });
  assert.equal(refused.err?.code, grpc.status.UNAVAILABLE, 'a new call while draining is refused (GOAWAY on the connection, the listener closed)');
  assert.equal(instance.lines.some((l) => l.text === 'during the drain'), false, 'it never reached the handler');
  assert.equal(slowDone, false, 'the call in flight is still running');
  assert.equal(instance.proc.exitCode, null, 'the process waits for it');
  instance.proc.kill('SIGUSR2');

  const done = await slow;
  assert.equal(done.err, null, `the call in flight finished: ${done.err?.message}`);
  assert.equal(done.reply?.text, 'slow');
  assert.equal(await instance.exited, 0);
  await instance.waitForLine((l) => l.msg === 'drained');
  const lines = instance.lines.map((l) => l.msg);
  assert.ok(lines.indexOf('answered') < lines.indexOf('drained'), 'drained after the call was answered');
  assert.deepEqual((await registrySnapshot(g.adminUrl, SERVICE)).instances.filter((i) => i.id === 'grpc-drain'), [], 'deregistered');
});

test('serveGrpc(): NOT_SERVING and not registered while a readiness check fails; SERVING and registered once it passes; close() → NOT_SERVING', async () => {
  const g = await gateway();
  const port = await freePort();
  const server = new grpc.Server();
  let ready = false;
  const serving = serveGrpc(server, {
    service: SERVICE, registry: g.adminUrl, id: 'grpc-starting', listen: `127.0.0.1:${port}`,
    readiness: { warm: () => ready }, handleSignals: false, logger: quiet, drainQuietPeriod: 0,
  });
  const health = healthClient(`127.0.0.1:${port}`);
  await waitFor('the health service answers', () => check(health, '').then(() => true, () => false));
  assert.equal(await check(health, ''), SERVING_STATUS.NOT_SERVING, 'starting');
  assert.equal((await registrySnapshot(g.adminUrl, SERVICE)).instances.some((i) => i.id === 'grpc-starting'), false, 'not registered while starting');
  ready = true;
  const instance = await serving;
  assert.equal(instance.port, port);
  assert.equal(instance.health, 'SERVING');
  assert.equal(await check(health, ''), SERVING_STATUS.SERVING);
  assert.equal((await registrySnapshot(g.adminUrl, SERVICE)).instances.find((i) => i.id === 'grpc-starting')?.state, 'ready');
  const closing = instance.close();
  assert.equal(instance.health, 'NOT_SERVING', 'NOT_SERVING as soon as the drain starts');
  await closing;
  assert.equal(instance.state, 'closed');
});

test('serveGrpc(): a call still running after drainTimeout is cancelled and the process exits', async () => {
  const g = await gateway();
  const instance = await spawnGrpc({ registry: g.adminUrl, id: 'grpc-stuck', drainQuietPeriod: 0, drainTimeout: 300 });
  const echo = new Echo(instance.address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { get(r: EchoRequest, cb: (e: grpc.ServiceError | null, r?: EchoReply) => void): void };
  cleanup.push(() => echo.close());
  const stuck = new Promise<grpc.ServiceError | null>((resolve) => echo.get({ text: 'stuck', delayMs: 60_000 }, (err) => resolve(err)));
  await instance.waitForLine((l) => l.msg === 'call' && l.text === 'stuck');
  instance.proc.kill('SIGTERM');
  assert.equal(await instance.exited, 0);
  await instance.waitForLine((l) => l.msg === 'calls still running after drainTimeout; cancelling them');
  const err = await stuck;
  assert.ok(err !== null && (err.code === grpc.status.CANCELLED || err.code === grpc.status.UNAVAILABLE), `the stuck call ends with an error: ${err?.message}`);
});
