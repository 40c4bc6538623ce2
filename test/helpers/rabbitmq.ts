import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const RABBITMQCTL = process.env.TANDEM_RABBITMQCTL ?? 'rabbitmqctl';

/**
 * Closes, from the broker's side, every connection whose client-provided name contains
 * `namePart` (`rabbitmqctl close_connection`): what a broker restart looks like to those
 * clients, without stopping the shared broker. Returns how many were closed.
 */
export async function closeRabbitConnections(namePart: string): Promise<number> {
  const { stdout } = await run(RABBITMQCTL, ['list_connections', 'pid', 'client_properties', '-q']);
  const pids = stdout.split('\n').filter((l) => l.includes(namePart)).map((l) => l.split('\t')[0]!).filter((p) => p.startsWith('<'));
  for (const pid of pids) await run(RABBITMQCTL, ['close_connection', pid, 'tandem test: connection cut']);
  return pids.length;
}
