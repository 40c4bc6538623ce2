// The shop's --pair (start.js): two gateways behind one virtual address, as docs/deployment.md
// deploys them on two hosts — here on this machine, in network namespaces of its own: g1 and g2
// on a bridge with the addresses 10.214.0.0/24, each running a gateway with gateway.yaml (its
// admin on the host's address, the client listener on 0.0.0.0 there: the host's address and
// the virtual one), keepalived from `tandem keepalived`, and `tandem watchdog`. The services
// stay in this (the root) namespace, where PostgreSQL, Redis and the brokers are on 127.0.0.1:
// they listen on the bridge's address of this namespace, 10.214.0.1, and register with both
// gateways. Clients — curl, the drill's load — reach the address through the bridge.
//
// The namespaces, keepalived and the watchdog are those of `npm run drill:gateways`
// (scripts/lib/gateway-pair.js, in a clone of tandem). Needs root, iproute2, keepalived, nft and
// curl (installed with apt-get when missing). Everything goes at the end, on Ctrl-C, and at
// the next start after a crash.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { parse, stringify } from 'yaml';
import { createProcs, ensureTools } from '../../scripts/lib/procs.js';
import { GATEWAY_HOSTS, PACKAGES, PairHosts, TandemPair, waitFor } from '../../scripts/lib/gateway-pair.js';

const PORT = 8080;
const ADMIN = 9901;
const TOOLS = ['ip', 'keepalived', 'nft', 'curl'];

/**
 * Builds the hosts and starts both gateways with the config of `configFile`; resolves with the
 * pair in the shape start.js uses of a gateway (listenAddress, adminAddress, adminToken,
 * shutdown()), plus what the instances need (registries, token, serviceHost) and elect(),
 * to be called once they have registered.
 */
export async function startPair(configFile) {
  if (process.getuid?.() !== 0) {
    throw new Error('--pair needs root: it builds network namespaces for the two gateway hosts and runs keepalived in them. Run it as root: sudo npm start -- --pair');
  }
  const missing = ensureTools(TOOLS, 'shop', PACKAGES);
  if (missing.length > 0) throw new Error(`--pair needs ${missing.join(', ')}: apt-get install -y ${missing.map((t) => PACKAGES[t] ?? t).join(' ')}`);
  const procs = createProcs({ tag: 'shop', root: process.cwd() });
  const hosts = new PairHosts({ prefix: 'tsp', subnet: '10.214.0', hosts: { g1: 11, g2: 12 }, rootOctet: 1, procs, tmpName: 'tandem-shop-pair' });
  // A crash or an exit without shutdown() leaves nothing behind either.
  const removeAll = () => {
    procs.killAllSync('SIGKILL');
    hosts.teardown();
    if (hosts.dir) rmSync(hosts.dir, { recursive: true, force: true });
  };
  process.on('exit', removeAll);
  try {
    hosts.build();
  } catch (err) {
    removeAll();
    throw err;
  }
  const token = randomBytes(24).toString('base64url');
  const admin = (h) => `${hosts.address(h)}:${ADMIN}`;
  const base = parse(readFileSync(configFile, 'utf8'));
  const configs = Object.fromEntries(GATEWAY_HOSTS.map((h) => [h, stringify({
    ...base,
    listen: `0.0.0.0:${PORT}`,
    admin: admin(h),
    registry: { ...base.registry, token },
    virtualAddress: hosts.vip,
    peers: GATEWAY_HOSTS.filter((g) => g !== h).map(admin),
  })]));
  // A gateway that ends is started again a second later, as systemd's Restart=always would.
  const pair = new TandemPair(hosts, { configs, adminPort: ADMIN, restartAfterMs: 1000 });
  pair.startGateways();
  try {
    await pair.started();
  } catch (err) {
    removeAll();
    throw err;
  }
  let watch;
  return {
    hosts,
    pair,
    token,
    listenAddress: `${hosts.vip}:${PORT}`,
    adminAddress: admin('g1'),
    adminToken: token,
    registries: GATEWAY_HOSTS.map((h) => `http://${admin(h)}`),
    serviceHost: hosts.address('root'),
    logs: hosts.dir,
    async elect() {
      await pair.elect();
      // From here on, when the address moves (started now: a watcher started at a fault might miss the move).
      watch = hosts.watchAddress();
    },
    /**
     * The drill's fault: SIGKILL to the gateway holding the address; resolves once its
     * supervisor restarted it and it can take the address again: { host, peer, movedMs (until
     * the address was on the peer; null: never), backMs }.
     */
    async killHolder() {
      const host = hosts.holder();
      if (!host) throw new Error('no gateway holds the address');
      const killed = pair.gw[host];
      const at = Date.now();
      pair.signal(host, 'SIGKILL');
      await killed.exited;
      await waitFor(`${host}'s gateway restarted`, () => pair.gw[host] !== killed);
      await pair.eligible(host);
      const moved = watch.movedAfter(at);
      return { host, peer: moved?.host, movedMs: moved ? moved.at - at : null, backMs: Date.now() - at };
    },
    /** Stops keepalived, the watchdogs and the gateways, then removes the hosts and the temp dir. */
    async shutdown() {
      watch?.stop();
      try {
        await pair.stop();
      } finally {
        removeAll();
        process.off('exit', removeAll);
      }
    },
  };
}
