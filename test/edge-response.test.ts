import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, clusterService, type RunningGateway } from './helpers/gateway.js';
import { startRawBackend } from './helpers/backend.js';
import { cleanupAfterAll } from './helpers/cleanup.js';
import { headerOf, rawExchange, responses } from './helpers/raw-client.js';

/**
 * Responses whose framing contradicts their status, from a raw backend that writes exactly
 * the bytes under test; the client side is a raw keep-alive connection.
 */

const { defer, track } = cleanupAfterAll();
let gw: RunningGateway;
/** Per backend connection: the paths requested on it, and when it closed. */
const connections: Array<{ paths: string[]; closed: Promise<void> }> = [];

const ANSWERS: Record<string, string> = {
  '/204-with-body': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello',
  '/304-with-body': 'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 5\r\n\r\nhello',
  '/204-chunked': 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  '/304-length': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n',
};

before(async () => {
  const backend = await startRawBackend((socket) => {
    connections.push({ paths: [], closed: new Promise((resolve) => socket.once('close', () => resolve())) });
    const conn = connections.at(-1)!;
    let buffered = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      buffered += d;
      let end: number;
      while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
        const path = buffered.slice(0, end).split(' ')[1] ?? '/';
        buffered = buffered.slice(end + 4);
        conn.paths.push(path);
        socket.write(ANSWERS[path] ?? `HTTP/1.1 200 OK\r\nContent-Length: ${path.length}\r\n\r\n${path}`);
      }
    });
  });
  defer(() => backend.close());
  gw = track(await startGateway({
    services: { raw: { endpoints: [backend.address], healthCheck: false } },
    routes: [{ prefix: '/', service: 'raw' }],
  }));
});

const BOGUS = new Set(['/204-with-body', '/304-with-body', '/204-chunked']);

test('a backend 204 or 304 carrying a body: the client gets it without a body, keeps its connection, and the upstream connection is dropped', async () => {
  // Before: undici reported a content-length mismatch after the headers were accepted; the
  // gateway cut the client connection and the client got no response at all.
  const paths = ['/204-with-body', '/ok-1', '/304-with-body', '/204-chunked', '/304-length', '/ok-2'];
  const requests = paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: t\r\n\r\n`);
  // One request at a time on one client connection: each goes once the previous answer is in.
  let seen = 0;
  const nextAnswer = (socket: import('node:net').Socket) => new Promise<void>((resolve) => {
    let data = '';
    const onData = (d: string) => {
      data += d;
      if (responses(data).length > 0 && data.endsWith(responses(data)[0]!.body)) {
        socket.off('data', onData);
        seen++;
        resolve();
      }
    };
    socket.on('data', onData);
  });
  const parts: Array<string | ((s: import('node:net').Socket) => Promise<unknown>)> = [];
  for (const r of requests) parts.push(r, nextAnswer);
  parts.push(async (socket) => socket.end());
  const out = await rawExchange(gw.port, parts);
  assert.equal(seen, paths.length, `answers: ${JSON.stringify(out.data)}`);
  const got = responses(out.data);
  assert.deepEqual(got.map((r) => r.status), [204, 200, 304, 204, 304, 200]);
  assert.equal(got[1]!.body, '/ok-1');
  assert.equal(got[5]!.body, '/ok-2');
  // 204: no Content-Length (RFC 9110 §8.6); 304: its Content-Length is the representation's, kept.
  assert.equal(headerOf(got[0]!.head, 'content-length'), undefined);
  assert.equal(headerOf(got[2]!.head, 'etag'), '"v1"');
  assert.equal(headerOf(got[4]!.head, 'content-length'), '1234');
  for (const r of got) assert.equal(headerOf(r.head, 'connection')?.toLowerCase() === 'close', false, r.head);
  // A connection whose framing was in doubt carried nothing after its bogus answer.
  const bogus = connections.filter((c) => c.paths.some((p) => BOGUS.has(p)));
  assert.equal(bogus.length, 3, 'three connections carried a bogus answer');
  await Promise.all(bogus.map((c) => c.closed));
  for (const c of bogus) assert.ok(BOGUS.has(c.paths.at(-1)!), `reused after a bogus answer: ${c.paths.join(' ')}`);
  // Nothing of this is held against the endpoint.
  const raw = await clusterService<{ endpoints: Array<{ state: string; responses: Record<string, number> }> }>(gw, 'raw');
  assert.equal(raw.endpoints[0]!.responses.error, 0);
});
