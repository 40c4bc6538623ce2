import { EtcdRegistry } from '../src/discovery/etcd.js';
import { registryContract } from './helpers/registry-contract.js';
import { startEtcd } from './helpers/etcd.js';

registryContract('etcd (one member, JSON gateway)', async () => {
  const etcd = await startEtcd(1);
  const registry = new EtcdRegistry({ endpoints: etcd.endpoints });
  return {
    registry,
    cleanup: async () => {
      await registry.close();
      await etcd.destroy();
    },
  };
});
