import { NatsBus } from '../../src/events/index.js';
import { runBusContract } from './contract.js';

runBusContract({
  name: 'NATS JetStream (127.0.0.1:4222)',
  open: () => NatsBus.connect({ servers: process.env.TANDEM_NATS_URL ?? 'nats://127.0.0.1:4222' }),
  remove: async (bus, topic) => (bus as NatsBus).deleteTopic(topic),
});
