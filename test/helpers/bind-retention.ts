// Run as a child process (test/lean-async-bind.test.ts):
//   node --expose-gc --min-semi-space-size=64 --max-semi-space-size=64 bind-retention.js lean|node
// Sends requests with node:http2's client (ClientHttp2Session.request, which binds each one with
// AsyncResource.bind) to a server in this process; once all of them closed, runs one minor
// collection and prints, as JSON, the bytes per request it left in the young generation — what
// something still kept alive. Each request carries a 2 KB header, so the header block
// node:http2 builds for it (and binds) weighs at least that much. `lean`: with tandem's bind.
import { getHeapSpaceStatistics } from 'node:v8';
import { installLeanAsyncBind } from '../../src/core/lean-async-bind.js';
import { answeringPair } from './young-retention.js';

const lean = process.argv[2] === 'lean';
const installed = lean ? installLeanAsyncBind() : false;
const gc = (globalThis as { gc?: (options?: { type: 'minor' | 'major' }) => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const PAD = 'p'.repeat(2048);
const PER_BATCH = 200;

const { server, session } = await answeringPair();

function batch(n: number): Promise<void> {
  let closed = 0;
  return new Promise((resolve) => {
    for (let i = 0; i < n; i++) {
      const stream = session.request({ ':method': 'POST', ':path': '/t', 'x-pad': PAD });
      stream.resume();
      stream.on('close', () => { if (++closed === n) resolve(); });
      stream.end('body');
    }
  });
}

const young = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

for (let i = 0; i < 5; i++) await batch(PER_BATCH);
const perRequest: number[] = [];
for (let round = 0; round < 5; round++) {
  gc();
  gc();
  await turn();
  const empty = young();
  await batch(PER_BATCH);
  // node:http2 lets go of a closed stream's native side in the turn after it closed.
  for (let i = 0; i < 3; i++) await turn();
  gc({ type: 'minor' });
  perRequest.push((young() - empty) / PER_BATCH);
}
perRequest.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ installed, bytesPerRequest: Math.round(perRequest[2]!) })}\n`);
session.close();
server.close();
