import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../config/problems.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger } from '../observe/log.js';
import { installLeanAsyncBind } from '../core/lean-async-bind.js';
import { installStreamTableRenewal } from '../core/stream-tables.js';
import { allowNewConnections, claimAddress, releaseAddress, type HandoverOptions } from '../gateway/handover.js';

export interface GatewayArgs {
  config: string;
  check: boolean;
  /** A pair behind a virtual address (`--track-file`, `--virtual-address`): SIGTERM hands the address over before draining. */
  handover?: HandoverOptions;
  /** The process title, which keepalived's track_process matches (default tandem-gateway). */
  processName?: string;
}

/** Exit codes: 0 clean stop, 1 runtime failure (e.g. port in use), 2 invalid config. */
export async function runGateway(args: GatewayArgs): Promise<number> {
  let config;
  try {
    config = await loadConfigFile(args.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tandem: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (args.check) {
    process.stdout.write(`${args.config}: ok (${config.services.size} service${config.services.size === 1 ? '' : 's'}, ${config.routes.length} route${config.routes.length === 1 ? '' : 's'})\n`);
    return 0;
  }
  const logger = createLogger(config.log.level);
  // Before any connection to an endpoint: node:http2 binds every request it sends with
  // AsyncResource.bind, whose own version keeps each stream alive past the scavenges
  // (core/lean-async-bind.ts). This process is the gateway's alone; the libraries never do this.
  logger.debug({ msg: 'AsyncResource.bind', lean: installLeanAsyncBind() });
  // Likewise node:http2's stream tables, renewed after collections so that an old one does not
  // keep every stream of its session alive past the scavenges (core/stream-tables.ts).
  logger.debug({ msg: 'stream tables', renewal: installStreamTableRenewal(() => logger.warn({ msg: 'node:http2 sessions are not as expected here: their stream tables are not renewed', node: process.version })) });
  let gateway: Gateway | undefined;
  let finish!: (code: number) => void;
  const exitCode = new Promise<number>((resolve) => { finish = resolve; });
  // The signal handlers go in before anything binds: the "listening" line can reach a
  // supervisor before Gateway.start returns, and a SIGHUP with no handler kills the process.
  // Signals that arrive during startup wait for it (queue), as do signals during a reload.
  let queue: Promise<unknown> = Promise.resolve();
  process.on('SIGHUP', () => {
    queue = queue.then(async () => {
      if (!gateway) return;
      try {
        gateway.reload(await loadConfigFile(args.config));
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)) : [(err as Error).message];
        logger.error({ msg: 'reload rejected; the previous config keeps serving', problems });
        process.stderr.write(`tandem: reload rejected, previous config kept: ${(err as Error).message}\n`);
      }
    });
  });
  const stop = (signal: string) => {
    queue = queue.then(async () => {
      if (!gateway) return;
      logger.info({ msg: 'signal', signal });
      try {
        const handover = args.handover;
        await gateway.shutdown(handover ? (listener) => releaseAddress(handover, logger, listener) : undefined);
        // The drop rule goes with the process: this host may hold the address again later.
        if (handover?.dropSyn) allowNewConnections(logger);
        finish(0);
      } catch (err) {
        logger.error({ msg: 'shutdown failed', err });
        finish(1);
      }
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // keepalived's track_process finds a gateway of a pair by this name (tandem keepalived
  // --track-process). A lone gateway keeps its command line, config path and all, in ps.
  if (args.processName !== undefined || args.handover) process.title = args.processName ?? 'tandem-gateway';
  queue = Gateway.start(config, logger).then((started) => {
    gateway = started;
    if (args.handover) claimAddress(args.handover, logger, started.listenPorts);
  }, (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`tandem: ${err.message}\n`);
      finish(2);
      return;
    }
    const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    const hint = code === 'EADDRINUSE' ? ' (address already in use: another process listens there)'
      : code === 'EACCES' ? ' (permission denied: ports below 1024 need privileges)'
        : code === 'EADDRNOTAVAIL' ? ' (no such address on this machine)' : '';
    process.stderr.write(`tandem: ${(err as Error).message}${hint}\n`);
    finish(1);
  });
  return exitCode;
}
