import { RabbitMqBus } from '../../src/events/index.js';
import { runBusContract } from './contract.js';

runBusContract({
  name: 'RabbitMQ (127.0.0.1:5672)',
  open: () => RabbitMqBus.connect({ url: process.env.TANDEM_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672' }),
  remove: async (bus, topic, groups) => (bus as RabbitMqBus).deleteTopic(topic, groups),
});
