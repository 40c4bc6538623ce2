import { after, before } from 'node:test';
import { KafkaBus } from '../../src/events/index.js';
import { startKafka, type KafkaCluster } from '../helpers/kafka.js';
import { runBusContract } from './contract.js';

let kafka: KafkaCluster | undefined;
before(async () => {
  kafka = await startKafka();
});
after(async () => {
  await kafka?.stop();
});

runBusContract({
  name: 'Apache Kafka (a broker of its own, scripts/kafka.js)',
  open: () => KafkaBus.connect({ brokers: kafka!.bootstrap }),
  remove: async (bus, topic, groups) => (bus as KafkaBus).deleteTopic(topic, groups),
});
