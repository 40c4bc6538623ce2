import { MemoryBus } from '../../src/events/index.js';
import { runBusContract } from './contract.js';

runBusContract({
  name: 'memory',
  open: async () => new MemoryBus(),
  remove: async () => {},
});
