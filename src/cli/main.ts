import { parseArgs } from 'node:util';
import { CONFIG_SCHEMA } from '../config/schema.js';
import { VERSION } from '../version.js';
import { runGateway } from './gateway-command.js';
import { runDemo } from './demo-command.js';
import { runStatus } from './status-command.js';

const USAGE = `tandem ${VERSION} — high availability for Node.js services

Usage:
  tandem gateway --config FILE     run the gateway (YAML or JSON config)
  tandem gateway --check FILE      validate a config and exit (0 valid, 2 invalid)
  tandem demo                      the quick start: a gateway and two services of three
                                   instances each (catalog, orders), joined through the registry
  tandem demo --drill              the same under load, with a rolling deploy and a SIGKILL;
                                   prints what clients saw [--duration S] [--rate N]
                                   (also: --listen HOST:PORT --admin HOST:PORT)
  tandem status [--admin URL]      the cluster as the dashboard shows it, refreshed every
                                   second (default admin http://127.0.0.1:9901; --once prints
                                   one picture and exits; --interval S)
  tandem schema                    print the config file's JSON Schema
  tandem --version

Signals (gateway): SIGHUP reloads the config, SIGTERM/SIGINT drain and stop.
`;

/** Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'gateway': {
      let values;
      try {
        ({ values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, check: { type: 'string' } }, strict: true }));
      } catch (err) {
        process.stderr.write(`tandem gateway: ${(err as Error).message}\n\n${USAGE}`);
        return 2;
      }
      const file = values.check ?? values.config;
      if (!file) {
        process.stderr.write(`tandem gateway: --config FILE is required\n\n${USAGE}`);
        return 2;
      }
      return runGateway({ config: file, check: values.check !== undefined });
    }
    case 'demo': {
      let values;
      try {
        ({ values } = parseArgs({
          args: rest,
          options: { drill: { type: 'boolean' }, duration: { type: 'string' }, rate: { type: 'string' }, listen: { type: 'string' }, admin: { type: 'string' } },
          strict: true,
        }));
      } catch (err) {
        process.stderr.write(`tandem demo: ${(err as Error).message}\n\n${USAGE}`);
        return 2;
      }
      const duration = positive(values.duration, '--duration');
      const rate = positive(values.rate, '--rate');
      if (typeof duration === 'string' || typeof rate === 'string') {
        process.stderr.write(`tandem demo: ${typeof duration === 'string' ? duration : rate as string}\n`);
        return 2;
      }
      return runDemo({ drill: values.drill, duration, rate, listen: values.listen, admin: values.admin });
    }
    case 'status': {
      let values;
      try {
        ({ values } = parseArgs({ args: rest, options: { admin: { type: 'string', short: 'a' }, once: { type: 'boolean' }, interval: { type: 'string' } }, strict: true }));
      } catch (err) {
        process.stderr.write(`tandem status: ${(err as Error).message}\n\n${USAGE}`);
        return 2;
      }
      const interval = positive(values.interval, '--interval');
      if (typeof interval === 'string') {
        process.stderr.write(`tandem status: ${interval}\n`);
        return 2;
      }
      return runStatus({ admin: values.admin ?? 'http://127.0.0.1:9901', once: values.once === true, intervalMs: (interval ?? 1) * 1000 });
    }
    case 'schema':
      process.stdout.write(`${JSON.stringify(CONFIG_SCHEMA, null, 2)}\n`);
      return 0;
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`tandem: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

/** A positive number from a flag's text; undefined when absent, a message when not a positive number. */
function positive(text: string | undefined, flag: string): number | undefined | string {
  if (text === undefined) return undefined;
  const n = Number(text);
  return Number.isFinite(n) && n > 0 ? n : `${flag} must be a positive number, got "${text}"`;
}
