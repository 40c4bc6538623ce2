// While a gateway hands its address over (shutdown with a release, docs/deployment.md), it still
// serves, and a response tells its connection to go: `Connection: close` on HTTP/1.1
// (handover.test.ts), a GOAWAY on HTTP/2 — sent when one of the connection's streams ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:http2';
import pino from 'pino';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { startBackend } from './helpers/backend.js';
import { guarded, nextEvent } from './helpers/wait.js';

test('during a handover\'s release, an HTTP/2 connection gets a GOAWAY once a response on it ends — none while it only waits for connections to end by themselves', async () => {
  const backend = await startBackend('shop', (req, res) => { req.resume(); res.end('ok'); });
  const gw = await Gateway.start(validateConfig({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0',
    services: { shop: { endpoints: [backend.address], healthCheck: false } },
    routes: [{ prefix: '/', service: 'shop' }],
  }), pino({ level: 'silent' }));
  let released!: () => void;
  let awaitConnections!: (on: boolean) => void;
  const releasing = new Promise<void>((resolve) => {
    void gw.shutdown(async (listener) => {
      awaitConnections = listener.awaitConnections;
      resolve();
      await new Promise<void>((done) => { released = done; });
    });
  });
  // The status, once the stream closed (at the gateway too: its end is what counts).
  const get = (session: ReturnType<typeof connect>) => new Promise<number>((resolve, reject) => {
    const stream = session.request({ ':path': '/x' });
    let status = 0;
    stream.on('response', (h) => { status = Number(h[':status']); });
    stream.on('error', reject);
    stream.on('close', () => resolve(status));
    stream.resume();
  });
  try {
    await releasing;
    // Waiting for the open connections to end by themselves (--handover-drop-syn): no GOAWAY.
    awaitConnections(true);
    const quiet = connect(gw.listenUrls[0]!);
    quiet.on('error', () => {});
    let quietGoaway = false;
    quiet.on('goaway', () => { quietGoaway = true; });
    assert.equal(await get(quiet), 200);
    awaitConnections(false);
    // Then a response tells its connection to go.
    const session = connect(gw.listenUrls[0]!);
    session.on('error', () => {});
    const goaway = nextEvent(session, 'goaway');
    assert.equal(await get(session), 200);
    await guarded(goaway, 'a GOAWAY after the response');
    assert.equal(quietGoaway, false, 'a GOAWAY while the gateway waited for connections to end by themselves');
    quiet.destroy();
    session.destroy();
  } finally {
    released?.();
    await gw.shutdown();
    await backend.close();
  }
});
