import { writeFileSync } from 'node:fs';
import { realClock } from '../core/clock.js';
import { ConfigError } from '../config/problems.js';
import { createLogger } from '../observe/log.js';
import { readyzProbe, Watchdog, type Verdict } from '../gateway/watchdog.js';
import { adminFromConfig, KEEPALIVED_DEFAULTS } from './keepalived-command.js';

export interface WatchdogArgs {
  /** The gateway's config (its admin listener), or `admin`. */
  config?: string;
  admin?: string;
  trackFile: string;
  intervalMs: number;
  deadAfterMs: number;
  rise: number;
}

/**
 * `tandem watchdog`: runs until SIGTERM/SIGINT, writing keepalived's watchdog track file from
 * the gateway's /readyz (src/gateway/watchdog.ts). Exit codes: 0 stopped, 2 bad config.
 */
export async function runWatchdog(args: WatchdogArgs): Promise<number> {
  let admin: string;
  try {
    admin = args.config ? await adminFromConfig(args.config) : args.admin ?? KEEPALIVED_DEFAULTS.admin;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tandem watchdog: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger('info');
  // ?address: a handover under way still answers 200 until it released the address itself.
  const url = `http://${admin}/readyz?address`;
  const write = (verdict: Verdict, reason: string): void => {
    writeFileSync(args.trackFile, `${verdict}\n`);
    logger[verdict === 1 ? 'warn' : 'info']({ msg: verdict === 1 ? 'gateway failing: the address goes' : 'gateway ready', event: 'watchdog', verdict, reason, trackFile: args.trackFile });
  };
  const dog = new Watchdog({ clock: realClock, probe: readyzProbe(url), write, intervalMs: args.intervalMs, deadAfterMs: args.deadAfterMs, rise: args.rise });
  logger.info({ msg: 'watching', event: 'watchdog', url, trackFile: args.trackFile, intervalMs: args.intervalMs, deadAfterMs: args.deadAfterMs, rise: args.rise });
  dog.start();
  // Stopping the watchdog leaves the file as it is: the gateway keeps or loses the address by
  // its own track file and keepalived's /readyz script.
  return new Promise<number>((resolve) => {
    const stop = (): void => { dog.stop(); resolve(0); };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
}
