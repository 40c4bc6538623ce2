import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../config/load.js';
import { parseHostPort, type HostPort } from '../core/address.js';
import { Gateway } from '../gateway/gateway.js';
import { createLogger } from '../observe/log.js';
import { runDemoDrill } from './demo-drill.js';
import { TandemError } from '../core/errors.js';

const root = new URL('../../../', import.meta.url);

export interface DemoOptions {
  /** Override the listen / admin addresses of examples/demo.yaml (e.g. 127.0.0.1:0). */
  listen?: string;
  admin?: string;
  /** Run the availability drill instead of waiting for Ctrl-C. */
  drill?: boolean;
  /** Drill length (s) and load (requests/s). */
  duration?: number;
  rate?: number;
}

/** One service instance: a child process using tandem/node. */
export interface DemoInstance {
  readonly service: string;
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  /** Registered id, once it printed its "serving" line. */
  id?: string;
}

/** The gateway and every instance of the demo, with the operations a drill needs. */
export class DemoCluster {
  readonly instances: DemoInstance[] = [];
  /** Ids of the orders each orders instance logged as processed (the drill's duplicate check). */
  readonly processedOrders: string[] = [];
  private counter = new Map<string, number>();

  constructor(readonly gateway: Gateway, private readonly quiet: boolean) {}

  /** Starts an instance of `service` (examples/<service>.js) and resolves once it is registered and ready. */
  async start(service: string): Promise<DemoInstance> {
    const n = (this.counter.get(service) ?? 0) + 1;
    this.counter.set(service, n);
    const script = fileURLToPath(new URL(`examples/${service}.js`, root));
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, TANDEM_REGISTRY: `http://${this.gateway.adminAddress}` },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const instance: DemoInstance = { service, name: `${service}-${n}`, child, exited };
    this.instances.push(instance);
    const serving = new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        let parsed: { msg?: string; id?: string } | undefined;
        try {
          parsed = JSON.parse(line) as { msg?: string; id?: string };
        } catch { /* not ours */ }
        if (parsed?.msg === 'serving') {
          instance.id = parsed.id;
          resolve();
        } else if (parsed?.msg === 'order') {
          this.processedOrders.push(String(parsed.id));
        } else if (!this.quiet) {
          process.stdout.write(`[${instance.name}] ${line}\n`);
        }
      });
      void exited.then((code) => reject(new TandemError('TANDEM_ERR_CLI', `${instance.name} exited (${code}) before it was serving`)));
    });
    await serving;
    return instance;
  }

  /** Instances of `service` still running. */
  running(service: string): DemoInstance[] {
    return this.instances.filter((i) => i.service === service && i.child.exitCode === null && i.child.signalCode === null);
  }

  /** SIGTERM (drain) every instance still running; resolves when all exited. */
  async stopAll(): Promise<void> {
    await Promise.all(this.instances.map((i) => {
      if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill('SIGTERM');
      return i.exited;
    }));
  }
}

/**
 * The quick start (`npm start`): a gateway (examples/demo.yaml) and two services with three
 * instances each — catalog, and orders, which calls catalog through tandem/client — all child
 * processes joining through the gateway's registry. Runs until Ctrl-C, then drains every
 * instance and stops the gateway. With `drill`, drives load through it, deploys and kills
 * instances, and prints what clients saw.
 */
export async function runDemo(options: DemoOptions = {}): Promise<number> {
  const config = await loadConfigFile(fileURLToPath(new URL('examples/demo.yaml', root)));
  if (options.listen !== undefined) config.listen = [{ ...parseAddress(options.listen, '--listen'), tls: undefined }];
  if (options.admin !== undefined) config.admin = parseAddress(options.admin, '--admin');
  const gateway = await Gateway.start(config, createLogger(options.drill ? 'warn' : config.log.level));
  const cluster = new DemoCluster(gateway, options.drill === true);
  try {
    for (const service of ['catalog', 'orders']) {
      await Promise.all([1, 2, 3].map(() => cluster.start(service)));
    }
  } catch (err) {
    await cluster.stopAll();
    await gateway.shutdown();
    throw err;
  }
  const base = `http://${gateway.listenAddress}`;
  process.stdout.write([
    '',
    `  tandem demo: gateway ${base}/  (catalog ×3, orders ×3 — each a child process using tandem/node)`,
    `  try         curl ${base}/catalog/items/apple`,
    `              curl -X POST ${base}/orders -d '{"sku":"apple","qty":2}'`,
    `  dashboard   http://${gateway.adminAddress}/?token=${gateway.adminToken}`,
    `  cluster     http://${gateway.adminAddress}/admin/cluster`,
    `  registry    http://${gateway.adminAddress}/registry/v1/services/orders`,
    `  metrics     http://${gateway.adminAddress}/metrics`,
    `  secret      the admin listener wants it (all but /healthz, /readyz, /metrics): curl -H 'authorization: Bearer ${gateway.adminToken}' …`,
    `              the dashboard link sets it as a cookie; tandem/node and tandem/client on this host found it by themselves`,
    options.drill ? '' : '  Ctrl-C stops everything (each instance drains first).',
    '',
  ].join('\n') + '\n');

  if (options.drill) {
    let code = 1;
    // Ctrl-C during the drill: the instances are this process's children and would outlive it.
    const abort = (signal: NodeJS.Signals) => {
      process.stdout.write(`\n  ${signal}: stopping every instance and the gateway\n`);
      void cluster.stopAll().then(() => gateway.shutdown()).finally(() => process.exit(130));
    };
    process.once('SIGINT', abort);
    process.once('SIGTERM', abort);
    try {
      code = await runDemoDrill(cluster, { duration: options.duration ?? 30, rate: options.rate ?? 300 });
    } finally {
      process.off('SIGINT', abort);
      process.off('SIGTERM', abort);
      await cluster.stopAll();
      await gateway.shutdown();
    }
    return code;
  }
  return new Promise<number>((resolve) => {
    const stop = () => {
      process.stdout.write('\n  stopping: draining every instance, then the gateway\n');
      void cluster.stopAll().then(() => gateway.shutdown()).then(() => resolve(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

function parseAddress(text: string, flag: string): HostPort {
  const hp = parseHostPort(text, true);
  if (typeof hp === 'string') throw new TandemError('TANDEM_ERR_CLI', `${flag} ${text}: ${hp}`);
  return hp;
}
