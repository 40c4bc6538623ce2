// tandem/client's createGrpcClient(): real @grpc/grpc-js servers (serveGrpc() in child
// processes) registered with a real gateway's embedded registry, called through the engine.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { constants as h2, createServer as createH2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { spawnInstance, type SdkInstance } from './helpers/sdk.js';
import { waitFor } from './helpers/wait.js';
import { echoPackage, type EchoReply, type EchoRequest } from './helpers/grpc-echo.js';
import { createGrpcClient, type GrpcClient, type GrpcServiceError } from '../src/client/index.js';
import { metricsRegistry } from '../src/observe/index.js';

const { Echo } = echoPackage();
const cleanup: Array<() => unknown> = [];
after(async () => { for (const c of cleanup.reverse()) await c(); });

let gw: RunningGateway | undefined;
async function gateway(): Promise<RunningGateway> {
  if (gw === undefined) {
    const g = await startGateway({ services: { placeholder: {} }, routes: [{ prefix: '/', service: 'placeholder' }] });
    cleanup.push(() => g.stop('SIGKILL'));
    gw = g;
  }
  return gw;
}

async function instances(service: string, n: number, extra: Record<string, unknown> = {}): Promise<SdkInstance[]> {
  const g = await gateway();
  return Promise.all(Array.from({ length: n }, (_, i) => spawnInstance({ registry: g.adminUrl, service, id: `${service}-${i}`, heartbeatInterval: 200, ...extra }, 'grpc-instance').then((inst) => {
    cleanup.push(() => { if (inst.proc.exitCode === null && inst.proc.signalCode === null) inst.proc.kill('SIGKILL'); });
    return inst;
  })));
}

function client(service: string, options: Record<string, unknown> = {}): GrpcClient {
  const c = createGrpcClient(service, Echo.service, { registry: gw!.adminUrl, ...options });
  cleanup.push(() => c.close());
  return c;
}

type Outcome = { err: GrpcServiceError | null; reply?: EchoReply };
function call(c: GrpcClient, method: 'get' | 'put', req: EchoRequest, options?: { deadline?: number; metadata?: grpc.Metadata }): Promise<Outcome> {
  return new Promise((resolve) => {
    const done = (err: GrpcServiceError | null, reply?: unknown) => resolve({ err, reply: reply as EchoReply | undefined });
    if (options?.metadata !== undefined) c[method]!(req, options.metadata, { deadline: options.deadline }, done);
    else if (options?.deadline !== undefined) c[method]!(req, { deadline: options.deadline }, done);
    else c[method]!(req, done);
  });
}

/** Calls sent at `rate` per second, whatever happened to the earlier ones (open loop); resolves with every outcome. */
async function openLoop(count: number, rate: number, send: (i: number) => Promise<Outcome>, onSent?: (i: number) => void): Promise<Outcome[]> {
  const outcomes: Array<Promise<Outcome>> = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    outcomes.push(send(i));
    onSent?.(i);
  }
  return Promise.all(outcomes);
}

/** Waits until the instances' logs (read from their stdout, which may lag behind the calls' answers) hold `n` calls of `method`. */
const logged = (group: readonly SdkInstance[], method: string, n: number) => waitFor(`${n} ${method} calls in the instances' logs`, () => group.reduce((sum, g) => sum + callsTo(g, method).length, 0) >= n);
const callsTo = (inst: SdkInstance, method: string) => inst.lines.filter((l) => l.msg === 'call' && l.method === method).map((l) => String(l.text));

test('createGrpcClient(): calls spread over the registered instances, with grpc-js\'s signatures; the deadline reaches the instance as grpc-timeout', async () => {
  const group = await instances('spread', 3);
  const c = client('spread');
  const outcomes = await Promise.all(Array.from({ length: 60 }, (_, i) => call(c, i % 2 ? 'get' : 'put', { text: `m${i}` })));
  assert.deepEqual(outcomes.filter((o) => o.err !== null).map((o) => o.err!.message), []);
  assert.deepEqual(outcomes.map((o) => o.reply!.text), Array.from({ length: 60 }, (_, i) => `m${i}`));
  const by = new Map<string, number>();
  for (const o of outcomes) by.set(o.reply!.instance, (by.get(o.reply!.instance) ?? 0) + 1);
  assert.deepEqual([...by.keys()].sort(), group.map((g) => g.id).sort(), `every instance took calls: ${JSON.stringify([...by])}`);

  const md = new grpc.Metadata();
  md.set('x-caller', 'test');
  const timed = await call(c, 'Get' as 'get', { text: 'timed' }, { deadline: Date.now() + 5000, metadata: md });
  assert.equal(timed.err, null);
  assert.ok(timed.reply!.deadlineMs > 0 && timed.reply!.deadlineMs <= 5000, `the instance saw the call's deadline: ${timed.reply!.deadlineMs} ms`);
  const untimed = await call(c, 'get', { text: 'untimed' });
  assert.ok(untimed.reply!.deadlineMs > 0 && untimed.reply!.deadlineMs <= 15_000, `without a deadline, the service timeout (15 s) is the call's deadline: ${untimed.reply!.deadlineMs} ms`);
});

test('createGrpcClient(): SIGKILL of an instance under load — 0 failed calls; the calls it held are answered by the others', async () => {
  const survivors = await instances('kill', 2);
  // The victim holds every call it gets (a slow instance): calls are in flight there when it dies.
  const [victim] = await instances('kill', 1, { id: 'kill-victim', hold: true });
  // No hedging: the calls it holds are saved by the retry after the reset, not by a hedge.
  const c = client('kill', { settings: { hedge: false } });
  let killedAt = -1;
  const outcomes = await openLoop(300, 100, (i) => call(c, 'get', { text: `k${i}`, delayMs: 20 }, { deadline: Date.now() + 10_000 }), (i) => {
    if (killedAt < 0 && i >= 50 && callsTo(victim!, 'Get').length > 0) {
      killedAt = i;
      victim!.proc.kill('SIGKILL');
    }
  });
  assert.ok(killedAt > 0, 'the victim was killed while holding calls');
  assert.equal(await victim!.exited, 'SIGKILL');
  const lost = callsTo(victim!, 'Get');
  assert.ok(lost.length > 0, 'calls were in flight at the victim when it died');
  const failed = outcomes.filter((o) => o.err !== null);
  assert.deepEqual(failed.map((o) => `${o.err!.code} ${o.err!.details}`), [], '0 failed calls');
  const replies = new Map(outcomes.map((o) => [o.reply!.text, o.reply!.instance]));
  const survivorIds = survivors.map((s) => s.id);
  for (const text of lost) assert.ok(survivorIds.includes(replies.get(text)!), `${text}, held by the victim, was answered by a survivor`);
});

test('createGrpcClient(): UNAVAILABLE from an instance is retried elsewhere for idempotent methods only; a non-idempotent call is never run twice', async () => {
  const [healthy] = await instances('flaky', 1);
  const [broken] = await instances('flaky', 1, { id: 'flaky-broken', unavailable: true });
  // Round robin: the broken instance gets every other first attempt (until it is ejected).
  const idempotent = client('flaky', { settings: { balancer: 'round-robin', hedge: false } });
  const echoes = await Promise.all(Array.from({ length: 20 }, (_, i) => call(idempotent, 'get', { text: `e${i}` })));
  assert.deepEqual(echoes.filter((o) => o.err !== null).map((o) => o.err!.message), [], 'every idempotent call succeeded');
  await logged([broken!], 'Get', 1); // the broken instance answered some of them UNAVAILABLE first
  assert.ok(echoes.every((o) => o.reply!.instance === healthy!.id));

  const writes = client('flaky', { settings: { balancer: 'round-robin', hedge: false } });
  const charges = await Promise.all(Array.from({ length: 20 }, (_, i) => call(writes, 'put', { text: `c${i}` })));
  const failed = charges.flatMap((o, i) => (o.err === null ? [] : [`c${i}`]));
  assert.ok(failed.length > 0, 'some writes reached the broken instance');
  await logged([healthy!, broken!], 'Put', 20);
  assert.ok(charges.every((o) => o.err === null || o.err.code === grpc.status.UNAVAILABLE), 'they fail with UNAVAILABLE');
  assert.deepEqual(failed.sort(), callsTo(broken!, 'Put').sort(), 'exactly the writes the broken instance took failed: none was sent again');
  const ran = [...callsTo(healthy!, 'Put'), ...callsTo(broken!, 'Put')];
  assert.equal(ran.length, new Set(ran).size, 'no write ran twice');
});

test('createGrpcClient(): errors carry gRPC status codes — UNAVAILABLE with no instance, DEADLINE_EXCEEDED past the deadline, CANCELLED on cancel(), the instance\'s own status', async () => {
  await gateway();
  const none = client('nobody');
  const unavailable = await call(none, 'get', { text: 'x' });
  assert.equal(unavailable.err?.code, grpc.status.UNAVAILABLE);
  assert.match(unavailable.err!.message, /^14 UNAVAILABLE: service nobody has no endpoint available/);
  assert.ok(unavailable.err!.metadata instanceof grpc.Metadata, 'metadata is a grpc-js Metadata');

  const [slow] = await instances('errors', 1);
  // Calls are logged with their method and status: by default those that did not end OK.
  const logged: Array<{ level: string } & Record<string, unknown>> = [];
  const logger = { info: (f: Record<string, unknown>) => logged.push({ level: 'info', ...f }), warn: (f: Record<string, unknown>) => logged.push({ level: 'warn', ...f }) };
  const c = client('errors', { logger });
  const late = await call(c, 'put', { text: 'late', delayMs: 60_000 }, { deadline: Date.now() + 300 });
  assert.equal(late.err?.code, grpc.status.DEADLINE_EXCEEDED, late.err?.message);
  const past = await call(c, 'put', { text: 'past' }, { deadline: Date.now() - 1 });
  assert.equal(past.err?.code, grpc.status.DEADLINE_EXCEEDED);
  assert.equal(callsTo(slow!, 'Put').includes('past'), false, 'a call whose deadline has passed is not sent');

  const cancelled = new Promise<GrpcServiceError | null>((resolve) => {
    const pending = c.put!({ text: 'held', delayMs: -1 }, (err) => resolve(err));
    void slow!.waitForLine((l) => l.msg === 'call' && l.text === 'held').then(() => pending.cancel());
  });
  assert.equal((await cancelled)?.code, grpc.status.CANCELLED);

  const [refusing] = await instances('refusing', 1, { unavailable: true });
  const r = client('refusing');
  const answered = await call(r, 'put', { text: 'no' });
  assert.equal(answered.err?.code, grpc.status.UNAVAILABLE);
  assert.equal(answered.err?.details, `${refusing!.id} cannot serve (test)`, 'the instance\'s own message');
  // The process's metrics count every call by method and the status its caller got.
  const metrics = await metricsRegistry().metrics();
  const counted = (service: string, method: string, status: number) => Number(new RegExp(`^tandem_client_grpc_calls_total\\{service="${service}",method="/tandem\\.test\\.Echo/${method}",status="${status}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);
  assert.equal(counted('nobody', 'Get', grpc.status.UNAVAILABLE), 1, metrics.split('\n').filter((l) => l.startsWith('tandem_client_grpc')).join('\n'));
  assert.equal(counted('errors', 'Put', grpc.status.DEADLINE_EXCEEDED), 2, 'late and past');
  assert.equal(counted('errors', 'Put', grpc.status.CANCELLED), 1);
  assert.equal(counted('refusing', 'Put', grpc.status.UNAVAILABLE), 1);
  assert.equal(counted('errors', 'Put', grpc.status.OK), 0);
  assert.deepEqual(logged.map((l) => [l.level, l.msg, l.service, l.method, l.grpcCode]), [
    ['warn', 'grpc call', 'errors', '/tandem.test.Echo/Put', 'DEADLINE_EXCEEDED'],
    ['warn', 'grpc call', 'errors', '/tandem.test.Echo/Put', 'DEADLINE_EXCEEDED'],
    ['warn', 'grpc call', 'errors', '/tandem.test.Echo/Put', 'CANCELLED'],
  ]);
  assert.equal(logged[0]!.instance, null, 'no instance answered');
  assert.throws(() => createGrpcClient('x', Echo.service, { endpoints: ['127.0.0.1:1'], logCalls: 'some' as never }), /options\.logCalls: expected one of "errors", "all", "off", got/);
  // Methods whose requests stream throw when called, saying why (a call sent again or hedged needs its whole request first).
  const streams = c as unknown as Record<'watch' | 'chat', (...args: unknown[]) => void>;
  assert.throws(() => streams.chat(), (err: { code?: string; message: string }) => err.code === 'TANDEM_ERR_INVALID_ARGUMENT'
    && /Chat is a bidirectional streaming method, and tandem's gRPC client makes unary and server-streaming calls only: .*whole request in hand/.test(err.message));
  assert.throws(() => streams.watch({ text: 'x' }, () => {}), /Watch is a server-streaming method: it takes \(request, \[metadata\], \[options\]\) and returns the stream, no callback/);
  assert.throws(() => createGrpcClient('x', Echo.service, { endpoints: ['127.0.0.1:1'], idempotent: ['Gett'] }), /options\.idempotent\[0\]: no method "Gett" in the service — did you mean Get\?/);
});

type StreamOutcome = { messages: EchoReply[]; status: { code: number; details: string }; err: GrpcServiceError | undefined; metadata: boolean };
/** Reads a server stream to its end ('status' and 'end'), `onMessage` told of each message as it is read. */
function readStream(stream: NodeJS.EventEmitter & AsyncIterable<unknown>, onMessage?: (m: EchoReply, n: number) => unknown): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const messages: EchoReply[] = [];
    let status: StreamOutcome['status'] | undefined;
    let err: GrpcServiceError | undefined;
    let metadata = false;
    let ended = false;
    const done = () => { if (status !== undefined && ended) resolve({ messages, status, err, metadata }); };
    stream.on('metadata', (m: unknown) => { metadata = m instanceof grpc.Metadata; });
    stream.on('error', (e: GrpcServiceError) => { err = e; });
    stream.on('status', (s: StreamOutcome['status']) => { status = s; done(); });
    stream.on('end', () => { ended = true; done(); });
    stream.on('data', (m: EchoReply) => { messages.push(m); onMessage?.(m, messages.length); });
  });
}

test('createGrpcClient(): server streams — messages as they come, read no faster than the caller reads; UNAVAILABLE before any message goes to another instance for an idempotent method; cut after messages, UNAVAILABLE; the deadline bounds the whole stream; cancel()', async () => {
  const [a] = await instances('streams', 1);
  const logged: Array<Record<string, unknown>> = [];
  const c = client('streams', { logger: { info: (f: Record<string, unknown>) => logged.push(f), warn: (f: Record<string, unknown>) => logged.push(f) }, logCalls: 'all' });
  const watch = (req: EchoRequest, options?: { deadline?: number }) => (c as unknown as Record<string, (r: EchoRequest, o?: unknown) => NodeJS.EventEmitter & AsyncIterable<unknown> & { cancel(): void; getPeer(): string }>).watch!(req, options);

  const ok = watch({ text: 'w', count: 5, delayMs: 5 }, { deadline: Date.now() + 10_000 });
  const read = await readStream(ok);
  assert.equal(read.err, undefined, read.err?.message);
  assert.deepEqual(read.messages.map((m) => m.text), ['w 0', 'w 1', 'w 2', 'w 3', 'w 4']);
  assert.equal(read.status.code, grpc.status.OK);
  assert.ok(read.metadata, "'metadata' came, a grpc-js Metadata");
  assert.equal(ok.getPeer(), a!.address);
  assert.deepEqual(logged.map((l) => [l.method, l.kind, l.grpcCode, l.instance]), [['/tandem.test.Echo/Watch', 'server-stream', 'OK', a!.address]]);

  // A caller slower than the instance: 300 messages sent at once, read one per turn of the event
  // loop — the stream pauses the exchange past its buffer and resumes it as it is read.
  const many = watch({ text: 'm', count: 300 }, { deadline: Date.now() + 20_000 });
  const texts: string[] = [];
  for await (const m of many) {
    texts.push((m as EchoReply).text);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.deepEqual(texts, Array.from({ length: 300 }, (_, i) => `m ${i}`));

  // The deadline bounds the whole stream, not only its start.
  const late = await readStream(watch({ text: 'late', count: 100, delayMs: 50 }, { deadline: Date.now() + 300 }));
  assert.equal(late.err?.code, grpc.status.DEADLINE_EXCEEDED, late.err?.message);
  assert.ok(late.messages.length >= 1 && late.messages.length < 100, `${late.messages.length} messages before the deadline`);
  await a!.waitForLine((l) => l.msg === 'cancelled' && l.text === 'late');

  // cancel(): CANCELLED, and the instance hears of it.
  const held = watch({ text: 'held', count: 100, delayMs: 50 }, { deadline: Date.now() + 10_000 });
  const cancelled = await readStream(held, (_m, n) => { if (n === 2) held.cancel(); });
  assert.equal(cancelled.err?.code, grpc.status.CANCELLED);
  assert.equal(cancelled.messages.length, 2);
  await a!.waitForLine((l) => l.msg === 'cancelled' && l.text === 'held');

  // The instance killed after 3 messages: the caller's stream ends UNAVAILABLE with what came — never hangs.
  const cut = await readStream(watch({ text: 'cut', count: 1000, delayMs: 20 }, { deadline: Date.now() + 10_000 }), (_m, n) => { if (n === 3) a!.proc.kill('SIGKILL'); });
  assert.equal(cut.err?.code, grpc.status.UNAVAILABLE, cut.err?.message);
  assert.ok(cut.messages.length >= 3 && cut.messages.length < 1000);

  // An instance answering UNAVAILABLE (Trailers-Only, before any message): an idempotent stream
  // goes to the other instance; a stream of a method not known idempotent does not.
  const group = await instances('stream-retry', 2);
  const [down] = await instances('stream-retry', 1, { unavailable: true, id: 'stream-retry-down' });
  const retrying = client('stream-retry', { settings: { balancer: 'round-robin' }, idempotent: ['Watch'] });
  const plain = client('stream-retry', { settings: { balancer: 'round-robin' } });
  await waitFor('both clients use the three instances', () => retrying.snapshot().length === 3 && plain.snapshot().length === 3);
  const open = (cl: GrpcClient, i: number) => readStream((cl as unknown as Record<string, (r: EchoRequest, o?: unknown) => NodeJS.EventEmitter & AsyncIterable<unknown>>).watch!({ text: `r${i}`, count: 2 }, { deadline: Date.now() + 10_000 }));
  const retried = await Promise.all(Array.from({ length: 12 }, (_, i) => open(retrying, i)));
  assert.deepEqual(retried.filter((r) => r.err !== undefined).map((r) => r.err!.message), [], 'every idempotent stream was served');
  assert.ok(down!.lines.some((l) => l.msg === 'call' && l.method === 'Watch'), 'the UNAVAILABLE instance was tried');
  assert.ok(retried.every((r) => r.messages.every((m) => group.some((g) => g.id === m.instance))), 'only the serving instances answered');
  const refused = await Promise.all(Array.from({ length: 12 }, (_, i) => open(plain, i)));
  assert.ok(refused.some((r) => r.err?.code === grpc.status.UNAVAILABLE), 'a stream not known idempotent is not sent again after UNAVAILABLE');

  const metrics = await metricsRegistry().metrics();
  assert.match(metrics, /^tandem_client_grpc_calls_total\{service="streams",method="\/tandem\.test\.Echo\/Watch",status="0"\} 2$/m);
  assert.match(metrics, /^tandem_client_grpc_calls_total\{service="streams",method="\/tandem\.test\.Echo\/Watch",status="4"\} 1$/m);
});

test('createGrpcClient(): an instance drained (SIGTERM) under load of writes — 0 failed calls, none run twice', async () => {
  const group = await instances('drain', 3, { drainQuietPeriod: 100 });
  const leaving = group[0]!;
  const c = client('drain');
  let stopped = false;
  const outcomes = await openLoop(300, 100, (i) => call(c, 'put', { text: `d${i}`, delayMs: 100 }), (i) => {
    if (!stopped && i >= 100) {
      stopped = true;
      leaving.proc.kill('SIGTERM');
    }
  });
  assert.equal(await leaving.exited, 0);
  assert.deepEqual(outcomes.filter((o) => o.err !== null).map((o) => o.err!.message), [], '0 failed calls');
  await logged(group, 'Put', 300);
  const ran = group.flatMap((g) => callsTo(g, 'Put'));
  assert.equal(ran.length, new Set(ran).size, 'no write ran twice');
  assert.ok(callsTo(leaving, 'Put').length > 0, 'the leaving instance took calls before it drained');
  await waitFor('the survivors answer everything', () => outcomes.slice(250).every((o) => o.reply!.instance !== leaving.id));
});

test('createGrpcClient(): a call an instance refused unprocessed (above a GOAWAY\'s last stream, or REFUSED_STREAM) goes to another instance, even a write', async () => {
  const [good] = await instances('refuse', 1);
  // A raw HTTP/2 peer that answers one call in three and refuses the others unprocessed, in
  // turn: a GOAWAY whose last stream id is the call it answered before (the client's nghttp2
  // then fails the newer stream with REFUSED_STREAM), and RST_STREAM(REFUSED_STREAM).
  const seen: string[] = [];
  const answered: string[] = [];
  let lastAnswered = 0;
  const raw = createH2Server();
  raw.on('stream', (stream) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const turn = seen.length % 3;
      if (turn === 0) {
        seen.push('answered');
        lastAnswered = stream.id!;
        const request = Echo.service.Put!.requestDeserialize(Buffer.concat(chunks).subarray(5)) as EchoRequest;
        answered.push(request.text!);
        const message = Echo.service.Put!.responseSerialize({ text: request.text, instance: 'raw', deadlineMs: -1 });
        const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), message]);
        framed.writeUInt32BE(message.length, 1);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(framed);
      } else if (turn === 1) {
        seen.push('goaway');
        stream.session?.goaway(h2.NGHTTP2_NO_ERROR, lastAnswered);
      } else {
        seen.push('refused-stream');
        stream.close(h2.NGHTTP2_REFUSED_STREAM);
      }
    });
  });
  // Its sessions end with the test: a server session whose stream was refused (never answered) stays open.
  const sessions = new Set<ServerHttp2Session>();
  raw.on('session', (session) => { sessions.add(session); session.once('close', () => sessions.delete(session)); });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => {
    raw.close(() => resolve());
    for (const session of sessions) session.destroy();
  }));
  const rawAddress = `127.0.0.1:${(raw.address() as AddressInfo).port}`;
  const c = createGrpcClient('refuse', Echo.service, { endpoints: [rawAddress, good!.address], settings: { balancer: 'round-robin', hedge: false, outlier: { consecutiveFailures: 1000 } } });
  cleanup.push(() => c.close());
  const outcomes: Outcome[] = [];
  for (let i = 0; i < 12; i++) outcomes.push(await call(c, 'put', { text: `r${i}` }, { deadline: Date.now() + 5000 }));
  assert.deepEqual(outcomes.filter((o) => o.err !== null).map((o) => o.err!.message), [], 'every write succeeded');
  assert.ok(seen.includes('goaway') && seen.includes('refused-stream'), `both refusals happened: ${seen.join(', ')}`);
  await logged([good!], 'Put', 12 - answered.length);
  const ran = [...answered, ...callsTo(good!, 'Put')].sort();
  assert.deepEqual(ran, outcomes.map((_, i) => `r${i}`).sort(), 'each write ran exactly once');
});

test('createGrpcClient() with fixed endpoints (no registry tells it of the drain): an instance drained under load of writes — 0 failed calls, none run twice', async () => {
  const group = await instances('fixed', 3, { drainQuietPeriod: 0 });
  const leaving = group[0]!;
  const c = createGrpcClient('fixed', Echo.service, { endpoints: group.map((g) => g.address) });
  cleanup.push(() => c.close());
  let stopped = false;
  const outcomes = await openLoop(300, 100, (i) => call(c, 'put', { text: `f${i}`, delayMs: 100 }), (i) => {
    if (!stopped && i >= 100) {
      stopped = true;
      leaving.proc.kill('SIGTERM');
    }
  });
  assert.equal(await leaving.exited, 0);
  assert.deepEqual(outcomes.filter((o) => o.err !== null).map((o) => o.err!.message), [], '0 failed calls');
  await logged(group, 'Put', 300);
  const ran = group.flatMap((g) => callsTo(g, 'Put'));
  assert.equal(ran.length, new Set(ran).size, 'no write ran twice');
  assert.equal(ran.length, 300);
});

test('createGrpcClient(): an idempotent call stuck at an instance is hedged to another; a write is not', async () => {
  const [fast] = await instances('hedged', 1);
  const c = client('hedged', { settings: { balancer: 'round-robin' } });
  // The hedge delay is a recent percentile: it needs samples first.
  for (let i = 0; i < 60; i++) assert.equal((await call(c, 'get', { text: `w${i}` })).err, null);
  const [stuck] = await instances('hedged', 1, { id: 'hedged-stuck', hold: true });
  await waitFor('the client uses both instances', () => c.snapshot().length === 2);
  const reads = await Promise.all(Array.from({ length: 20 }, (_, i) => call(c, 'get', { text: `h${i}` }, { deadline: Date.now() + 10_000 })));
  assert.deepEqual(reads.filter((o) => o.err !== null).map((o) => o.err!.message), [], 'every read succeeded');
  await logged([stuck!], 'Get', 1); // some reads went to the stuck instance first
  assert.ok(reads.every((o) => o.reply!.instance === fast!.id), 'the hedges answered them');

  const writes = await Promise.all(Array.from({ length: 6 }, (_, i) => call(c, 'put', { text: `x${i}` }, { deadline: Date.now() + 1000 })));
  const failed = writes.flatMap((o, i) => (o.err === null ? [] : [`x${i}`]));
  await logged([fast!, stuck!], 'Put', 6);
  assert.deepEqual(failed.sort(), callsTo(stuck!, 'Put').sort(), 'the writes the stuck instance took were not hedged: they ran out of time');
  assert.ok(failed.length > 0);
  assert.ok(writes.every((o) => o.err === null || o.err.code === grpc.status.DEADLINE_EXCEEDED));
});

test('createGrpcClient(): the calls waiting on an instance paused for a moment (SIGSTOP) count as one sign of silence, not one each; a pause that goes on still ejects it', async () => {
  const group = await instances('pause', 3);
  const paused = group[0]!;
  // Round robin: every third first attempt goes to the paused instance; outlier detection as by default (5 in a row).
  const c = client('pause', { settings: { balancer: 'round-robin' } });
  await waitFor('the client uses the three instances', () => c.snapshot().length === 3);
  // Warm: every instance past its cold answers (a race a cold one loses is never held against
  // it), and enough samples for the hedge delay — which the engine works out at most every
  // 100 ms (latency.refresh): a warm-up quicker than that would leave it unknown, and no call hedged.
  const warmFrom = performance.now();
  for (let i = 0; i < 90 || performance.now() - warmFrom < 300; i++) assert.equal((await call(c, 'get', { text: `w${i}` })).err, null);
  const stateOfPaused = () => c.snapshot().find((e) => e.id === paused.address)!.state;
  assert.equal(stateOfPaused(), 'healthy');

  // A pause (a descheduled or throttled process, a GC) with 10 calls waiting on it: their hedges
  // win, and all 10 races are lost in the same moment of silence. Held against the instance one
  // by one, they would be 10 failures in a row — an ejection for 30 s of a healthy instance
  // (which then, with the ejection cap reached, kept an instance that really failed in rotation).
  paused.proc.kill('SIGSTOP');
  cleanup.push(() => paused.proc.kill('SIGCONT'));
  const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => call(c, 'get', { text: `b${i}` }, { deadline: Date.now() + 10_000 })));
  const unanswered = burst.filter((o) => o.err !== null).map((o) => o.err!.message);
  // On failure, the client's own counts for the service say whether hedges went, or why not.
  const counts = unanswered.length === 0 ? '' : (await metricsRegistry().metrics()).split('\n').filter((l) => l.includes('service="pause"')).join('\n');
  assert.deepEqual(unanswered, [], `every call was answered (by a hedge when it went to the paused instance)\n${counts}`);
  assert.equal(burst.filter((o) => o.reply!.instance === paused.id).length, 0, 'the paused instance answered none');
  assert.equal(stateOfPaused(), 'healthy', 'one pause with many calls waiting on it did not eject the instance');

  // The pause goes on: calls keep losing races to it, one after another — it is ejected.
  let sent = 0;
  while (stateOfPaused() !== 'ejected') {
    assert.ok(sent < 3000, `the instance still paused is ejected (after ${sent} calls it is ${stateOfPaused()})`);
    const o = await call(c, 'get', { text: `p${sent++}` }, { deadline: Date.now() + 10_000 });
    assert.equal(o.err, null, o.err?.message);
  }
  paused.proc.kill('SIGCONT');
});
