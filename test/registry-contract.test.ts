import pino from 'pino';
import { EmbeddedRegistry } from '../src/discovery/embedded.js';
import { HttpRegistry } from '../src/discovery/http.js';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from './helpers/backend.js';
import { nextMatching, registryContract } from './helpers/registry-contract.js';

registryContract('embedded, in process', async () => {
  const registry = new EmbeddedRegistry();
  return { registry, cleanup: () => registry.close() };
});

registryContract('embedded, over HTTP (HttpRegistry → a Gateway admin listener)', async () => {
  const config = validateConfig({
    listen: '127.0.0.1:0', admin: '127.0.0.1:0',
    services: { shop: { endpoints: ['127.0.0.1:9'] } }, routes: [{ prefix: '/', service: 'shop' }],
    registry: { token: 'contract-test-token-0123456789' },
  });
  const gateway = await Gateway.start(config, pino({ level: 'silent' }));
  const registry = new HttpRegistry({ url: `http://${gateway.adminAddress}`, token: 'contract-test-token-0123456789' });
  return {
    registry,
    cleanup: async () => {
      await registry.close();
      await gateway.shutdown();
    },
  };
});

test('HttpRegistry.watch follows a gateway restart by itself: the new registry\'s snapshots arrive on the same iterator', async () => {
  const admin = await freePort();
  const config = () => validateConfig({
    listen: '127.0.0.1:0', admin: `127.0.0.1:${admin}`,
    services: { shop: {} }, routes: [{ prefix: '/', service: 'shop' }],
  });
  let gateway = await Gateway.start(config(), pino({ level: 'silent' }));
  const registry = new HttpRegistry({ url: `http://127.0.0.1:${admin}` });
  try {
    const iter = registry.watch('shop')[Symbol.asyncIterator]();
    await nextMatching(iter, (s) => s.instances.length === 0);
    await registry.register({ service: 'shop', id: 'before', address: '127.0.0.1:7001' });
    await nextMatching(iter, (s) => s.instances.some((i) => i.id === 'before'));
    await gateway.shutdown();
    gateway = await Gateway.start(config(), pino({ level: 'silent' }));
    // The restarted registry is empty; an instance registers there; the same watch sees it.
    await nextMatching(iter, (s) => s.instances.length === 0);
    await registry.register({ service: 'shop', id: 'after', address: '127.0.0.1:7002' });
    const snap = await nextMatching(iter, (s) => s.instances.some((i) => i.id === 'after'));
    assert.deepEqual(snap.instances.map((i) => i.id), ['after']);
    await iter.return?.();
  } finally {
    await registry.close();
    await gateway.shutdown();
  }
});
