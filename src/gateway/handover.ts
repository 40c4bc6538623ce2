import { networkInterfaces } from 'node:os';
import { writeFileSync } from 'node:fs';
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
}

export const DEFAULT_HANDOVER_TIMEOUT_MS = 5_000;
const POLL_MS = 10;

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

/** Written once the gateway listens: keepalived may give it the address. */
export function claimAddress(options: HandoverOptions): void {
  if (options.trackFile) writeFileSync(options.trackFile, '0\n');
}

/**
 * Gives the address up and resolves when it left (or at once when this host did not hold it,
 * or after the timeout). Readiness has already dropped when this runs (/readyz says 503), which
 * moves the address too, only more slowly (keepalived's script interval).
 */
export async function releaseAddress(options: HandoverOptions, logger: Logger): Promise<void> {
  const start = Date.now();
  const held = options.address !== undefined && holdsAddress(options.address);
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
