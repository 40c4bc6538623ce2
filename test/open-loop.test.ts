import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { openLoop } from '../src/drill/open-loop.js';

/**
 * The drills' load generator with `retryUnanswered` (the shop's drill with a gateway pair): a
 * request whose connection is reset before any answer — what a SIGKILLed gateway does to what it
 * had in flight — is sent once more on a new connection, and its result says so; without the
 * option the reset is the result. A raw server resets the first request it reads and answers
 * every other.
 */
async function resettingServer() {
  let requests = 0;
  const server = createServer((socket) => {
    socket.on('data', () => {
      if (++requests === 1) return void socket.resetAndDestroy();
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { origin, requests: () => requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

const oneRequest = (origin: string, retryUnanswered: boolean) =>
  openLoop({ origin, rate: 10, durationS: 0.1, idPrefix: 'r', timeoutMs: 2000, request: () => ({ method: 'GET', path: '/' }), retryUnanswered });

test('retryUnanswered: a request reset before any answer is sent again, on a new connection, and its result keeps the first error', async () => {
  const server = await resettingServer();
  try {
    const run = await oneRequest(server.origin, true);
    assert.equal(run.results.length, 1);
    assert.deepEqual({ status: run.results[0]!.status, err: run.results[0]!.err, firstErr: run.results[0]!.firstErr }, { status: 200, err: null, firstErr: 'reset' });
    assert.equal(server.requests(), 2);
  } finally {
    await server.close();
  }
});

test('without retryUnanswered the reset is the result', async () => {
  const server = await resettingServer();
  try {
    const run = await oneRequest(server.origin, false);
    assert.deepEqual({ status: run.results[0]!.status, err: run.results[0]!.err, firstErr: run.results[0]!.firstErr }, { status: 0, err: 'reset', firstErr: undefined });
    assert.equal(server.requests(), 1);
  } finally {
    await server.close();
  }
});
