// A gateway pair on one machine (tandem issue 13), as docs/deployment.md runs it on two hosts:
// network namespaces on a bridge stand for the hosts, and on each of the two gateway hosts run a
// tandem gateway (supervised: a copy of the address on lo while it runs, the handover file
// written when it ends), keepalived with the config of `tandem keepalived`, and `tandem
// watchdog`. Used by `npm run drill:gateways` and the shop's `--pair` (examples/shop/start.js).
// Needs root, iproute2, keepalived, curl and — with dropSyn — nft.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './procs.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TANDEM = join(ROOT, 'bin', 'tandem.js');
/** The two gateway hosts. */
export const GATEWAY_HOSTS = ['g1', 'g2'];
/** The Debian packages of the tools a pair needs, for procs.js's ensureTools. */
export const PACKAGES = { ip: 'iproute2', nft: 'nftables' };

/** Runs a command; its stdout (throws on a non-zero exit unless `check` is false). */
function run(cmd, args, { check = true } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (check && r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.stdout || r.error?.message || '').trim()}`);
  return r.stdout ?? '';
}

/** Polls `pred` every 100 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitFor(what, pred, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export function readText(file) {
  try { return readFileSync(file, 'utf8'); } catch { return ''; }
}

/** Whether the process `pid` still exists. */
function exists(pid) {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/**
 * Hosts as network namespaces `<prefix><pid>-<host>` on a bridge (in a namespace `…-br` of its
 * own), addresses `<subnet>.<octet>/24` only; with `rootOctet` the root namespace joins the
 * bridge too, by a veth `<prefix><pid>` with that address — so that processes of this machine
 * (instances, a load generator, curl) reach the hosts and the virtual address `<subnet>.100`.
 * The gateway hosts answer ARP for their own eth0 addresses only (arp_ignore): the address's
 * copy on lo stays theirs.
 */
export class PairHosts {
  /**
   * @param {{ prefix: string, subnet: string, hosts: Record<string, number>, rootOctet?: number, procs: object, tmpName: string }} o
   *   procs: scripts/lib/procs.js's createProcs(); tmpName: the temp dir's name before `-<pid>-`.
   */
  constructor({ prefix, subnet, hosts, rootOctet, procs, tmpName }) {
    Object.assign(this, { prefix, subnet, hosts, rootOctet, procs, tmpName });
    this.vip = `${subnet}.100`;
    this.rootLink = `${prefix}${process.pid}`;
    this.dir = undefined;
  }

  ns(h) { return `${this.prefix}${process.pid}-${h}`; }

  address(h) { return h === 'root' ? `${this.subnet}.${this.rootOctet}` : `${this.subnet}.${this.hosts[h]}`; }

  /** Removes what crashed runs left (their pid is gone), then builds the hosts and a temp dir. */
  build() {
    this.removeStale();
    if (this.rootOctet !== undefined) {
      const taken = run('ip', ['-o', 'addr', 'show', 'to', `${this.subnet}.0/24`]).trim();
      if (taken) throw new Error(`${this.subnet}.0/24 is in use on this machine (another run of this? ${taken.split(/\s+/)[1]}): stop it first`);
    }
    this.dir = mkdtempSync(join(os.tmpdir(), `${this.tmpName}-${process.pid}-`));
    const ip = (...args) => run('ip', args);
    const names = Object.keys(this.hosts);
    for (const h of ['br', ...names]) ip('netns', 'add', this.ns(h));
    ip('-n', this.ns('br'), 'link', 'add', 'br0', 'type', 'bridge');
    ip('-n', this.ns('br'), 'link', 'set', 'br0', 'up');
    for (const h of names) {
      ip('link', 'add', 'eth0', 'netns', this.ns(h), 'type', 'veth', 'peer', 'name', `p-${h}`, 'netns', this.ns('br'));
      ip('-n', this.ns('br'), 'link', 'set', `p-${h}`, 'master', 'br0', 'up');
      ip('-n', this.ns(h), 'addr', 'add', `${this.address(h)}/24`, 'dev', 'eth0');
      ip('-n', this.ns(h), 'link', 'set', 'eth0', 'up');
      ip('-n', this.ns(h), 'link', 'set', 'lo', 'up');
    }
    if (this.rootOctet !== undefined) {
      ip('link', 'add', this.rootLink, 'type', 'veth', 'peer', 'name', 'p-root', 'netns', this.ns('br'));
      ip('-n', this.ns('br'), 'link', 'set', 'p-root', 'master', 'br0', 'up');
      ip('addr', 'add', `${this.address('root')}/24`, 'dev', this.rootLink);
      ip('link', 'set', this.rootLink, 'up');
    }
    for (const h of GATEWAY_HOSTS) {
      // The gateway's copy of the address on lo (see TandemPair.startGateway) stays out of ARP.
      this.exec(h, 'sysctl', ['-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2', 'net.ipv4.conf.eth0.arp_ignore=1', 'net.ipv4.conf.eth0.arp_announce=2']);
    }
  }

  /** Kills every process in the namespaces and deletes them, and the root's veth (the others go with their namespace). */
  teardown() {
    for (const h of ['br', ...Object.keys(this.hosts)]) removeNamespace(this.ns(h));
    if (this.rootOctet !== undefined) removeLink(this.rootLink);
  }

  /** Namespaces and temp dirs of runs whose process is gone (a crash, a SIGKILL). */
  removeStale() {
    const pattern = new RegExp(`^(${this.prefix}(\\d+)-\\w+)`);
    for (const line of run('ip', ['netns', 'list'], { check: false }).split('\n')) {
      const m = pattern.exec(line);
      if (m && (Number(m[2]) === process.pid || !exists(Number(m[2])))) removeNamespace(m[1]);
    }
    // A namespace goes once its last process has: a root's veth into a stale bridge may outlive the deletion above for a while.
    const links = new RegExp(`^(${this.prefix}(\\d+))[@:\\s]`);
    for (const line of run('ip', ['-br', 'link'], { check: false }).split('\n')) {
      const m = links.exec(line);
      if (m && (Number(m[2]) === process.pid || !exists(Number(m[2])))) removeLink(m[1]);
    }
    const dirs = new RegExp(`^${this.tmpName}-(\\d+)-`);
    for (const name of readdirSync(os.tmpdir())) {
      const m = dirs.exec(name);
      if (m && Number(m[1]) !== process.pid && !exists(Number(m[1]))) rmSync(join(os.tmpdir(), name), { recursive: true, force: true });
    }
  }

  /** Runs a command in host `h` to its end; its stdout. */
  exec(h, cmd, args, options) {
    return run('ip', ['netns', 'exec', this.ns(h), cmd, ...args], options);
  }

  /** Starts a long-running process in host `h` (procs.start: output in the temp dir). */
  start(h, name, cmd, args) {
    return this.procs.start(name, 'ip', ['netns', 'exec', this.ns(h), cmd, ...args], { dir: this.dir });
  }

  /**
   * curl inside host `h`: resolves the HTTP status, 0 when no answer. Not spawnSync: the caller's
   * event loop may be a load generator's (the shop's drill), which a blocked second would stall.
   */
  status(h, url, timeoutS = 1) {
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', this.ns(h), 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(timeoutS), url], (_err, stdout) => resolve(Number(stdout) || 0));
    });
  }

  /** The gateway host whose eth0 has the virtual address now, or undefined. */
  holder() {
    return GATEWAY_HOSTS.find((h) => run('ip', ['-n', this.ns(h), '-o', 'addr', 'show', 'dev', 'eth0']).includes(` ${this.vip}/24 `));
  }

  /** Records when the address comes and goes on each gateway host, from `ip monitor` (no polling). */
  watchAddress() {
    const events = [];
    const watchers = GATEWAY_HOSTS.map((h) => {
      const child = spawn('ip', ['-n', this.ns(h), '-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let buf = '';
      child.stdout.on('data', (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.includes(`${this.vip}/24`)) events.push({ at: Date.now(), host: h, added: !line.startsWith('Deleted') });
        }
      });
      return child;
    });
    return {
      events,
      /** The first arrival of the address at or after `at` (ms since the epoch). */
      movedAfter: (at) => events.find((e) => e.added && e.at >= at),
      stop: () => watchers.forEach((c) => c.kill('SIGKILL')),
    };
  }

  /** keepalived in host `h` with config `conf`, its pid files in the temp dir. */
  startKeepalived(h, conf) {
    const file = (s) => join(this.dir, `${h}-${s}`);
    writeFileSync(file('keepalived.conf'), conf);
    return this.start(h, `keepalived-${h}`, 'keepalived', ['-n', '-l', '-D', '-P', '-f', file('keepalived.conf'), '-p', file('ka.pid'), '-r', file('ka-vrrp.pid'), '-c', file('ka-chk.pid')]);
  }

  /** keepalived's last state in host `h` (MASTER, BACKUP, FAULT, …) from its log; 'none' before any. */
  keepalivedState(h) {
    let state = 'none';
    for (const l of `${readText(join(this.dir, `keepalived-${h}.stdout.log`))}\n${readText(join(this.dir, `keepalived-${h}.stderr.log`))}`.split('\n')) {
      const m = /[Ee]ntering (\w+) (?:STATE|state)/.exec(l);
      if (m) state = m[1];
    }
    return state;
  }

  /** Forgets keepalived's logs of host `h` (a new keepalived is starting there). */
  clearKeepalivedLogs(h) {
    for (const f of ['stdout', 'stderr']) rmSync(join(this.dir, `keepalived-${h}.${f}.log`), { force: true });
  }
}

function removeLink(name) {
  run('ip', ['link', 'del', name], { check: false });
}

function removeNamespace(name) {
  for (const pid of run('ip', ['netns', 'pids', name], { check: false }).split('\n').filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
  }
  run('ip', ['netns', 'del', name], { check: false });
}

/**
 * The tandem pair on `hosts`' g1 and g2: each gateway with the config `configs[h]` (YAML text,
 * its admin on the host's address and `adminPort`), `--track-file` and `--virtual-address` (and
 * `--handover-drop-syn` with dropSyn), keepalived from `tandem keepalived` (priority 250 on g1,
 * 240 on g2) and, with watchdog, `tandem watchdog` beside each. Start the gateways, register the
 * instances, then elect().
 */
export class TandemPair {
  /**
   * @param {PairHosts} hosts
   * @param {{ configs: Record<string, string>, adminPort: number, dropSyn?: boolean, watchdog?: boolean, deadAfter?: string, restartAfterMs?: number }} o
   *   restartAfterMs: a gateway that ended (not by stop()) is started again this long after, as
   *   systemd's Restart=always does; unset, the caller restarts it (restart()).
   */
  constructor(hosts, { configs, adminPort, dropSyn = true, watchdog = true, deadAfter, restartAfterMs }) {
    Object.assign(this, { hosts, adminPort, dropSyn, watchdog, deadAfter, restartAfterMs });
    this.stopping = false;
    /** The gateway process of each host (procs.start's). */
    this.gw = {};
    this.dogs = {};
    this.ka = {};
    for (const h of GATEWAY_HOSTS) writeFileSync(this.file(h, 'yaml'), configs[h]);
  }

  file(h, what) { return join(this.hosts.dir, `${h}.${what}`); }

  /** Starts both gateways (not yet behind the address). */
  startGateways() {
    for (const h of GATEWAY_HOSTS) this.startGateway(h);
  }

  /**
   * The gateway, supervised as the systemd unit in docs/deployment.md does it: while it runs, a
   * copy of the address sits on lo (scope host), so that responses in flight when the address
   * moves can still leave this host; when the process ends, however it ends, 1 goes into the
   * handover file (keepalived moves the address) and the copy goes. With --handover-drop-syn the
   * gateway's guard (an nftables table it installs when it listens, and leaves) drops a
   * connection attempt that finds nothing listening — from the instant of a SIGKILL, before any
   * supervisor could act — so the client's SYN retransmit lands on the peer instead of failing.
   */
  startGateway(h) {
    const { hosts } = this;
    run('ip', ['-n', hosts.ns(h), 'addr', 'replace', `${hosts.vip}/32`, 'dev', 'lo', 'scope', 'host']);
    const proc = hosts.start(h, `tandem-${h}`, process.execPath, [TANDEM, 'gateway', '--config', this.file(h, 'yaml'),
      '--track-file', this.file(h, 'handover'), '--virtual-address', hosts.vip, '--process-name', `tandem-${h}`, ...(this.dropSyn ? ['--handover-drop-syn'] : [])]);
    void proc.exited.then(() => {
      if (hosts.procs.isCleaningUp()) return; // the namespaces and the temp dir are going
      try { writeFileSync(this.file(h, 'handover'), '1\n'); } catch { /* removed meanwhile */ }
      run('ip', ['-n', hosts.ns(h), 'addr', 'del', `${hosts.vip}/32`, 'dev', 'lo'], { check: false });
      if (this.restartAfterMs !== undefined && !this.stopping) setTimeout(() => { if (!this.stopping) this.startGateway(h); }, this.restartAfterMs);
    });
    this.gw[h] = proc;
    return proc;
  }

  /** Resolves once both gateways answer /healthz (listening; not yet ready without members). */
  async started() {
    for (const h of GATEWAY_HOSTS) await waitFor(`${h} listening`, async () => await this.hosts.status(h, `http://${this.hosts.address(h)}:${this.adminPort}/healthz`) === 200);
  }

  /** Once both gateways are ready: the watchdogs and keepalived; resolves when the address is on one and both are eligible. */
  async elect() {
    for (const h of GATEWAY_HOSTS) await this.ready(h);
    if (this.watchdog) {
      for (const h of GATEWAY_HOSTS) {
        // Beside the gateway (docs/deployment.md): it outlives the gateway's restarts.
        this.dogs[h] = this.hosts.start(h, `watchdog-${h}`, process.execPath, [TANDEM, 'watchdog', '--config', this.file(h, 'yaml'),
          '--track-file', this.file(h, 'watchdog'), ...(this.deadAfter ? ['--dead-after', this.deadAfter] : [])]);
      }
    }
    for (const [h, priority] of [['g1', 250], ['g2', 240]]) this.ka[h] = this.hosts.startKeepalived(h, this.keepalivedConf(h, priority));
    await waitFor('the address on a gateway', () => this.hosts.holder() !== undefined);
    for (const h of GATEWAY_HOSTS) await this.eligible(h);
  }

  keepalivedConf(h, priority) {
    const r = spawnSync(process.execPath, [TANDEM, 'keepalived', '-i', 'eth0', '-a', `${this.hosts.vip}/24`, '-p', String(priority),
      '--config', this.file(h, 'yaml'), '--track-file', this.file(h, 'handover'), '--process-name', `tandem-${h}`, ...(this.dropSyn ? ['--handover-drop-syn'] : []),
      ...(this.watchdog ? ['--watchdog-file', this.file(h, 'watchdog')] : [])], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tandem keepalived: ${r.stderr}`);
    return r.stdout;
  }

  async ready(h) {
    await waitFor(`${h} ready`, async () => await this.hosts.status(h, `http://${this.hosts.address(h)}:${this.adminPort}/readyz`) === 200);
  }

  /** Waits until the gateway on h is ready and keepalived there in BACKUP or MASTER (not FAULT): able to take over. */
  async eligible(h) {
    await this.ready(h);
    await waitFor(`keepalived on ${h} in BACKUP`, () => ['BACKUP', 'MASTER'].includes(this.hosts.keepalivedState(h)));
  }

  /** Starts h's gateway again (after it ended) and waits until it is eligible. */
  async restart(h) {
    this.startGateway(h);
    await this.eligible(h);
  }

  signal(h, sig) {
    this.hosts.procs.signalProc(this.gw[h], sig);
  }

  /** Stops keepalived, the watchdogs and the gateways (SIGTERM: each hands over and drains), in that order. */
  async stop() {
    this.stopping = true;
    const { procs } = this.hosts;
    await Promise.all(GATEWAY_HOSTS.map((h) => procs.stop(this.ka[h])));
    await Promise.all(GATEWAY_HOSTS.map((h) => procs.stop(this.dogs[h])));
    await Promise.all(GATEWAY_HOSTS.map((h) => procs.stop(this.gw[h], { graceMs: 15_000 })));
  }
}
