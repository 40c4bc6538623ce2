// gRPC through the gateway (issue 15): real @grpc/grpc-js servers and clients (the .proto in
// test/fixtures/grpc), a real gateway process; raw node:http2 where the frames themselves matter.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, constants, createServer as createH2cServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import { startGateway, clusterService, metricSum, type RunningGateway } from './helpers/gateway.js';
import { freePort, kill } from './helpers/backend.js';
import { call, echoClient, echoClientTls, grpc, spawnEchoServer, startEchoServer, type EchoServer } from './helpers/grpc-echo.js';
import { guarded, nextEvent, waitFor } from './helpers/wait.js';
import { makeServerPki } from './helpers/tls-pki.js';

let gateways: RunningGateway[] = [];
let servers: EchoServer[] = [];
let procs: ChildProcess[] = [];
let clients: grpc.Client[] = [];
/** Closes the scripted instances of the test that just ran (scriptedInstances). */
let closers: Array<() => void> = [];
afterEach(async () => {
  for (const c of clients) c.close();
  for (const close of closers) close();
  closers = [];
  await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  await Promise.all(servers.map((s) => s.close()));
  await Promise.all(procs.map((p) => kill(p)));
  gateways = [];
  servers = [];
  procs = [];
  clients = [];
});

const GET = '/tandem.test.Echo/Get';

async function gatewayFor(endpoints: string[], service: Record<string, unknown> = {}): Promise<RunningGateway> {
  const gw = await startGateway({
    services: { echo: { protocol: 'grpc', endpoints, grpc: { idempotentMethods: [GET] }, ...service } },
    routes: [{ prefix: '/tandem.test.Echo/', service: 'echo' }],
    log: { level: 'info', access: 'errors' },
  });
  gateways.push(gw);
  return gw;
}

function client(gw: RunningGateway): ReturnType<typeof echoClient> {
  const c = echoClient(`${gw.host}:${gw.port}`);
  clients.push(c);
  return c;
}

async function echoServers(n: number): Promise<EchoServer[]> {
  const list = await Promise.all(Array.from({ length: n }, () => startEchoServer()));
  servers.push(...list);
  return list;
}

/** A raw HTTP/2 gRPC call: the response's header frames as they came, and whether the first ended the stream. */
function rawCall(port: number, path: string, headers: Record<string, string> = {}, message = Buffer.alloc(5)): Promise<{ headers: IncomingHttpHeaders; endStream: boolean; trailers: IncomingHttpHeaders | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let first: IncomingHttpHeaders = {};
    let endStream = false;
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h, flags) => { first = h; endStream = (flags & 1) === 1; });
    stream.on('trailers', (t) => { trailers = t; });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('close', () => {
      session.close();
      resolve({ headers: first, endStream, trailers, body: Buffer.concat(chunks) });
    });
    stream.end(message);
  });
}

/** A raw call whose `onFirstData` runs when its first bytes of answer arrive. */
function rawStream(port: number, path: string, onFirstData: () => void): Promise<{ trailers: IncomingHttpHeaders | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    // A deadline: a message held for good ends the call DEADLINE_EXCEEDED, not a hung test.
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '10S' });
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('trailers', (t) => { trailers = t; });
    stream.on('data', (c: Buffer) => {
      if (chunks.push(c) === 1) onFirstData();
    });
    stream.on('close', () => {
      session.close();
      resolve({ trailers, body: Buffer.concat(chunks) });
    });
    stream.end(Buffer.alloc(5));
  });
}

test('calls of one client connection are spread over the instances; statuses, streams and trailers are relayed', async () => {
  const list = await echoServers(3);
  const gw = await gatewayFor(list.map((s) => s.address));
  const c = client(gw);
  const answers = await Promise.all(Array.from({ length: 60 }, (_, i) => call(c, 'Get', { text: `hi ${i}` })));
  assert.deepEqual(answers.filter((a) => a.error !== undefined), []);
  assert.equal(answers[7]!.reply!.text, 'hi 7');
  // One HTTP/2 connection from the client; the calls went to every instance.
  for (const s of list) assert.ok((s.calls.Get ?? 0) > 0, `${s.address} got ${s.calls.Get ?? 0} of 60 calls`);

  // A status from the service (Trailers-Only from grpc-js) reaches the client as it was.
  const notFound = await call(c, 'Put', { text: 'x', failCode: grpc.status.NOT_FOUND });
  assert.equal(notFound.error?.code, grpc.status.NOT_FOUND);
  assert.match(notFound.error!.details, /failing with 5 as asked/);

  // Server streaming: every message, then the status in trailers.
  const watched: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const s = c.Watch({ text: 'w', count: 3, delayMs: 5 });
    s.on('data', (r: { text: string }) => watched.push(r.text));
    s.on('status', (st: grpc.StatusObject) => (st.code === grpc.status.OK ? resolve() : reject(new Error(st.details))));
    s.on('error', reject);
  });
  assert.deepEqual(watched, ['w 0', 'w 1', 'w 2']);

  // Bidirectional: the client keeps its stream open and waits for each answer.
  const chat = c.Chat();
  const said: string[] = [];
  for (const text of ['one', 'two']) {
    const answered = new Promise<void>((resolve) => chat.once('data', (r: { text: string }) => { said.push(r.text); resolve(); }));
    chat.write({ text });
    await answered;
  }
  chat.end();
  assert.deepEqual(said, ['re: one', 're: two']);

  // The raw frames: a relayed Trailers-Only answer is one HEADERS frame that ends the stream.
  const raw = await rawCall(gw.port, '/tandem.test.Echo/Put', {}, Buffer.from([0, 0, 0, 0, 2, 0x18, 0x07]));
  assert.equal(raw.headers['grpc-status'], '7');
  assert.equal(raw.endStream, true);

  // A call no route takes: UNIMPLEMENTED, as a gRPC status.
  const nowhere = await rawCall(gw.port, '/other.Svc/Method');
  assert.equal(nowhere.headers['grpc-status'], String(grpc.status.UNIMPLEMENTED));
  assert.match(String(nowhere.headers['grpc-message']), /TANDEM_ERR_NO_ROUTE/);

  // Metrics carry the method and the status.
  assert.equal(await metricSum(gw, /^tandem_grpc_calls_total\{service="echo",method="\/tandem\.test\.Echo\/Get",status="0"\}/), 60);
  assert.equal(await metricSum(gw, /^tandem_grpc_calls_total\{service="echo",method="\/tandem\.test\.Echo\/Put",status="5"\}/), 1);
});

test('grpc-timeout: the endpoint is told the time left; the gateway ends a call past its deadline with DEADLINE_EXCEEDED', async () => {
  const [s] = await echoServers(1);
  const gw = await gatewayFor([s!.address]);
  const c = client(gw);
  const answer = await call(c, 'Get', { text: 'd' }, { deadline: Date.now() + 3000 });
  const left = answer.reply!.deadlineMs;
  assert.ok(left > 0 && left <= 3000, `the endpoint saw ${left} ms left`);

  // The gateway's own enforcement, seen on the wire: the caller's grpc-timeout is 200 ms and the
  // endpoint never answers — a bare HTTP/2 server that ignores grpc-timeout (grpc-js would end
  // the call itself with its own DEADLINE_EXCEEDED); the client does not time out by itself
  // here (a raw HTTP/2 client).
  const mute = createH2cServer();
  mute.on('stream', (stream) => { stream.on('error', () => {}); });
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
  const muteGw = await gatewayFor([`127.0.0.1:${(mute.address() as AddressInfo).port}`], { healthCheck: false });
  const raw = await rawCall(muteGw.port, GET, { 'grpc-timeout': '200m' });
  mute.close();
  assert.equal(raw.headers[':status'], 200);
  assert.equal(raw.headers['grpc-status'], '4');
  assert.equal(raw.endStream, true, 'Trailers-Only');
  assert.match(String(raw.headers['grpc-message']), /TANDEM_ERR_UPSTREAM_TIMEOUT/);
});

test('a client that cancels its call (RST_STREAM CANCEL) after the first message: the gateway cancels the endpoint\'s stream too', async () => {
  let seen!: (stream: ServerHttp2Stream) => void;
  const atEndpoint = new Promise<ServerHttp2Stream>((resolve) => { seen = resolve; });
  const server = createH2cServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.write(replyFrame('first')); // and never a status
    seen(stream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  const gw = await gatewayFor([`127.0.0.1:${(server.address() as AddressInfo).port}`], { healthCheck: false });
  const session = connect(`http://127.0.0.1:${gw.port}`);
  session.on('error', () => {});
  try {
    const call = session.request({ ':method': 'POST', ':path': '/tandem.test.Echo/Watch', 'content-type': 'application/grpc', te: 'trailers' });
    call.on('error', () => {});
    call.end(Buffer.alloc(5));
    const upstream = await guarded(atEndpoint, 'the call at the endpoint');
    await nextEvent(call, 'data');
    const closed = nextEvent(upstream, 'close');
    call.close(constants.NGHTTP2_CANCEL);
    await closed;
    assert.equal(upstream.rstCode, constants.NGHTTP2_CANCEL);
  } finally {
    session.destroy();
  }
});

test('an endpoint whose stream ends after a message but without a gRPC status (its process killed): the caller gets UNAVAILABLE in trailers, not an unfinished call', async () => {
  const cut = createH2cServer();
  cut.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.end(Buffer.from([0, 0, 0, 0, 0])); // one empty message, then END_STREAM: no trailers
  });
  await new Promise<void>((resolve) => cut.listen(0, '127.0.0.1', resolve));
  const gw = await gatewayFor([`127.0.0.1:${(cut.address() as AddressInfo).port}`], { healthCheck: false });
  const raw = await rawCall(gw.port, '/tandem.test.Echo/Watch');
  cut.close();
  assert.equal(raw.headers[':status'], 200);
  assert.equal(raw.trailers?.['grpc-status'], '14', JSON.stringify(raw));
  assert.match(String(raw.trailers?.['grpc-message']), /without a gRPC status/);
});

/** A gRPC message frame holding an EchoReply whose text is `text`. */
function replyFrame(text: string): Buffer {
  const t = Buffer.from(text);
  const payload = Buffer.concat([Buffer.from([0x0a, t.length]), t]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** What a scripted instance does with one call: its stream (answered 200, trailers to come), and a cut of its connection. */
type Script = (stream: ServerHttp2Stream, cut: () => void) => void;

/** Ends a call the way grpc-js's process does when it is killed between a message and its status. */
const cutAfter = (text: string): Script => (stream, cut) => {
  stream.write(replyFrame(text), cut);
};

/** Sends `texts`, then an OK status, as grpc-js does (the trailers after the last message). */
function answer(stream: ServerHttp2Stream, ...texts: string[]): void {
  for (const t of texts) stream.write(replyFrame(t));
  stream.end();
}
const answerWith = (...texts: string[]): Script => (stream) => answer(stream, ...texts);

/**
 * HTTP/2 instances that play `scripts` in turn, one per call, whichever instance takes it — or
 * the script `scripts` picks for a call by its request headers.
 */
async function scriptedInstances(n: number, scripts: Script[] | ((headers: IncomingHttpHeaders) => Script)): Promise<{ addresses: string[]; calls: () => number; close: () => void }> {
  let calls = 0;
  const list = await Promise.all(Array.from({ length: n }, async () => {
    const server = createH2cServer();
    // node:http2 keeps a session's socket from its user: the raw one is found by the peer's port.
    const sockets = new Map<number, Socket>();
    server.on('connection', (socket: Socket) => {
      sockets.set(socket.remotePort!, socket);
      socket.on('close', () => sockets.delete(socket.remotePort!));
    });
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const script = typeof scripts === 'function' ? scripts(headers) : scripts[calls];
      calls++;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      if (script === undefined) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      else script(stream, () => sockets.get(stream.session!.socket.remotePort!)?.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return server;
  }));
  // Closed after the test whatever its outcome: an open server would keep the file's process alive.
  const close = (): void => {
    for (const s of list) s.close();
  };
  closers.push(close);
  return { addresses: list.map((s) => `127.0.0.1:${(s.address() as AddressInfo).port}`), calls: () => calls, close };
}

/** The texts of an answer's EchoReply frames. */
function repliesIn(body: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + 5 <= body.length;) {
    const length = body.readUInt32BE(at + 1);
    const payload = body.subarray(at + 5, at + 5 + length);
    out.push(payload.length >= 2 ? payload.subarray(2, 2 + payload[1]!).toString() : '');
    at += 5 + length;
  }
  return out;
}

test('a process killed between a unary answer\'s message and its status: an idempotent call goes to another instance (the message never reached the caller), a non-idempotent one ends UNAVAILABLE', async () => {
  const [echo] = await echoServers(1);
  const cutter = await scriptedInstances(1, Array.from({ length: 40 }, () => cutAfter('cut')));
  const gw = await gatewayFor([cutter.addresses[0]!, echo!.address], { healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 } });
  const c = client(gw);
  const gets = [];
  for (let i = 0; i < 6; i++) gets.push(await call(c, 'Get', { text: `g${i}` }));
  assert.deepEqual(gets.map((a) => a.error?.message), Array(6).fill(undefined));
  assert.deepEqual(gets.map((a) => a.reply!.text), ['g0', 'g1', 'g2', 'g3', 'g4', 'g5'], 'every Get answered by the echo instance, none by the cut message');
  const cut = cutter.calls();
  assert.ok(cut >= 3, `round-robin sent the cutter ${cut} of the Gets`);

  const puts = [];
  for (let i = 0; i < 6; i++) puts.push(await call(c, 'Put', { text: `p${i}` }));
  const failed = puts.filter((a) => a.error !== undefined);
  assert.equal(failed.length, cutter.calls() - cut, 'each Put the cutter took failed, and went nowhere else');
  assert.ok(failed.length >= 3);
  for (const a of failed) assert.equal(a.error!.code, grpc.status.UNAVAILABLE);
  assert.equal(echo!.calls.Put, 6 - failed.length);
  cutter.close();
});

test('an idempotent server stream: its first message waits a moment for a status at most, the method is then known to stream, and a stream cut after a message ends UNAVAILABLE', async () => {
  const WATCH = '/tandem.test.Echo/Watch';
  let go: () => void = () => {};
  const paused: Script = (stream) => {
    stream.write(replyFrame('first'));
    go = () => answer(stream, 'second');
  };
  const instances = await scriptedInstances(2, [cutAfter('lost'), answerWith('a', 'b'), paused, cutAfter('seen')]);
  const gw = await gatewayFor(instances.addresses, { healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 }, grpc: { idempotentMethods: [GET, WATCH] } });

  // Not yet known to stream: the message held for its status is dropped with the cut, and the
  // call goes again.
  const first = await rawCall(gw.port, WATCH);
  assert.deepEqual([repliesIn(first.body), first.trailers?.['grpc-status']], [['a', 'b'], '0']);
  assert.equal(instances.calls(), 2);

  // A stream whose instance waits after its first message: the message still comes (here the
  // method is known to stream; the next test has it unknown).
  const second = rawStream(gw.port, WATCH, () => go());
  const got = await second;
  assert.deepEqual([repliesIn(got.body), got.trailers?.['grpc-status']], [['first', 'second'], '0']);

  // Known to stream: a message goes up at once, so a cut after it cannot be replayed.
  const third = await rawCall(gw.port, WATCH);
  assert.deepEqual(repliesIn(third.body), ['seen']);
  assert.equal(third.trailers?.['grpc-status'], '14', JSON.stringify(third.trailers));
  assert.equal(instances.calls(), 4, 'not sent again');
  instances.close();
});

test('a hedge answers while the first leg holds its answer (a message, no status yet): one answer reaches the caller, the first leg is let go, the gateway goes on', async (t) => {
  let first: ServerHttp2Stream | undefined;
  // The first leg's instance says nothing until the hedge reaches the other; then it sends a
  // message (held by the gateway for its status) just before the hedge's whole answer.
  const silent: Script = (stream) => { first = stream; };
  const hedged: Script = (stream) => {
    first!.write(replyFrame('held'), () => setImmediate(() => answer(stream, 'hedge')));
  };
  // Calls are told apart by a header: the warm-up's may be hedged too (its hedge delay is short).
  let legs = 0;
  const instances = await scriptedInstances(2, (headers) => (headers['x-test'] !== 'held' ? answerWith('warm') : ++legs === 1 ? silent : hedged));
  const gw = await gatewayFor(instances.addresses, {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 }, hedge: { percentile: 90, minDelay: '1ms' },
  });
  // Enough quick answers for a hedge delay (hedging starts after 50 of them, once the gateway
  // has looked at them again: at most every 100 ms).
  for (let i = 0; i < 6; i++) await Promise.all(Array.from({ length: 10 }, () => rawCall(gw.port, GET)));
  await waitFor('a hedge delay', async () => (await clusterService<{ hedgeDelayMs: number | null }>(gw, 'echo')).hedgeDelayMs !== null || undefined);
  // A deadline: a call left waiting on the held leg ends DEADLINE_EXCEEDED, not a hung test.
  const got = await rawCall(gw.port, GET, { 'grpc-timeout': '10S', 'x-test': 'held' });
  assert.deepEqual([repliesIn(got.body), got.trailers?.['grpc-status']], [['hedge'], '0'], JSON.stringify(got.trailers));
  // The first leg is cancelled (its stream closes at the instance) — not left to deliver its
  // held answer to a call already answered, which took the gateway down.
  await waitFor('the first leg cancelled', () => first!.closed || undefined);
  t.diagnostic(`first leg's stream closed with code ${first!.rstCode}`);
  const after = await rawCall(gw.port, GET);
  assert.deepEqual([repliesIn(after.body), after.trailers?.['grpc-status']], [['warm'], '0'], 'the gateway goes on');
  assert.equal(legs, 2);
});

test('a hedged call whose deadline passes with both legs out: DEADLINE_EXCEEDED, both legs cancelled, the request\'s slot given back', async () => {
  const legs: ServerHttp2Stream[] = [];
  // Calls marked `late` are never answered; the rest at once.
  const instances = await scriptedInstances(2, (headers) => (headers['x-test'] === 'late' ? (stream) => { legs.push(stream); } : answerWith('warm')));
  const gw = await gatewayFor(instances.addresses, {
    healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 }, hedge: { percentile: 90, minDelay: '1ms' },
  });
  for (let i = 0; i < 6; i++) await Promise.all(Array.from({ length: 10 }, () => rawCall(gw.port, GET)));
  await waitFor('a hedge delay', async () => (await clusterService<{ hedgeDelayMs: number | null }>(gw, 'echo')).hedgeDelayMs !== null || undefined);
  const got = await rawCall(gw.port, GET, { 'grpc-timeout': '300m', 'x-test': 'late' });
  assert.equal(got.headers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED), JSON.stringify(got.headers));
  assert.equal(legs.length, 2, 'the call was hedged');
  // The leg the deadline did not cut itself (the hedge race's survivor) is cut too, and the
  // request leaves the service's count of requests in progress (concurrencyLimit's).
  await waitFor('both legs cancelled', () => legs.every((l) => l.closed) || undefined);
  await waitFor('no request in progress', async () => (await clusterService<{ active: number }>(gw, 'echo')).active === 0 || undefined);
});

test('a server stream not yet known to stream, whose instance waits after its first message: the message is not held until the next', async () => {
  const WATCH = '/tandem.test.Echo/Watch';
  let go: () => void = () => {};
  const instances = await scriptedInstances(1, [(stream) => {
    stream.write(replyFrame('first'));
    go = () => answer(stream, 'second');
  }]);
  const gw = await gatewayFor(instances.addresses, { healthCheck: false, grpc: { idempotentMethods: [WATCH] } });
  // The instance sends its second message only once the first has reached the caller.
  const got = await rawStream(gw.port, WATCH, () => go());
  assert.deepEqual([repliesIn(got.body), got.trailers?.['grpc-status']], [['first', 'second'], '0']);
  instances.close();
});

test('no instance can take a call: Trailers-Only UNAVAILABLE with a message, never an HTTP error page', async () => {
  const gw = await gatewayFor([`127.0.0.1:${await freePort()}`], { healthCheck: false });
  const raw = await rawCall(gw.port, GET);
  assert.equal(raw.headers[':status'], 200);
  assert.equal(raw.headers['content-type'], 'application/grpc');
  assert.equal(raw.headers['grpc-status'], '14');
  assert.equal(raw.endStream, true);
  assert.match(String(raw.headers['grpc-message']), /TANDEM_ERR_UPSTREAM_CONNECT|TANDEM_ERR_NO_HEALTHY_ENDPOINT/);
  const answer = await call(client(gw), 'Put', { text: 'x' });
  assert.equal(answer.error?.code, grpc.status.UNAVAILABLE);
  assert.equal(await metricSum(gw, /^tandem_grpc_calls_total\{service="echo",method="\/tandem\.test\.Echo\/Put",status="14"\}/), 1);
});

test('a refused connection sends the call on to another instance, a non-idempotent one too', async () => {
  const [s] = await echoServers(1);
  const gw = await gatewayFor([`127.0.0.1:${await freePort()}`, s!.address], { healthCheck: false, balancer: 'round-robin' });
  const c = client(gw);
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => call(c, 'Put', { text: `p${i}` })));
  assert.deepEqual(answers.filter((a) => a.error !== undefined).map((a) => a.error!.message), []);
  assert.equal(s!.calls.Put, 20);
});

test('UNAVAILABLE before any message: an idempotent call goes to another instance, a non-idempotent one is never sent twice', async () => {
  const [bad, good] = await echoServers(2);
  bad!.failAll(grpc.status.UNAVAILABLE);
  // No health checks and no ejection: every call meets the failing instance's share.
  const gw = await gatewayFor([bad!.address, good!.address], { healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 1000 } });
  const c = client(gw);
  const gets = await Promise.all(Array.from({ length: 20 }, (_, i) => call(c, 'Get', { text: `g${i}` })));
  assert.deepEqual(gets.filter((a) => a.error !== undefined).map((a) => a.error!.message), []);
  assert.ok((bad!.calls.Get ?? 0) > 0, 'the failing instance had its share');
  assert.equal(good!.calls.Get, 20);

  const puts = await Promise.all(Array.from({ length: 20 }, (_, i) => call(c, 'Put', { text: `p${i}` })));
  const failed = puts.filter((a) => a.error !== undefined);
  assert.ok(failed.length > 0, 'some Put met the failing instance');
  assert.ok(failed.every((a) => a.error!.code === grpc.status.UNAVAILABLE));
  // Each Put ran exactly once: the failed ones on the failing instance, the rest on the good one.
  assert.equal(bad!.calls.Put, failed.length);
  assert.equal(good!.calls.Put, 20 - failed.length);

  // The same when the failing instance sends its response headers first and UNAVAILABLE in
  // the trailers, with no message between: still nothing processed, still retried.
  const badGets = bad!.calls.Get ?? 0;
  const later = await Promise.all(Array.from({ length: 20 }, (_, i) => call(c, 'Get', { text: `m${i}`, metadataFirst: true })));
  assert.deepEqual(later.filter((a) => a.error !== undefined).map((a) => a.error!.message), []);
  assert.ok((bad!.calls.Get ?? 0) > badGets);
  const laterPuts = await Promise.all(Array.from({ length: 20 }, () => call(c, 'Put', { text: 'm', metadataFirst: true })));
  assert.ok(laterPuts.some((a) => a.error?.code === grpc.status.UNAVAILABLE));
  assert.equal((bad!.calls.Put ?? 0) + (good!.calls.Put ?? 0), 40);
});

test('health checks through grpc.health.v1: a NOT_SERVING instance leaves rotation, and comes back', async () => {
  const [a, b] = await echoServers(2);
  const gw = await gatewayFor([a!.address, b!.address], { healthCheck: { interval: '100ms', timeout: '500ms' } });
  type Svc = { endpoints: Array<{ id: string; state: string }> };
  const stateOf = async (s: EchoServer) => (await clusterService<Svc>(gw, 'echo')).endpoints.find((e) => e.id === s.address)!.state;
  await waitFor('both healthy', async () => ((await stateOf(a!)) === 'healthy' && (await stateOf(b!)) === 'healthy') || undefined);
  a!.setHealth('NOT_SERVING');
  await waitFor('a unhealthy', async () => (await stateOf(a!)) === 'unhealthy' || undefined);
  const before = a!.calls.Get ?? 0;
  const c = client(gw);
  const answers = await Promise.all(Array.from({ length: 20 }, () => call(c, 'Get', { text: 'h' })));
  assert.deepEqual(answers.filter((x) => x.error !== undefined), []);
  assert.equal(a!.calls.Get ?? 0, before, 'no call went to the NOT_SERVING instance');
  a!.setHealth('SERVING');
  await waitFor('a back', async () => (await stateOf(a!)) !== 'unhealthy' || undefined);
});

test('SIGKILL of an instance under a steady stream of unary calls: 0 failed calls', async () => {
  const spawned = await Promise.all([0, 1, 2].map(() => spawnEchoServer()));
  procs.push(...spawned.map((s) => s.proc));
  const gw = await gatewayFor(spawned.map((s) => s.address));
  const c = client(gw);
  let done = 0;
  const failures: string[] = [];
  const running = new Set<Promise<void>>();
  let killedAt = -1;
  // Open loop: a call every 2 ms whatever the answers do, until 300 calls after the kill.
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const p = call(c, 'Get', { text: 'k' }, { deadline: Date.now() + 5000 }).then((a) => {
        done++;
        if (a.error) failures.push(`${a.error.code} ${a.error.details}`);
        if (done === 100 && killedAt < 0) {
          killedAt = done;
          void kill(spawned[0]!.proc);
        }
        if (killedAt >= 0 && done >= killedAt + 300) {
          clearInterval(timer);
          resolve();
        }
      });
      running.add(p);
      void p.then(() => running.delete(p));
    }, 2);
  });
  await Promise.all(running);
  assert.deepEqual(failures, []);
  assert.ok(done >= 400);
  // The kill was felt: calls met the dead instance and went on to another.
  assert.ok(await metricSum(gw, /^tandem_retries_total\{service="echo"/) > 0);
});

test('a graceful drain (GOAWAY) of an instance under non-idempotent calls: 0 failed, none ran twice', async () => {
  const list = await echoServers(3);
  const gw = await gatewayFor(list.map((s) => s.address), { healthCheck: false });
  const c = client(gw);
  let done = 0;
  let sent = 0;
  const failures: string[] = [];
  const running = new Set<Promise<void>>();
  let drained: Promise<void> | undefined;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      sent++;
      const p = call(c, 'Put', { text: 'd', delayMs: 20 }, { deadline: Date.now() + 5000 }).then((a) => {
        done++;
        if (a.error) failures.push(`${a.error.code} ${a.error.details}`);
        if (done === 100) drained = list[0]!.drain();
        if (done >= 400) {
          clearInterval(timer);
          resolve();
        }
      });
      running.add(p);
      void p.then(() => running.delete(p));
    }, 2);
  });
  await Promise.all(running);
  await drained;
  assert.deepEqual(failures, []);
  // Every call ran exactly once, the drained instance's included.
  assert.equal(list.reduce((n, s) => n + (s.calls.Put ?? 0), 0), sent);
  assert.ok((list[0]!.calls.Put ?? 0) > 0);
});

test('an instance killed with calls under way: the idempotent one goes again elsewhere, the other is not sent twice', async () => {
  const child = await spawnEchoServer();
  procs.push(child.proc);
  const [other] = await echoServers(1);
  const gw = await gatewayFor([child.address, other!.address], { healthCheck: false, balancer: 'round-robin' });
  const c = client(gw);
  const puts = [call(c, 'Put', { text: 'p', delayMs: 60_000 }), call(c, 'Put', { text: 'p', delayMs: 300 })];
  await waitFor('one Put at the other instance', () => other!.calls.Put === 1 || undefined);
  // The other Put is at the child (round-robin): it dies with the call under way.
  await kill(child.proc);
  const answers = await Promise.all(puts);
  assert.deepEqual(answers.map((a) => a.error?.code ?? 0).sort(), [0, grpc.status.UNAVAILABLE]);
  assert.equal(other!.calls.Put, 1, 'the Put cut by the kill was not sent again');

  // The same with Gets (idempotent): the cut one is retried on the other instance and succeeds.
  const child2 = await spawnEchoServer();
  procs.push(child2.proc);
  const gw2 = await gatewayFor([child2.address, other!.address], { healthCheck: false, balancer: 'round-robin' });
  const c2 = client(gw2);
  const gets = [call(c2, 'Get', { text: 'g', delayMs: 300 }), call(c2, 'Get', { text: 'g', delayMs: 300 })];
  await waitFor('one Get at the other instance', () => other!.calls.Get === 1 || undefined);
  await kill(child2.proc);
  const got = await Promise.all(gets);
  assert.deepEqual(got.map((a) => a.error?.message), [undefined, undefined]);
  assert.equal(other!.calls.Get, 2);
});

test('hedging: a slow instance\'s idempotent calls are hedged to another; non-idempotent ones are not', async () => {
  const [slow, fast] = await echoServers(2);
  const gw = await gatewayFor([slow!.address, fast!.address], {
    healthCheck: false, balancer: 'round-robin', hedge: { percentile: 90, minDelay: '20ms' }, outlier: { consecutiveFailures: 1000 },
  });
  const c = client(gw);
  // Enough answers for a hedge delay (hedging starts after 50).
  for (let i = 0; i < 6; i++) await Promise.all(Array.from({ length: 10 }, () => call(c, 'Get', { text: 'warm' })));
  slow!.slowAll(2000);
  const puts = await Promise.all(Array.from({ length: 4 }, () => call(c, 'Put', { text: 'p' })));
  assert.ok(puts.some((a) => a.reply?.instance === String(slow!.port)), 'a Put waited for the slow instance');
  assert.equal(await metricSum(gw, /^tandem_hedges_total\{service="echo"/), 0);
  const gets = await Promise.all(Array.from({ length: 4 }, () => call(c, 'Get', { text: 'g' })));
  assert.deepEqual(gets.map((a) => a.reply?.instance), gets.map(() => String(fast!.port)), 'every Get answered by the fast instance');
  assert.ok((slow!.calls.Get ?? 0) > 30, 'the slow instance had Gets too');
  assert.ok(await metricSum(gw, /^tandem_hedges_total\{service="echo"/) > 0);
});

test('outlier detection counts gRPC statuses: an instance answering INTERNAL to every call is ejected', async () => {
  const [bad, good] = await echoServers(2);
  bad!.failAll(grpc.status.INTERNAL);
  const gw = await gatewayFor([bad!.address, good!.address], { healthCheck: false, balancer: 'round-robin', outlier: { consecutiveFailures: 3 } });
  const c = client(gw);
  type Svc = { endpoints: Array<{ id: string; state: string; responses: Record<string, number> }> };
  for (let i = 0; i < 10; i++) await call(c, 'Put', { text: 'o' });
  const svc = await clusterService<Svc>(gw, 'echo');
  const badView = svc.endpoints.find((e) => e.id === bad!.address)!;
  assert.equal(badView.state, 'ejected');
  assert.ok(badView.responses['5xx']! >= 3, 'INTERNAL counted as a 5xx');
  assert.equal(svc.endpoints.find((e) => e.id === good!.address)!.state !== 'ejected', true);
});

test('gRPC over TLS to the gateway (h2 by ALPN), plaintext h2c to the instances', async () => {
  const pki = makeServerPki();
  try {
    const cert = pki.issue('gw', '/CN=gw.test', 'subjectAltName=DNS:gw.test,IP:127.0.0.1');
    const [s] = await echoServers(1);
    const gw = await startGateway({
      listen: [{ address: '127.0.0.1:0' }, { address: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key } }],
      services: { echo: { protocol: 'grpc', endpoints: [s!.address] } },
      routes: [{ prefix: '/tandem.test.Echo/', service: 'echo' }],
    });
    gateways.push(gw);
    const tlsUrl = (gw.logs.find((l) => l.msg === 'listening')!.listeners as string[])[1]!;
    const c = echoClientTls(`127.0.0.1:${new URL(tlsUrl).port}`, pki.ca, 'gw.test');
    clients.push(c);
    const answer = await call(c, 'Get', { text: 'over tls' });
    assert.equal(answer.reply?.text, 'over tls');
  } finally {
    pki.remove();
  }
});

// Below a second the wait is a timer of its own; from a second on, the coarse timers' (core/coarse-timers.ts).
for (const keepAliveTimeout of ['100ms', '1s']) {
  test(`an idle HTTP/2 connection to an instance is closed after keepAliveTimeout (${keepAliveTimeout}); the next call opens another`, async () => {
    const [s] = await echoServers(1);
    const gw = await gatewayFor([s!.address], { healthCheck: false, keepAliveTimeout });
    const c = client(gw);
    type Svc = { endpoints: Array<{ connections: number }> };
    assert.equal((await call(c, 'Put', { text: 'one' })).reply?.text, 'one');
    assert.equal((await clusterService<Svc>(gw, 'echo')).endpoints[0]!.connections, 1);
    await waitFor('the idle connection closed', async () => (await clusterService<Svc>(gw, 'echo')).endpoints[0]!.connections === 0 || undefined);
    assert.equal((await call(c, 'Put', { text: 'two' })).reply?.text, 'two');
    assert.equal(s!.calls.Put, 2);
  });
}

/**
 * A raw client-streaming call: each step writes a message (if `text`), then waits `waitMs`; the
 * request ends after the last step unless `open` (then it stays open, and quiet, until the end).
 */
async function clientStream(port: number, path: string, steps: Array<{ text?: string; waitMs: number }>, open = false): Promise<{ headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders | undefined; body: Buffer }> {
  const session = connect(`http://127.0.0.1:${port}`);
  try {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => { headers = h; });
    stream.on('trailers', (t) => { trailers = t; });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    const closed = new Promise<void>((resolve) => stream.on('close', resolve));
    for (const step of steps) {
      if (step.text !== undefined) stream.write(replyFrame(step.text));
      await new Promise((resolve) => setTimeout(resolve, step.waitMs));
    }
    if (!open) stream.end();
    await guarded(closed, `the answer to ${path}`);
    return { headers, trailers, body: Buffer.concat(chunks) };
  } finally {
    session.close();
  }
}

test('the service timeout bounds the wait for an answer: from the request\'s last byte while it streams, and whole again from its end; a mute endpoint, or a client stream gone quiet, ends DEADLINE_EXCEEDED', async () => {
  // Get: mute. Stall: reads the request, never answers. Collect: answers once the request
  // ended; Slow: a second after it ended (headers and all: the gateway is still waiting for them).
  const server = createH2cServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const path = headers[':path'];
    stream.resume();
    if (path === GET || path === '/tandem.test.Echo/Stall') return;
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(replyFrame(`got ${repliesIn(Buffer.concat(chunks)).join('+')}`));
    }, path === '/tandem.test.Echo/Slow' ? 1000 : 0));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  const gw = await gatewayFor([`127.0.0.1:${(server.address() as AddressInfo).port}`], { healthCheck: false, timeout: '2s' });

  const began = performance.now();
  const [mute, long, slow, stalled] = await Promise.all([
    guarded(rawCall(gw.port, GET), 'the mute endpoint\'s call to end'),
    // Seven messages 400 ms apart: the request streams for 2.8 s, past the timeout and its
    // resolution (a quarter of a second).
    clientStream(gw.port, '/tandem.test.Echo/Collect', ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((text) => ({ text, waitMs: 400 }))),
    // One message, 1.8 s of quiet (under the timeout), the end; the answer a second later:
    // 2.8 s after the call began, 1 s after the request ended.
    clientStream(gw.port, '/tandem.test.Echo/Slow', [{ text: 'a', waitMs: 1800 }]),
    // One message, then an open, quiet request the endpoint never answers.
    guarded(rawStalled(gw.port), 'the stalled call to end'),
  ]);
  const waited = performance.now() - began;
  assert.equal(mute.headers['grpc-status'], '4', JSON.stringify(mute.headers));
  assert.match(String(mute.headers['grpc-message']), /TANDEM_ERR_UPSTREAM_TIMEOUT/);
  assert.ok(waited >= 2000, `answered after ${Math.round(waited)} ms, before the service timeout (2 s)`);
  assert.equal(long.trailers?.['grpc-status'], '0', JSON.stringify(long));
  assert.deepEqual(repliesIn(long.body), ['got a+b+c+d+e+f+g']);
  assert.equal(slow.trailers?.['grpc-status'], '0', `the endpoint had the whole timeout from the request's end: ${JSON.stringify(slow)}`);
  assert.deepEqual(repliesIn(slow.body), ['got a']);
  assert.equal(stalled.headers['grpc-status'], '4', `a request gone quiet is not waited for forever: ${JSON.stringify(stalled.headers)}`);
  assert.match(String(stalled.headers['grpc-message']), /TANDEM_ERR_UPSTREAM_TIMEOUT/);
});

/** A raw call that sends one message and then keeps its request open and quiet until answered. */
function rawStalled(port: number): Promise<{ headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': '/tandem.test.Echo/Stall', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: IncomingHttpHeaders = {};
    stream.on('response', (h) => { headers = h; });
    stream.on('error', () => {});
    stream.resume();
    // The answer's end (Trailers-Only ends the stream's readable side); the request side is
    // still open, so the stream itself would not close: the session is let go.
    stream.on('end', () => {
      session.destroy();
      resolve({ headers });
    });
    stream.write(replyFrame('a'));
  });
}

test('an HTTP/2 client connection without a stream for limits.keepAliveTimeout gets a GOAWAY; one whose stream is open but quiet is left alone', async () => {
  const WATCH = '/tandem.test.Echo/Watch';
  let release!: () => void;
  const released = new Promise<void>((resolve) => { release = resolve; });
  const instances = await scriptedInstances(1, (headers) => headers[':path'] === WATCH
    ? (stream) => { void released.then(() => stream.end(replyFrame('late'))); }
    : (stream) => stream.end(replyFrame('now')));
  const gw = await startGateway({
    limits: { keepAliveTimeout: '1s' },
    services: { echo: { protocol: 'grpc', endpoints: instances.addresses, healthCheck: false } },
    routes: [{ prefix: '/tandem.test.Echo/', service: 'echo' }],
  });
  gateways.push(gw);
  const origin = `http://127.0.0.1:${gw.port}`;

  // The quiet one first: its stream is answered (headers) and then says nothing until released.
  const quiet = connect(origin);
  let quietGoaway = false;
  quiet.on('goaway', () => { quietGoaway = true; });
  const watch = quiet.request({ ':method': 'POST', ':path': WATCH, 'content-type': 'application/grpc', te: 'trailers' });
  const watched: Buffer[] = [];
  let watchTrailers: IncomingHttpHeaders | undefined;
  watch.on('data', (c: Buffer) => watched.push(c));
  watch.on('trailers', (t) => { watchTrailers = t; });
  const watchClosed = new Promise<void>((resolve) => watch.on('close', resolve));
  watch.end(Buffer.alloc(5));
  await waitFor('the instance got the quiet call', () => instances.calls() === 1 || undefined);

  // The idle one: one call, then nothing.
  const idle = connect(origin);
  try {
    const goaway = nextEvent(idle, 'goaway');
    const one = idle.request({ ':method': 'POST', ':path': GET, 'content-type': 'application/grpc', te: 'trailers' });
    const got: Buffer[] = [];
    one.on('data', (c: Buffer) => got.push(c));
    await new Promise<void>((resolve) => { one.on('close', resolve); one.end(Buffer.alloc(5)); });
    assert.deepEqual(repliesIn(Buffer.concat(got)), ['now']);
    await goaway;
    // The quiet connection has been without a frame for longer than the idle one.
    assert.equal(quietGoaway, false, 'the connection with a stream open got a GOAWAY');
    release();
    await guarded(watchClosed, 'the quiet call to end');
    assert.equal(watchTrailers?.['grpc-status'], '0', JSON.stringify(watchTrailers));
    assert.deepEqual(repliesIn(Buffer.concat(watched)), ['late']);
    assert.equal(quietGoaway, false);
  } finally {
    release();
    idle.destroy();
    quiet.destroy();
  }
});
