import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../config/load.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger } from '../observe/log.js';

const root = new URL('../../../', import.meta.url);

/**
 * The quick-start job: three example backends (child processes) behind a gateway using
 * examples/gateway.yaml. Runs until Ctrl-C, then stops the gateway and every child.
 */
export async function runDemo(): Promise<number> {
  const configFile = fileURLToPath(new URL('examples/gateway.yaml', root));
  const config = await loadConfigFile(configFile);
  const backendScript = fileURLToPath(new URL('examples/backend.js', root));
  const children: ChildProcess[] = [];
  for (const ep of config.services.get('shop')?.endpoints ?? []) {
    children.push(spawn(process.execPath, [backendScript, String(ep.port), `shop-${ep.port}`], { stdio: ['ignore', 'inherit', 'inherit'] }));
  }
  const logger = createLogger(config.log.level);
  const gateway = await Gateway.start(config, logger);
  process.stdout.write([
    '',
    `  tandem demo: gateway http://${gateway.listenAddress}/  (3 backends, balancer ${config.services.get('shop')?.balancer})`,
    `  admin       http://${gateway.adminAddress}/admin/cluster`,
    `  metrics     http://${gateway.adminAddress}/metrics`,
    '  Ctrl-C stops everything.',
    '',
  ].join('\n') + '\n');
  return new Promise<number>((resolve) => {
    const stop = () => {
      void gateway.shutdown().then(async () => {
        await Promise.all(children.map((c) => new Promise<void>((done) => {
          if (c.exitCode !== null || c.signalCode !== null) return done();
          c.once('exit', () => done());
          c.kill('SIGTERM');
        })));
        resolve(0);
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
