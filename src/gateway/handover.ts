import { networkInterfaces } from 'node:os';
import { writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { Logger } from 'pino';

/**
 * A planned handover of the virtual address a gateway pair shares (docs/deployment.md). The
 * gateway tells keepalived it is going away — the track file gets 1, which keepalived (watching
 * it with inotify, `weight 0`) turns into FAULT at once — and waits until the address has left
 * its interfaces, so that new connections land on the peer before this gateway stops serving.
 */
export interface HandoverOptions {
  /** keepalived's track_file: 0 while this gateway should hold the address, 1 from the handover on. */
  trackFile?: string;
  /** The virtual address; the handover waits until no interface but loopback carries it. */
  address?: string;
  /** Longest wait for the address to leave; past it the drain starts anyway. */
  timeoutMs: number;
  /**
   * Drop (not refuse) new connections to the address on this host from the handover on, until
   * the process ends (`--handover-drop-syn`; an nftables table, so CAP_NET_ADMIN). A client whose
   * SYN was dropped retransmits it after ~1 s, by when the address is on the peer: no connection
   * is opened here that the address move could cut between its handshake and its request.
   */
  dropSyn?: boolean;
}

/** What the handover needs of the gateway's client listener. */
export interface HandoverListener {
  /** Client connections open now. */
  openConnections(): number;
  /**
   * While on, a response that said keep-alive before the handover leaves its connection open:
   * the client's next request on it is answered with `Connection: close`. Off, the connection is
   * ended after that response (the address may leave any moment).
   */
  awaitConnections(on: boolean): void;
  closeIdleConnections(): void;
}

export const DEFAULT_HANDOVER_TIMEOUT_MS = 5_000;
/**
 * With dropSyn, the longest wait for the open connections to end before the address is released.
 * Kept well under the client's first SYN retransmit (1 s): a SYN dropped at the start of the wait
 * must find the address on the peer when it comes again.
 */
export const DROP_SYN_SETTLE_MS = 500;
const POLL_MS = 10;
/** The nftables table the handover adds; one per host (network namespace). */
export const DROP_SYN_TABLE = 'tandem_handover';

/**
 * Whether a non-loopback interface carries `address`. Loopback is left out on purpose: the
 * deployment keeps the address on `lo` of both hosts (with arp_ignore, so only the holder
 * answers for it) so that responses already on their way can still leave after it moved.
 */
export function holdsAddress(address: string, interfaces = networkInterfaces()): boolean {
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (!a.internal && a.address === address) return true;
  }
  return false;
}

/** The nftables table that drops connection attempts to the address while nothing listens; it outlives the gateway. */
export const GUARD_TABLE = 'tandem_guard';

/**
 * Written once the gateway listens: keepalived may give it the address. A drop rule left by a
 * killed run goes first; with dropSyn the guard for `ports` (the listeners' ports) goes in.
 */
export function claimAddress(options: HandoverOptions, logger?: Logger, ports: readonly number[] = []): void {
  if (options.dropSyn) {
    allowNewConnections(logger);
    if (options.address !== undefined && ports.length > 0) guardListeners(options.address, ports, logger);
  }
  if (options.trackFile) writeFileSync(options.trackFile, '0\n');
}

function nft(args: string[], input?: string): { ok: boolean; error: string } {
  const r = spawnSync('nft', args, { input, encoding: 'utf8' });
  return { ok: r.status === 0, error: (r.error?.message ?? r.stderr ?? '').trim() };
}

/** The rule set that drops connection attempts (a SYN without ACK) to `address`, every TCP port. */
export function dropSynRuleset(address: string): string {
  return `table ip ${DROP_SYN_TABLE} {
  chain input {
    type filter hook input priority -10; policy accept;
    ip daddr ${address} tcp flags & (fin | syn | rst | ack) == syn drop
  }
}
`;
}

/**
 * The guard: a connection attempt to `address` on one of `ports` is dropped when no socket is
 * there to take it (the kernel's socket lookup finds none) — from a SIGKILL or a crash until the
 * address is on the peer, or until the supervisor restarted the gateway. Refused, the client (and
 * its immediate retry) would fail; dropped, it retransmits the SYN ~1 s later, to whichever host
 * holds the address then. While the gateway listens the rule matches nothing it would drop. It
 * stays when the process ends, on purpose: that is when it works.
 */
export function guardRuleset(address: string, ports: readonly number[]): string {
  const set = `{ ${[...new Set(ports)].sort((a, b) => a - b).join(', ')} }`;
  return `table ip ${GUARD_TABLE} {
  chain input {
    type filter hook input priority -10; policy accept;
    ip daddr ${address} tcp dport ${set} tcp flags & (fin | syn | rst | ack) == syn socket transparent 0 accept
    ip daddr ${address} tcp dport ${set} tcp flags & (fin | syn | rst | ack) == syn counter drop
  }
}
`;
}

/** Installs (replaces) the guard; false (and a warning) when nft is missing or not permitted. */
export function guardListeners(address: string, ports: readonly number[], logger?: Logger): boolean {
  const r = nft(['-f', '-'], `table ip ${GUARD_TABLE}\ndelete table ip ${GUARD_TABLE}\n${guardRuleset(address, ports)}`);
  if (r.ok) logger?.info({ msg: 'connection attempts dropped while nothing listens', event: 'guard', address, ports, table: GUARD_TABLE });
  else logger?.warn({ msg: 'could not install the guard (nft needs CAP_NET_ADMIN): a killed gateway\'s connections are refused until the address moves', event: 'guard-failed', error: r.error });
  return r.ok;
}

/** Adds the drop rule; false (and a warning) when nft is missing or not permitted: the handover goes on without it. */
export function dropNewConnections(address: string, logger: Logger): boolean {
  // Replaced whole: add-then-flush makes the table exist, delete removes an older copy.
  const r = nft(['-f', '-'], `table ip ${DROP_SYN_TABLE}\ndelete table ip ${DROP_SYN_TABLE}\n${dropSynRuleset(address)}`);
  if (r.ok) logger.info({ msg: 'new connections dropped', event: 'handover-drop-syn', address, table: DROP_SYN_TABLE });
  else logger.warn({ msg: 'could not drop new connections (nft needs CAP_NET_ADMIN); handing over without', event: 'handover-drop-syn-failed', error: r.error });
  return r.ok;
}

/** Removes the drop rule when present. */
export function allowNewConnections(logger?: Logger): void {
  const r = nft(['-f', '-'], `table ip ${DROP_SYN_TABLE}\ndelete table ip ${DROP_SYN_TABLE}\n`);
  if (!r.ok) logger?.warn({ msg: 'could not remove the drop rule', event: 'handover-drop-syn-failed', table: DROP_SYN_TABLE, error: r.error });
}

/**
 * Gives the address up and resolves when it left (or at once when this host did not hold it,
 * or after the timeout). Readiness has already dropped when this runs (/readyz says 503), which
 * moves the address too, only more slowly (keepalived's script interval).
 */
export async function releaseAddress(options: HandoverOptions, logger: Logger, listener?: HandoverListener): Promise<void> {
  const start = Date.now();
  const held = options.address !== undefined && holdsAddress(options.address);
  // Synchronous up to the wait: no response can finish between the drain's start and this.
  if (held && options.dropSyn && listener && dropNewConnections(options.address!, logger)) {
    listener.awaitConnections(true);
    await untilConnectionsEnded(listener, logger);
    listener.awaitConnections(false);
  }
  listener?.closeIdleConnections();
  if (options.trackFile) writeFileSync(options.trackFile, '1\n');
  if (!held) return;
  const address = options.address!;
  logger.info({ msg: 'handing the address over', event: 'handover', address, trackFile: options.trackFile });
  while (holdsAddress(address)) {
    if (Date.now() - start >= options.timeoutMs) {
      logger.warn({ msg: 'the address did not leave in time; draining anyway', event: 'handover-timeout', address, waitedMs: Date.now() - start });
      return;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  logger.info({ msg: 'address released', event: 'address-released', address, ms: Date.now() - start });
}

/**
 * No connection can open any more; those open get `Connection: close` on their next response.
 * The address goes once they ended — a request still coming on one of them would otherwise reach
 * the peer, which resets it — or after DROP_SYN_SETTLE_MS (then idle ones are closed).
 */
async function untilConnectionsEnded(listener: HandoverListener, logger: Logger): Promise<void> {
  const start = Date.now();
  while (listener.openConnections() > 0 && Date.now() - start < DROP_SYN_SETTLE_MS) await new Promise((r) => setTimeout(r, POLL_MS));
  logger.info({ msg: 'connections ended', event: 'handover-settled', open: listener.openConnections(), waitedMs: Date.now() - start });
}
