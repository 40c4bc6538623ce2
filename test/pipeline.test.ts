import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { startBackend, shopConfig } from './helpers/backend.js';
import { validateConfig } from '../src/config/validate.js';
import { upstreamSettingsOf } from '../src/gateway/upstream-settings.js';
import { Upstream } from '../src/upstream/upstream.js';
import { compose, type Dispatch, type Step } from '../src/upstream/pipeline.js';
import type { TandemError } from '../src/core/errors.js';
import { cleanupAfterAll } from './helpers/cleanup.js';

/** The order of upstream/pipeline.ts: the caller's steps first, then the engine's. */

const { defer } = cleanupAfterAll();

test('compose: the first step listed runs first, the terminal last', () => {
  const seen: string[] = [];
  const step = (name: string): Step => (next) => (request, handler) => { seen.push(name); next(request, handler); };
  const terminal: Dispatch = () => { seen.push('terminal'); };
  compose([step('a'), step('b')], terminal)({ method: 'GET', path: '/', headers: [], body: null, hashKey: undefined, bodyLimit: 0 }, undefined as never);
  assert.deepEqual(seen, ['a', 'b', 'terminal']);
});

test("the caller's steps run ahead of the concurrency limit: they see the request it refuses", async () => {
  const held: Array<() => void> = [];
  let arrived: () => void = () => {};
  const first = new Promise<void>((resolve) => { arrived = resolve; });
  const b = await startBackend('held', (req: IncomingMessage, res) => {
    req.resume();
    held.push(() => res.writeHead(200).end('ok'));
    arrived();
  });
  defer(() => b.close());
  const config = validateConfig(shopConfig([b.address], { healthCheck: false, concurrencyLimit: 1 }, { listen: '127.0.0.1:0' })).services.get('shop')!;
  const seen: string[] = [];
  const u = new Upstream(upstreamSettingsOf(config), [(next) => (request, handler) => { seen.push(request.path); next(request, handler); }]);
  defer(() => u.destroy());
  const send = (path: string) => new Promise<number | TandemError>((resolve) => {
    let status = 0;
    u.dispatch({ method: 'GET', path, headers: [], body: null, hashKey: undefined, bodyLimit: Infinity }, {
      onStart() {},
      onHeaders(s) { status = s; return true; },
      onData: () => true,
      onComplete: () => resolve(status),
      onError: resolve,
    });
  });
  const one = send('/one');
  await first;
  const refused = await send('/two');
  assert.equal((refused as TandemError).code, 'TANDEM_ERR_OVERLOADED');
  assert.deepEqual(seen, ['/one', '/two']);
  for (const release of held) release();
  assert.equal(await one, 200);
  assert.equal(u.stats.active, 0, 'the place is given back when the request settles');
});
