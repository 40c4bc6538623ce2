import { loadConfigFile } from '../config/load.js';
import { ConfigError } from '../config/problems.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger } from '../observe/log.js';

export interface GatewayArgs {
  config: string;
  check: boolean;
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
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(config, logger);
  } catch (err) {
    process.stderr.write(`tandem: ${(err as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    let reloading = Promise.resolve();
    process.on('SIGHUP', () => {
      reloading = reloading.then(async () => {
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
      logger.info({ msg: 'signal', signal });
      gateway.shutdown().then(() => resolve(0), (err: unknown) => {
        logger.error({ msg: 'shutdown failed', err });
        resolve(1);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
