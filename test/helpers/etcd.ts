import { makeServerPki } from './tls-pki.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'undici';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from './backend.js';

export const ETCD = process.env.TANDEM_ETCD ?? 'etcd';

/** One member of a test's own etcd cluster. */
export interface EtcdMember {
  readonly name: string;
  /** `127.0.0.1:port` of its client listener. */
  readonly endpoint: string;
  /** Starts it again on the same ports and data dir (it rejoins with its data). */
  start(): Promise<void>;
  /** Sends `signal` (SIGTERM by default) and waits for the exit; SIGSTOP/SIGCONT just send. */
  signal(signal?: NodeJS.Signals): Promise<void>;
  readonly pid: number | undefined;
}

/** PEM files of a throwaway CA, a certificate for 127.0.0.1 (server and client use) and a client certificate. */
export interface TestPki {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** Makes a TestPki with the openssl command (tls-pki.ts: P-256 keys, valid one day); remove `dir` after. */
export function makePki(): TestPki {
  const pki = makeServerPki();
  // etcd's JSON gateway dials its own gRPC port with the server certificate: it needs clientAuth too.
  const server = pki.issue('server', '/CN=127.0.0.1', 'subjectAltName=IP:127.0.0.1', 'serverAuth,clientAuth');
  const client = pki.issue('client', '/CN=tandem', '', 'clientAuth');
  return { dir: pki.dir, ca: join(pki.dir, 'ca.pem'), serverCert: server.cert, serverKey: server.key, clientCert: client.cert, clientKey: client.key };
}

export interface OwnEtcd {
  readonly members: readonly EtcdMember[];
  /** Every member's `127.0.0.1:port`. */
  readonly endpoints: readonly string[];
  /** `etcd://` URL naming every member (serve(), createClient()). */
  readonly url: string;
  /** Waits until a member answers /health with a leader. */
  healthy(timeoutMs?: number): Promise<void>;
  /** SIGKILLs every member and removes the data dirs. */
  destroy(): Promise<void>;
}

/**
 * Starts an etcd cluster of `size` members on free loopback ports, data in temp dirs. Raft
 * timing is 5× faster than etcd's defaults (heartbeat 50 ms, election 500 ms) so that a lease
 * may be as short as 1 s, as in the registry contract; the members are on one host, so the
 * round trips are well below that.
 */
export async function startEtcd(size = 1, tls?: TestPki): Promise<OwnEtcd> {
  const scheme = tls ? 'https' : 'http';
  const tlsArgs = tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : [];
  const probe = tls ? new Agent({ connect: { ca: readFileSync(tls.ca, 'utf8'), cert: readFileSync(tls.clientCert, 'utf8'), key: readFileSync(tls.clientKey, 'utf8') } }) : undefined;
  const ports = await freePorts(size * 2);
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const peers = names.map((n, i) => `${n}=http://127.0.0.1:${ports[2 * i + 1]}`).join(',');
  const dirs: string[] = [];
  const members = names.map((name, i): EtcdMember & { kill(): Promise<void> } => {
    const client = ports[2 * i]!;
    const peer = ports[2 * i + 1]!;
    const dir = mkdtempSync(join(tmpdir(), 'tandem-etcd-'));
    dirs.push(dir);
    let proc: ChildProcess | undefined;
    const args = [
      '--name', name, '--data-dir', dir,
      '--listen-client-urls', `${scheme}://127.0.0.1:${client}`, '--advertise-client-urls', `${scheme}://127.0.0.1:${client}`,
      '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
      '--initial-cluster', peers, '--initial-cluster-state', 'new', '--initial-cluster-token', `tandem-test-${process.pid}`,
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--log-level', 'error', '--logger', 'zap',
      ...tlsArgs,
    ];
    const exited = () => proc === undefined || proc.exitCode !== null || proc.signalCode !== null;
    const member = {
      name,
      endpoint: `127.0.0.1:${client}`,
      get pid() { return proc?.pid; },
      start() {
        proc = spawn(ETCD, args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let log = '';
        proc.stderr!.setEncoding('utf8').on('data', (d: string) => { log = (log + d).slice(-2000); });
        const p = proc;
        return new Promise<void>((resolve, reject) => {
          p.once('spawn', () => resolve());
          p.once('error', (err) => reject(new Error(`cannot start ${ETCD} (install etcd-server): ${err.message}`)));
        });
      },
      async signal(signal: NodeJS.Signals = 'SIGTERM') {
        const p = proc;
        if (p === undefined || exited()) return;
        if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
          p.kill(signal);
          return;
        }
        const gone = new Promise((r) => p.once('exit', r));
        p.kill(signal);
        await gone;
      },
      async kill() {
        proc?.kill('SIGCONT');
        await member.signal('SIGKILL');
      },
    };
    return member;
  });
  const cluster: OwnEtcd = {
    members,
    endpoints: members.map((m) => m.endpoint),
    url: `etcd://${members.map((m) => m.endpoint).join(',')}`,
    async healthy(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (const m of members) {
          const ok = await request(`${scheme}://${m.endpoint}/health`, { headersTimeout: 1000, bodyTimeout: 1000, ...(probe ? { dispatcher: probe } : {}) })
            .then(async (r) => r.statusCode === 200 && ((await r.body.json()) as { health?: string }).health === 'true', () => false);
          if (ok) return;
        }
        if (Date.now() > deadline) throw new Error(`etcd (${cluster.endpoints.join(', ')}) not healthy within ${timeoutMs} ms`);
        // Polling is the only readiness signal etcd gives over its client port.
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async destroy() {
      for (const m of members) await m.kill().catch(() => {});
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
      await probe?.close();
    },
  };
  try {
    await Promise.all(members.map((m) => m.start()));
    await cluster.healthy();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
