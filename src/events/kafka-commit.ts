import { TandemError } from '../core/errors.js';

type Kafka = typeof import('@platformatic/kafka');
type Consumer = import('@platformatic/kafka').Consumer<string, Buffer, string, string>;
type ConnectionPool = import('@platformatic/kafka').ConnectionPool;

export interface WindowCommit {
  topic: string;
  partition: number;
  offset: bigint;
  /** The delivery window (kafka-window.ts). */
  metadata: string;
}

/**
 * Commits offsets with their metadata as the consumer's member of its group. The client's own
 * `commit()` always sends null metadata (1.x), so the request is OffsetCommit v8 (brokers 2.3 and
 * later) to the group's coordinator with the consumer's generation and member id: a member that
 * is no longer in the group is refused like any commit of the client's. It goes on a connection
 * of `pool` (the bus's admin client), not the consumer's: a broker answers one request per
 * connection at a time, and the consumer's connection may hold a fetch waiting up to its
 * maxWaitTime (500 ms), which a handler waiting for this commit would wait out too. A
 * refusal (a rebalance, a coordinator moved) rejects; the caller retries, and the consumer's
 * heartbeat rejoins the group on its own.
 */
export async function commitWithWindow(kafka: unknown, member: unknown, pool: unknown, commits: WindowCommit[]): Promise<void> {
  // Both typed `unknown` in the signature: tandem's declarations never name an optional peer's types.
  const k = kafka as Kafka;
  const consumer = member as Consumer;
  if (consumer.memberId === null) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', 'commit: the consumer is not in its group', { retryable: true });
  const coordinator = await consumer.findGroupCoordinator();
  const broker = consumer.currentMetadata?.brokers.get(coordinator) ?? (await consumer.metadata({ topics: [] })).brokers.get(coordinator);
  if (!broker) throw new TandemError('TANDEM_ERR_PUBLISH_FAILED', `commit: group coordinator ${coordinator} not in the cluster metadata`, { retryable: true });
  const connection = await (pool as ConnectionPool).get(broker);
  const topics = new Map<string, { name: string; partitions: Array<{ partitionIndex: number; committedOffset: bigint; committedLeaderEpoch: number; committedMetadata: string }> }>();
  for (const c of commits) {
    let t = topics.get(c.topic);
    if (!t) topics.set(c.topic, (t = { name: c.topic, partitions: [] }));
    t.partitions.push({ partitionIndex: c.partition, committedOffset: c.offset, committedLeaderEpoch: -1, committedMetadata: c.metadata });
  }
  await k.offsetCommitV8.api.async(connection, consumer.groupId, consumer.generationId, consumer.memberId, null, [...topics.values()]);
}
