// What a finished gRPC call leaves reachable from its HTTP/2 streams. node:http2's closed
// streams outlive the scavenges after them until the next full collection (Node's
// AsyncResource.bind, and node:http2's own hold — docs/benchmarks.md), and a scavenge copies
// out of the young generation whatever such a stream still reaches: everything of a call that
// its streams point to was promoted with them, on every call. Here the test holds every stream
// itself, as Node does, and counts what is left of the calls after a full collection: nothing
// but the streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type ClientHttp2Session, type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { EventEmitter } from 'node:events';
import { setFlagsFromString, queryObjects } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { Attempt } from '../src/upstream/attempt.js';
import { GrpcStreamRequest, GrpcStreamResponse } from '../src/gateway/grpc-stream.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** One gRPC message frame (5-byte prefix, then `payload`). */
function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

function call(session: ClientHttp2Session, path: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    stream.on('trailers', (t) => { status = t['grpc-status'] as string | undefined; });
    stream.on('response', (h) => { status ??= h['grpc-status'] as string | undefined; });
    stream.on('error', reject);
    stream.resume();
    stream.on('close', () => resolve(status));
    stream.end(frame(Buffer.from([0x0a, 0x01, 0x61])));
  });
}

test('a finished gRPC call is not reachable from its streams: held as node:http2 holds them, they keep no Attempt and no request or response object of the call', async () => {
  const backend = createServer();
  backend.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(frame(Buffer.from([0x0a, 0x01, 0x62])));
    });
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  const gw = await Gateway.start(validateConfig({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0',
    services: { echo: { protocol: 'grpc', endpoints: [`127.0.0.1:${(backend.address() as AddressInfo).port}`], healthCheck: false } },
    routes: [{ prefix: '/', service: 'echo' }],
  }), pino({ level: 'silent' }));

  // The streams on both sides of the gateway, held to the end of the test.
  const serverStreams: ServerHttp2Stream[] = [];
  const clientStreams: ClientHttp2Stream[] = [];
  const listener = (gw as unknown as { listeners: Array<{ h2: EventEmitter }> }).listeners[0]!;
  listener.h2.on('stream', (stream: ServerHttp2Stream) => serverStreams.push(stream));
  const probe = connect(`http://127.0.0.1:${(backend.address() as AddressInfo).port}`);
  const proto = Object.getPrototypeOf(probe) as { request: (...args: unknown[]) => ClientHttp2Stream };
  probe.close();
  const client = connect(gw.listenUrls[0]!);
  const request = proto.request;
  proto.request = function (this: ClientHttp2Session, ...args: unknown[]) {
    const stream = request.apply(this, args);
    if (this !== client) clientStreams.push(stream); // the gateway's, not this test's own
    return stream;
  };
  try {
    const calls = 40;
    for (let i = 0; i < calls; i++) assert.equal(await call(client, '/tandem.test.Echo/Get'), '0');
    assert.equal(serverStreams.length, calls, 'every call seen on the gateway\'s listener');
    assert.equal(clientStreams.length, calls, 'every call sent to the endpoint');
    gc();
    const left = { Attempt: queryObjects(Attempt), GrpcStreamRequest: queryObjects(GrpcStreamRequest), GrpcStreamResponse: queryObjects(GrpcStreamResponse) };
    assert.deepEqual(left, { Attempt: 0, GrpcStreamRequest: 0, GrpcStreamResponse: 0 });
  } finally {
    proto.request = request;
    client.close();
    await gw.shutdown();
    backend.close();
  }
});
