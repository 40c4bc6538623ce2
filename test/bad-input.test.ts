import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, type RunningGateway } from './helpers/gateway.js';
import { rawExchange } from './helpers/raw-client.js';
import { startBackend, startRawBackend, type Backend } from './helpers/backend.js';

/**
 * Bad client input is answered by the gateway and never forwarded. Every request is written
 * byte for byte on a raw socket; the default backend is a raw TCP server that counts every
 * byte it receives, so "never forwarded" means "not one byte reached an endpoint".
 */

type RawBackend = Awaited<ReturnType<typeof startRawBackend>>;

let counting: RawBackend;
/** Bytes the counting backend has received, over all connections. */
let received = 0;
let echo: Backend;
/** What the echo backend made of each /echo request body. */
const echoBodies: Array<{ bytes: number; complete: boolean }> = [];
let gw: RunningGateway;

const MAX_BODY = 64 * 1024;

before(async () => {
  counting = await startRawBackend((socket) => {
    let buffered = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      received += Buffer.byteLength(d, 'latin1');
      buffered += d;
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        buffered = buffered.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  echo = await startBackend('echo', (req, res) => {
    const entry = { bytes: 0, complete: false };
    echoBodies.push(entry);
    req.on('data', (chunk: Buffer) => { entry.bytes += chunk.length; });
    req.on('end', () => {
      entry.complete = true;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`got ${entry.bytes}`);
    });
    req.on('error', () => {});
  });
  gw = await startGateway({
    limits: { maxHeaderSize: '4KiB', maxBodySize: MAX_BODY, headersTimeout: '1s', requestTimeout: '2s' },
    // No active health checks: both backends count what reaches them (bytes, bodies), and a
    // probe every 500 ms would be counted as forwarded input.
    services: { counting: { endpoints: [counting.address], healthCheck: false }, echo: { endpoints: [echo.address], healthCheck: false } },
    routes: [{ prefix: '/', service: 'counting' }, { prefix: '/echo', service: 'echo' }],
  });
});

after(async () => {
  await gw.stop();
  await counting.close();
  await echo.close();
});

interface Outcome {
  /** Everything the gateway sent before the connection ended. */
  data: string;
  status: number | undefined;
  /** How the connection ended: the gateway closed it (FIN), reset it, or the test gave up. */
  end: 'closed' | 'reset' | 'timeout';
  ms: number;
}

/**
 * Writes `parts` in order (a number is a pause in ms) and reads until the connection ends.
 * Writes to a socket the gateway has already closed are ignored: what the gateway sent counts.
 */
async function exchange(parts: Array<string | Buffer | number>): Promise<Outcome> {
  const started = performance.now();
  const out = await rawExchange(gw.port, parts.map((p) => (typeof p === 'number' ? () => new Promise((r) => setTimeout(r, p)) : p)));
  return { ...out, ms: performance.now() - started };
}

/** Asserts that the exchange neither reached the counting backend nor ended without an answer. */
async function assertRejected(parts: Array<string | Buffer | number>, status: number, what: string): Promise<Outcome> {
  const before = received;
  const out = await exchange(parts);
  assert.equal(out.status, status, `${what}: expected ${status}, got ${JSON.stringify(out.data.slice(0, 200))} (${out.end})`);
  assert.notEqual(out.end, 'timeout', `${what}: the gateway kept the connection open after answering ${status}`);
  // Give a (wrongly) forwarded request time to arrive before concluding nothing did.
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(received, before, `${what}: ${received - before} bytes reached the backend`);
  return out;
}

test('control: a well-formed request on the same kind of socket is forwarded', async () => {
  const before = received;
  const out = await exchange(['GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n']);
  assert.equal(out.status, 200);
  assert.ok(received > before, 'the counting backend saw the request');
  const before10 = received;
  const http10 = await exchange(['GET /ok HTTP/1.0\r\nHost: t\r\n\r\n']);
  assert.equal(http10.status, 200, 'HTTP/1.0 is still served');
  assert.ok(received > before10);
});

test('malformed request lines get 400 and are not forwarded', async () => {
  const lines = [
    'GARBAGE\r\n\r\n',
    'GET\r\nHost: t\r\n\r\n',
    'GET /x\r\nHost: t\r\n\r\n', // no version: HTTP/0.9, which llhttp lets through with headers
    'GET /x HTTP/0.9\r\nHost: t\r\n\r\n',
    'GET /x HTTP/2.0\r\nHost: t\r\n\r\n', // HTTP/2 is not a text request line
    'GET /x HTTP/1.2\r\nHost: t\r\n\r\n',
    'GET /x HTTP/1.1 extra\r\nHost: t\r\n\r\n',
    'GET /x HTTP/x.y\r\nHost: t\r\n\r\n',
    'G(T /x HTTP/1.1\r\nHost: t\r\n\r\n',
    'GET /x y HTTP/1.1\r\nHost: t\r\n\r\n',
    '\x00\x01\x02\x03\r\n\r\n',
  ];
  for (const line of lines) await assertRejected([line], 400, JSON.stringify(line));
});

test('a request without Host gets 400 and is not forwarded', async () => {
  await assertRejected(['GET /x HTTP/1.1\r\nAccept: */*\r\n\r\n'], 400, 'no Host');
});

test('Content-Length together with Transfer-Encoding gets 400 and is not forwarded (smuggling)', async () => {
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'], 400, 'CL then TE');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'], 400, 'TE then CL');
});

test('duplicate Content-Length gets 400 and is not forwarded, with the same or different values', async () => {
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'], 400, 'different values');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello'], 400, 'same value');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello'], 400, 'list value');
});

test('unusable Transfer-Encoding and Content-Length values get 400 and are not forwarded', async () => {
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n'], 400, 'negative length');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1e3\r\n\r\n'], 400, 'non-digit length');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'], 400, 'chunked not last');
  await assertRejected(['POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'], 400, 'bad chunk size');
});

test('invalid header characters get 400 and are not forwarded', async () => {
  const heads = [
    'X Bad: space in name',
    'X(Bad): paren in name',
    'X-Bad\x01: control in name',
    ': empty name',
    'X-Bad: nul \x00 in value',
    'X-Bad: control \x01 in value',
    'X-Bad: del \x7f in value',
    'X-Bad: bare \r cr',
    'no colon at all',
    ' X-Folded: leading whitespace (obs-fold)',
  ];
  for (const head of heads) {
    await assertRejected([`GET /x HTTP/1.1\r\nHost: t\r\n${head}\r\n\r\n`], 400, JSON.stringify(head));
  }
});

test('a header section over limits.maxHeaderSize (4KiB) gets 431 and is not forwarded', async () => {
  await assertRejected([`GET /x HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(8 * 1024)}\r\n\r\n`], 431, 'one big header');
  const many = Array.from({ length: 200 }, (_, i) => `X-H${i}: ${'b'.repeat(30)}\r\n`).join('');
  await assertRejected([`GET /x HTTP/1.1\r\nHost: t\r\n${many}\r\n`], 431, 'many headers');
  // Just under the limit still goes through: the limit, not some other check, said 431.
  const before = received;
  const ok = await exchange([`GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: ${'a'.repeat(3 * 1024)}\r\n\r\n`]);
  assert.equal(ok.status, 200);
  assert.ok(received > before);
});

test('a Content-Length over limits.maxBodySize gets 413 at once, before any body byte, and is not forwarded', async () => {
  const out = await assertRejected([`POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`], 413, 'declared too large');
  // Answered without waiting for the body: no body byte was ever sent, and a wait for it would
  // have ended in the request timeout's 408, not 413.
  assert.match(out.data, /"code":"TANDEM_ERR_BODY_TOO_LARGE"/);
  assert.match(out.data, /\r\nconnection: close\r\n/i);
  // A body of exactly the limit is accepted.
  const body = Buffer.alloc(MAX_BODY, 'x');
  const ok = await exchange([`POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: ${MAX_BODY}\r\n\r\n`, body]);
  assert.equal(ok.status, 200);
  assert.match(ok.data, new RegExp(`got ${MAX_BODY}\\r\\n`));
});

test('Expect: 100-continue with a body over the limit gets 413 and no 100 Continue; within it, 100 then the answer', async () => {
  const out = await assertRejected([`POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`], 413, 'expect, too large');
  assert.doesNotMatch(out.data, /100 Continue/);
  const ok = await exchange([`POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n`, 200, 'hello']);
  assert.match(ok.data, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  assert.match(ok.data, /got 5\r\n/);
});

test('a chunked body that grows past limits.maxBodySize is refused: 413 (or a cut connection), never a success', async (t) => {
  // What happens: the gateway streams the body to the endpoint as it arrives and counts it;
  // the chunk that crosses the limit aborts the upstream exchange, so the endpoint sees the
  // start of the body and then a reset — it never sees the end of the body and never answers.
  // The client gets 413 with Connection: close; the connection then closes. Should the reset
  // of the client's unread upload race ahead of the 413 on some system, the client sees the
  // connection cut instead — never a 2xx.
  const before = echoBodies.length;
  const chunk = Buffer.alloc(16 * 1024, 'y');
  const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
  const parts: Array<string | Buffer | number> = ['POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n'];
  // 8 × 16 KiB = twice the limit, paced so the gateway sees the limit crossed mid-stream.
  for (let i = 0; i < 8; i++) parts.push(frame, 10);
  parts.push('0\r\n\r\n');
  const out = await exchange(parts);
  t.diagnostic(`client saw: ${out.status ?? 'no answer'}, connection ${out.end} after ${Math.round(out.ms)} ms`);
  assert.notEqual(out.end, 'timeout', 'the gateway neither answered nor closed');
  assert.ok(!/^HTTP\/1\.1 2\d\d/.test(out.data), `a success was delivered: ${out.data.slice(0, 200)}`);
  if (out.status !== undefined) {
    assert.equal(out.status, 413);
    assert.match(out.data, /"code":"TANDEM_ERR_BODY_TOO_LARGE"/);
  } else {
    assert.equal(out.data, '', 'a cut connection carries no partial answer');
  }
  await new Promise((r) => setTimeout(r, 100));
  const seen = echoBodies.slice(before);
  assert.equal(seen.length, 1, 'the endpoint saw the start of the body');
  assert.equal(seen[0]!.complete, false, 'the endpoint never saw the end of the body');
  assert.ok(seen[0]!.bytes <= MAX_BODY + chunk.length, `the endpoint got ${seen[0]!.bytes} bytes`);
});

test('slowloris: half a header section then silence gets 408 / closed after headersTimeout (1 s)', async (t) => {
  const before = received;
  const out = await exchange(['GET /slow HTTP/1.1\r\nHost: t\r\nX-Part: ']);
  t.diagnostic(`client saw: ${out.status ?? 'no answer'}, connection ${out.end} after ${Math.round(out.ms)} ms`);
  assert.notEqual(out.end, 'timeout', 'the connection was never closed');
  assert.ok(out.status === 408 || out.status === undefined, `unexpected answer ${out.data.slice(0, 100)}`);
  // Not before the timeout: timed from before the connection, a bound load cannot break.
  assert.ok(out.ms >= 800, `closed after ${Math.round(out.ms)} ms, before the timeout`);
  assert.equal(received, before, 'a partial header section reached the backend');
});

test('a client that sends headers then stalls its body is closed at requestTimeout (2 s)', async (t) => {
  const before = echoBodies.length;
  const out = await exchange(['POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n', 'only some of it']);
  t.diagnostic(`client saw: ${out.status ?? 'no answer'}, connection ${out.end} after ${Math.round(out.ms)} ms`);
  assert.notEqual(out.end, 'timeout', 'the connection was never closed');
  assert.ok(out.status === 408 || out.status === undefined, `unexpected answer ${out.data.slice(0, 100)}`);
  assert.ok(out.ms >= 1_500, `closed after ${Math.round(out.ms)} ms, before the timeout`);
  // A body within retry.bodyLimit (64 KiB) is read whole before it is forwarded (so a retry
  // can send it again): the endpoint never sees the request the client did not finish.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(echoBodies.length, before);
});

test('the gateway still serves after all of the above', async () => {
  const out = await exchange(['GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n']);
  assert.equal(out.status, 200);
});
