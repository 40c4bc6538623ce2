import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './gateway.js';

/** A Kafka cluster started by scripts/kafka.js (Apache Kafka's own broker, KRaft, temp dirs, free ports). */
export interface KafkaCluster {
  dir: string;
  /** `127.0.0.1:port` of every broker. */
  bootstrap: string[];
  nodes: Array<{ id: number; port: number; controllerPort: number }>;
  pid(nodeId: number): number | undefined;
  /** Signals one node (SIGKILL by default) and waits for its exit. */
  kill(nodeId: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped node again on its ports and data; resolves once every broker is back. */
  restart(nodeId: number): Promise<void>;
  /** Kills every node and removes the temp dir; `keep`: leaves the dir (the nodes' logs) in place. */
  stop(options?: { keep?: boolean }): Promise<void>;
}

interface KafkaScript {
  startKafka(options?: { nodes?: number }): Promise<KafkaCluster>;
}

/** Starts a cluster of `nodes` (default 1); the first call in a machine's life downloads the broker (cached). */
export async function startKafka(nodes = 1): Promise<KafkaCluster> {
  const script = (await import(pathToFileURL(join(ROOT, 'scripts', 'kafka.js')).href)) as KafkaScript;
  return script.startKafka({ nodes });
}
