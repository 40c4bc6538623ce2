import pino from 'pino';
import { EmbeddedRegistry } from '../src/discovery/embedded.js';
import { HttpRegistry } from '../src/discovery/http.js';
import { Gateway } from '../src/gateway/gateway.js';
import { validateConfig } from '../src/config/validate.js';
import { registryContract } from './helpers/registry-contract.js';

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
