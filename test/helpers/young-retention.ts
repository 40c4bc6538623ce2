// What stays young after a minor collection: the parent's side (a child process run with a
// young generation big enough that no collection runs on its own, printing one JSON line) and
// the children's common setup (a node:http2 server in the process answering every request).
import { spawn } from 'node:child_process';
import { connect, createServer, type ClientHttp2Session, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { GUARD_MS } from './wait.js';

/** Runs helpers/`script` with `mode` under --expose-gc and a 64 MB young generation; resolves its JSON line. */
export function runRetentionChild<T>(script: string, mode: string): Promise<T> {
  const file = fileURLToPath(new URL(`./${script}`, import.meta.url));
  const child = spawn(process.execPath, ['--expose-gc', '--min-semi-space-size=64', '--max-semi-space-size=64', file, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const guard = setTimeout(() => child.kill('SIGKILL'), GUARD_MS);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) reject(new Error(`${script} ${mode} exited ${code ?? signal}: ${err}`));
      else resolve(JSON.parse(out) as T);
    });
  });
}

/**
 * A node:http2 server on 127.0.0.1 answering every request 200 "ok" once its body ended, and
 * one client session to it; `onSession` sees each server session.
 */
export async function answeringPair(onSession?: (session: ServerHttp2Session) => void): Promise<{ server: Http2Server; session: ClientHttp2Session }> {
  const server = createServer();
  if (onSession !== undefined) server.on('session', onSession);
  server.on('stream', (stream: ServerHttp2Stream) => {
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, session: connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`) };
}
