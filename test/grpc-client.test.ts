// tandem/client's createGrpcClient(): real @grpc/grpc-js servers (serveGrpc() in child
// processes) registered with a real gateway's embedded registry, called through the engine.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { constants as h2, createServer as createH2Server, type Http2Server, type ServerHttp2Session } from 'node:http2';
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


/**
 * Starts a raw node:http2 server on a free port; it and its sessions end with the test (a
 * server session whose stream was refused, never answered, would stay open).
 */
async function listenRaw(raw: Http2Server): Promise<string> {
  const sessions = new Set<ServerHttp2Session>();
  raw.on('session', (session) => { sessions.add(session); session.once('close', () => sessions.delete(session)); });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => {
    raw.close(() => resolve());
    for (const session of sessions) session.destroy();
  }));
  return `127.0.0.1:${(raw.address() as AddressInfo).port}`;
}

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
  // A streaming method called with the wrong arguments throws, saying which it takes (as grpc-js throws).
  const streams = c as unknown as Record<'watch' | 'chat' | 'collect', (...args: unknown[]) => void>;
  assert.throws(() => streams.chat(() => {}), (err: { code?: string; message: string }) => err.code === 'TANDEM_ERR_INVALID_ARGUMENT'
    && /Chat is a bidirectional streaming method: it takes \(\[metadata\], \[options\]\) and returns the stream, no callback/.test(err.message));
  assert.throws(() => streams.collect({ deadline: Date.now() + 1000 }), /Collect is a client-streaming method: the last argument must be a callback/);
  assert.throws(() => streams.watch({ text: 'x' }, () => {}), /Watch is a server-streaming method: it takes \(request, \[metadata\], \[options\]\) and returns the stream, no callback/);
  assert.throws(() => createGrpcClient('x', Echo.service, { endpoints: ['127.0.0.1:1'], retryBuffer: -1 }), /options\.retryBuffer: expected/);
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
  const rawAddress = await listenRaw(raw);
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

// Client-streaming (Collect) and bidirectional (Chat) calls: helpers/grpc-instance.ts logs each
// request message it reads ({"msg":"message","method","text"}).
type ChatStream = NodeJS.EventEmitter & AsyncIterable<unknown> & { write(m: EchoRequest): boolean; end(): void; cancel(): void; getPeer(): string; writableNeedDrain: boolean };
type CollectStream = NodeJS.EventEmitter & { write(m: EchoRequest): boolean; end(): void; cancel(): void; getPeer(): string };
const chat = (c: GrpcClient, ...args: unknown[]) => (c as unknown as Record<string, (...a: unknown[]) => ChatStream>).chat!(...args);
const messagesTo = (inst: SdkInstance, method: string) => inst.lines.filter((l) => l.msg === 'message' && l.method === method).map((l) => String(l.text));

type CollectOutcome = Outcome & { events: string[]; status?: { code: number; details: string }; stream: CollectStream };
/** A client-streaming call: `texts` written (then end()), resolved once both the callback and 'status' came. */
function collect(c: GrpcClient, texts: readonly string[], ...args: unknown[]): Promise<CollectOutcome> {
  return new Promise((resolve) => {
    const events: string[] = [];
    const out = { err: null, events } as unknown as CollectOutcome;
    let pending = 2;
    const done = () => { if (--pending === 0) resolve(out); };
    const stream = (c as unknown as Record<string, (...a: unknown[]) => CollectStream>).collect!(...args, (err: GrpcServiceError | null, reply?: EchoReply) => {
      events.push('callback');
      out.err = err;
      out.reply = reply;
      done();
    });
    out.stream = stream;
    stream.on('metadata', (m: unknown) => events.push(`metadata ${m instanceof grpc.Metadata}`));
    stream.on('status', (s: { code: number; details: string }) => {
      events.push(`status ${s.code}`);
      out.status = s;
      done();
    });
    for (const text of texts) stream.write({ text });
    stream.end();
  });
}

/**
 * A conversation: `first` written at once, then each reply answered by the next of `then` (the
 * call ended after the last), so some messages are written after the call has gone out.
 */
function converse(c: GrpcClient, first: readonly string[], then: readonly string[], options: Record<string, unknown> = { deadline: Date.now() + 10_000 }, firstFields: Partial<EchoRequest> = {}): Promise<StreamOutcome> {
  const s = chat(c, options);
  const rest = [...then];
  let ended = false;
  const read = readStream(s, () => {
    const next = rest.shift();
    if (next !== undefined) s.write({ text: next });
    else if (rest.length === 0 && !ended) {
      ended = true;
      s.end();
    }
  });
  first.forEach((text, i) => s.write({ text, ...(i === 0 ? firstFields : {}) }));
  return read;
}

const counted = async (service: string, method: string, status: number) => Number(new RegExp(`^tandem_client_grpc_calls_total\\{service="${service}",method="/tandem\\.test\\.Echo/${method}",status="${status}"\\} (\\d+)$`, 'm').exec(await metricsRegistry().metrics())?.[1] ?? 0);
const retries = async (service: string, reason: string) => Number(new RegExp(`^tandem_client_retries_total\\{service="${service}",reason="${reason}"\\} (\\d+)$`, 'm').exec(await metricsRegistry().metrics())?.[1] ?? 0);

test('createGrpcClient(): client-streaming and bidirectional calls — several messages each way, grpc-js\'s signatures and events; the response side read no faster than the caller reads', async () => {
  const [a] = await instances('rt', 1);
  const logged: Array<Record<string, unknown>> = [];
  const c = client('rt', { logger: { info: (f: Record<string, unknown>) => logged.push(f), warn: (f: Record<string, unknown>) => logged.push(f) }, logCalls: 'all' });

  // Client streaming, in each of grpc-js's argument forms: 'metadata', the callback with the one reply, then 'status'.
  const md = new grpc.Metadata();
  md.set('x-caller', 'test');
  const forms = [[], [md], [{ deadline: Date.now() + 10_000 }], [md, { deadline: Date.now() + 10_000 }]];
  for (const [i, form] of forms.entries()) {
    const o = await collect(c, [`a${i}`, `b${i}`, `c${i}`], ...form);
    assert.equal(o.err, null, o.err?.message);
    assert.equal(o.reply!.text, `a${i},b${i},c${i}`);
    assert.equal(o.reply!.instance, a!.id);
    assert.deepEqual(o.events, ['metadata true', 'callback', 'status 0']);
    assert.equal(o.stream.getPeer(), a!.address);
  }
  const timed = await collect(c, ['t'], { deadline: Date.now() + 5000 });
  assert.ok(timed.reply!.deadlineMs > 0 && timed.reply!.deadlineMs <= 5000, `the instance saw the call's deadline: ${timed.reply!.deadlineMs} ms`);

  // Bidirectional: three written at once, then a conversation (each reply answered).
  const talk = await converse(c, ['x', 'y', 'z'], ['u', 'v']);
  assert.equal(talk.err, undefined, talk.err?.message);
  assert.deepEqual(talk.messages.map((m) => m.text), ['re: x', 're: y', 're: z', 're: u', 're: v']);
  assert.equal(talk.status.code, grpc.status.OK);
  assert.ok(talk.metadata, "'metadata' came, a grpc-js Metadata");
  await waitFor('the instance logged the messages', () => messagesTo(a!, 'Chat').length >= 5);
  assert.deepEqual(messagesTo(a!, 'Chat'), ['x', 'y', 'z', 'u', 'v']);

  // A caller slower than the instance: 300 replies to one message, read one per turn of the event loop.
  const many = chat(c, { deadline: Date.now() + 20_000 });
  many.write({ text: 'm', count: 300 });
  many.end();
  const texts: string[] = [];
  for await (const m of many) {
    texts.push((m as EchoReply).text);
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.deepEqual(texts, Array.from({ length: 300 }, (_, i) => `m ${i}`));
  assert.equal(many.getPeer(), a!.address);

  assert.deepEqual(logged.map((l) => [l.kind, l.grpcCode]), [...Array.from({ length: 5 }, () => ['client-stream', 'OK']), ['bidi', 'OK'], ['bidi', 'OK']]);
  assert.equal(await counted('rt', 'Collect', grpc.status.OK), 5);
  assert.equal(await counted('rt', 'Chat', grpc.status.OK), 2);
});

test('createGrpcClient(): a request stream its first instance refused (closed port, REFUSED_STREAM after reading it) goes to another with every message written so far; each is read exactly once', async () => {
  const [good] = await instances('refused-streams', 1);
  // A closed port: the connection is refused before anything is written.
  const closed = createH2Server();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const closedAddress = `127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  // A raw HTTP/2 peer that reads two request messages of each call, then refuses its stream unprocessed.
  const refusedAfter: number[] = [];
  const raw = createH2Server();
  raw.on('stream', (stream) => {
    stream.on('error', () => {});
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (stream.closed || bytes < 2 * (5 + 5)) return; // two frames of a three-character text (field tag, length, text: 5 bytes)
      refusedAfter.push(bytes);
      stream.close(h2.NGHTTP2_REFUSED_STREAM);
    });
  });
  const rawAddress = await listenRaw(raw);
  const settings = { balancer: 'round-robin', hedge: false, outlier: { consecutiveFailures: 1000 } };
  const viaClosed = createGrpcClient('refused-streams', Echo.service, { endpoints: [closedAddress, good!.address], settings });
  const viaRaw = createGrpcClient('refused-raw', Echo.service, { endpoints: [rawAddress, good!.address], settings });
  cleanup.push(() => viaClosed.close(), () => viaRaw.close());

  // Neither method is idempotent: what was refused unprocessed goes again whatever the method.
  const expected: string[] = [];
  for (let i = 0; i < 4; i++) {
    for (const [c, tag] of [[viaClosed, 'c'], [viaRaw, 'r']] as const) {
      const [m0, m1, m2, m3, m4] = ['a', 'b', 'c', 'd', 'e'].map((x) => `${tag}${i}${x}`) as [string, string, string, string, string];
      const talk = await converse(c, [m0, m1], [m2]);
      assert.equal(talk.err, undefined, talk.err?.message);
      assert.deepEqual(talk.messages.map((m) => m.text), [`re: ${m0}`, `re: ${m1}`, `re: ${m2}`]);
      assert.ok(talk.messages.every((m) => m.instance === good!.id));
      const o = await collect(c, [m3, m4]);
      assert.equal(o.err, null, o.err?.message);
      assert.equal(o.reply!.text, `${m3},${m4}`);
      expected.push(m0, m1, m2, m3, m4);
    }
  }
  assert.ok(refusedAfter.length >= 2, `the raw peer read request messages, then refused: ${refusedAfter.length} calls`);
  assert.ok(await retries('refused-streams', 'connect') >= 2, 'calls were refused a connection first');
  await waitFor('every message read', () => messagesTo(good!, 'Chat').length + messagesTo(good!, 'Collect').length >= expected.length);
  assert.deepEqual([...messagesTo(good!, 'Chat'), ...messagesTo(good!, 'Collect')].sort(), expected.sort(), 'each message read exactly once');
});

test('createGrpcClient(): a request stream answered UNAVAILABLE before any response message goes to another instance with its messages when the method is idempotent; otherwise it ends UNAVAILABLE, sent once', async () => {
  const group = await instances('bidi-retry', 2);
  const [down] = await instances('bidi-retry', 1, { unavailable: true, id: 'bidi-retry-down' });
  const settings = { balancer: 'round-robin', hedge: false, outlier: { consecutiveFailures: 1000 } };
  const retrying = client('bidi-retry', { settings, idempotent: ['Chat', 'Collect'] });
  const plain = client('bidi-retry', { settings });
  await waitFor('both clients use the three instances', () => retrying.snapshot().length === 3 && plain.snapshot().length === 3);
  const served = () => group.flatMap((g) => [...messagesTo(g, 'Chat'), ...messagesTo(g, 'Collect')]);

  // Half the calls ask the down instance for its headers first: headers, then UNAVAILABLE with no message.
  const talks = await Promise.all(Array.from({ length: 9 }, (_, i) => converse(retrying, [`i${i}a`, `i${i}b`], [`i${i}c`], undefined, { metadataFirst: i % 2 === 1 })));
  assert.deepEqual(talks.filter((t) => t.err !== undefined).map((t) => t.err!.message), [], 'every idempotent call was served');
  assert.ok(talks.every((t) => t.messages.length === 3 && t.messages.every((m) => group.some((g) => g.id === m.instance))), 'by the serving instances only');
  const collected = await Promise.all(Array.from({ length: 6 }, (_, i) => collect(retrying, [`k${i}a`, `k${i}b`])));
  assert.deepEqual(collected.filter((o) => o.err !== null).map((o) => o.err!.message), []);
  assert.deepEqual(collected.map((o) => o.reply!.text), Array.from({ length: 6 }, (_, i) => `k${i}a,k${i}b`));
  assert.ok(messagesTo(down!, 'Chat').some((t) => t.startsWith('i')) && messagesTo(down!, 'Collect').some((t) => t.startsWith('k')), 'the down instance was tried first by some');
  assert.ok(await retries('bidi-retry', 'grpc-unavailable') >= 2);
  const sentIdempotent = [...Array.from({ length: 9 }, (_, i) => [`i${i}a`, `i${i}b`, `i${i}c`]), ...Array.from({ length: 6 }, (_, i) => [`k${i}a`, `k${i}b`])].flat();
  await waitFor('the serving instances logged every message', () => served().length >= sentIdempotent.length);
  assert.deepEqual(served().sort(), sentIdempotent.sort(), 'each message read exactly once by a serving instance');

  // Not known idempotent: the call may have been processed, so it is not sent again.
  const writes = await Promise.all(Array.from({ length: 9 }, (_, i) => converse(plain, [`n${i}a`], [`n${i}b`])));
  const failed = writes.flatMap((t, i) => (t.err === undefined ? [] : [i]));
  assert.ok(failed.length > 0, 'some calls went to the down instance');
  assert.ok(failed.every((i) => writes[i]!.err!.code === grpc.status.UNAVAILABLE && writes[i]!.status.code === grpc.status.UNAVAILABLE && writes[i]!.messages.length === 0));
  const downChats = () => messagesTo(down!, 'Chat').filter((t) => t.startsWith('n'));
  await waitFor('the down instance logged the calls it failed', () => downChats().length >= failed.length);
  assert.deepEqual(downChats().sort(), failed.map((i) => `n${i}a`).sort(), 'exactly the calls the down instance took failed');
  for (const i of failed) assert.ok(!served().includes(`n${i}a`), `n${i} was not sent again`);
});

test('createGrpcClient(): a request stream is committed once a response message reached the caller — its instance killed then, it ends UNAVAILABLE (never hangs, never sent again); or once its messages overflow the retry buffer', async () => {
  const pair = await instances('committed', 2);
  const c = client('committed', { settings: { hedge: false }, idempotent: ['Chat', 'Collect'] });
  await waitFor('the client uses both instances', () => c.snapshot().length === 2);
  const s = chat(c, { deadline: Date.now() + 20_000 });
  let victim: SdkInstance | undefined;
  const cut = readStream(s, (m) => {
    victim ??= pair.find((p) => p.id === m.instance);
    victim!.proc.kill('SIGKILL');
  });
  s.write({ text: 'cut0' });
  const ended = await cut;
  assert.equal(ended.err?.code, grpc.status.UNAVAILABLE, ended.err?.message);
  assert.equal(ended.status.code, grpc.status.UNAVAILABLE);
  assert.deepEqual(ended.messages.map((m) => m.text), ['re: cut0']);
  assert.equal(await victim!.exited, 'SIGKILL');
  const other = pair.find((p) => p !== victim)!;
  assert.deepEqual(messagesTo(other, 'Chat'), [], 'not sent again to the other instance');

  // A retry buffer of 1 KiB: four messages of 400 bytes overflow it before any answer. On the
  // serving instance the call goes on as usual; at the down one, UNAVAILABLE is final.
  const [serving] = await instances('overflow', 1);
  const [down] = await instances('overflow', 1, { unavailable: true, id: 'overflow-down' });
  const settings = { balancer: 'round-robin', hedge: false, outlier: { consecutiveFailures: 1000 } };
  const small = client('overflow', { settings, idempotent: ['Collect'], retryBuffer: 1024 });
  const roomy = client('overflow', { settings, idempotent: ['Collect'] });
  await waitFor('both clients use both instances', () => small.snapshot().length === 2 && roomy.snapshot().length === 2);
  const texts = (tag: string) => ['a', 'b', 'c', 'd'].map((x) => `${tag}${x}`.padEnd(400, '.'));
  const over: CollectOutcome[] = [];
  for (let i = 0; i < 4; i++) over.push(await collect(small, texts(`o${i}`)));
  const failed = over.flatMap((o, i) => (o.err === null ? [] : [i]));
  assert.ok(failed.length > 0 && failed.length < 4, `both instances took calls first: ${failed.length} of 4 failed`);
  assert.ok(failed.every((i) => over[i]!.err!.code === grpc.status.UNAVAILABLE));
  for (const [i, o] of over.entries()) if (o.err === null) assert.equal(o.reply!.instance, serving!.id, `o${i}`);
  for (const [i, o] of over.entries()) if (o.err === null) assert.equal(o.reply!.text.split(',').length, 4, `o${i}: every message, past the buffer`);
  const shownPrefix = (tag: string) => `${tag}a`.padEnd(16, '.');
  for (const i of failed) assert.ok(!messagesTo(serving!, 'Collect').some((t) => t.startsWith(shownPrefix(`o${i}`))), `o${i} was not sent again`);
  // The same calls with the default buffer (256 KiB) are all served.
  const kept: CollectOutcome[] = [];
  for (let i = 0; i < 4; i++) kept.push(await collect(roomy, texts(`p${i}`)));
  assert.deepEqual(kept.filter((o) => o.err !== null).map((o) => o.err!.message), []);
  assert.ok(kept.every((o) => o.reply!.instance === serving!.id));
  await waitFor('the down instance logged its calls', () => messagesTo(down!, 'Collect').filter((t) => t.startsWith('p')).length > 0);
});

test('createGrpcClient(): request streams — the deadline bounds the whole call (DEADLINE_EXCEEDED, grpc-timeout at the instance); cancel() ends it CANCELLED and resets the stream', async () => {
  const [a] = await instances('stream-ends', 1);
  const logged: Array<Record<string, unknown>> = [];
  const c = client('stream-ends', { logger: { info: (f: Record<string, unknown>) => logged.push(f), warn: (f: Record<string, unknown>) => logged.push(f) } });

  const late = chat(c, { deadline: Date.now() + 500 });
  const lateRead = readStream(late);
  late.write({ text: 'late' });
  const lateEnd = await lateRead;
  assert.equal(lateEnd.err?.code, grpc.status.DEADLINE_EXCEEDED, lateEnd.err?.message);
  assert.equal(lateEnd.messages.length, 1, 'the reply before the deadline came');
  assert.ok(lateEnd.messages[0]!.deadlineMs > 0 && lateEnd.messages[0]!.deadlineMs <= 500, `the instance saw the deadline: ${lateEnd.messages[0]!.deadlineMs} ms`);
  await a!.waitForLine((l) => l.msg === 'cancelled' && l.method === 'Chat' && l.text === 'late');
  const past = await collect(c, ['past'], { deadline: Date.now() - 1 });
  assert.equal(past.err?.code, grpc.status.DEADLINE_EXCEEDED);
  assert.deepEqual(past.events, ['callback', 'status 4']);
  const slow = chat(c, { deadline: Date.now() + 300 });
  const slowRead = readStream(slow);
  const collecting = new Promise<GrpcServiceError | null>((resolve) => {
    const stream = (c as unknown as Record<string, (...a: unknown[]) => CollectStream>).collect!({ deadline: Date.now() + 300 }, (err: GrpcServiceError | null) => resolve(err));
    stream.write({ text: 'never ended' });
  });
  assert.equal((await collecting)?.code, grpc.status.DEADLINE_EXCEEDED);
  assert.equal((await slowRead).err?.code, grpc.status.DEADLINE_EXCEEDED, 'a call with nothing written, nothing answered');

  const held = chat(c, { deadline: Date.now() + 10_000 });
  const heldRead = readStream(held, () => held.cancel());
  held.write({ text: 'held' });
  const cancelled = await heldRead;
  assert.equal(cancelled.err?.code, grpc.status.CANCELLED);
  assert.equal(cancelled.status.code, grpc.status.CANCELLED);
  await a!.waitForLine((l) => l.msg === 'cancelled' && l.method === 'Chat' && l.text === 'held');
  const dropped = await new Promise<GrpcServiceError | null>((resolve) => {
    const s = (c as unknown as Record<string, (...a: unknown[]) => CollectStream>).collect!((err: GrpcServiceError | null) => resolve(err));
    s.write({ text: 'dropped' });
    void a!.waitForLine((l) => l.msg === 'message' && l.method === 'Collect' && l.text === 'dropped').then(() => s.cancel());
  });
  assert.equal(dropped?.code, grpc.status.CANCELLED);
  await a!.waitForLine((l) => l.msg === 'cancelled' && l.method === 'Collect' && l.text === 'dropped');
  assert.deepEqual(logged.map((l) => `${l.kind} ${l.grpcCode}`).sort(), [
    'bidi CANCELLED', 'bidi DEADLINE_EXCEEDED', 'bidi DEADLINE_EXCEEDED', 'client-stream CANCELLED', 'client-stream DEADLINE_EXCEEDED', 'client-stream DEADLINE_EXCEEDED',
  ]);
});

test('createGrpcClient(): request stream backpressure — write() returns false while the instance reads nothing, and \'drain\' comes once it reads again', async () => {
  const [a] = await instances('backpressure', 1);
  const c = client('backpressure');
  // Another client (its own connection) for round trips to the instance: what a 'drain' that is
  // only a local buffer's would come before.
  const probe = client('backpressure');
  const s = chat(c, { deadline: Date.now() + 60_000 });
  const read = readStream(s);
  s.write({ text: 'stop', delayMs: -1 });
  await a!.waitForLine((l) => l.msg === 'message' && l.text === 'stop');
  const big = 'x'.repeat(64 * 1024);
  let written = 0;
  let held = false;
  while (written < 200 && !held) {
    written++;
    if (s.write({ text: `${written}`.padEnd(2, ' ') + big })) continue;
    const drained = once(s, 'drain').then(() => true);
    const probed = call(probe, 'get', { text: 'probe' }).then(() => call(probe, 'get', { text: 'probe' })).then(() => false);
    held = !(await Promise.race([drained, probed]));
  }
  assert.ok(held, `write() returned false and no 'drain' came while the instance read nothing (${written} messages of 64 KiB written)`);
  assert.ok(written < 200);
  assert.equal(s.writableNeedDrain, true);
  assert.deepEqual(messagesTo(a!, 'Chat'), ['stop'], 'the instance read nothing more');
  const drained = once(s, 'drain');
  a!.proc.kill('SIGUSR2');
  await drained;
  s.end();
  const end = await read;
  assert.equal(end.err, undefined, end.err?.message);
  assert.equal(end.messages.length, 1 + written);
  await waitFor('the instance read every message', () => messagesTo(a!, 'Chat').length === 1 + written);
});
