#!/usr/bin/env node
// The shop's launcher (`npm start`): a gateway (gateway.yaml) and every service as child
// processes, several instances each. Flags switch a part to the real thing; each sets the
// environment variable the services read (lib/settings.js), which may be set instead:
//   --postgres[=URL]   DATABASE_URL   orders (+ outbox), payments, the consumers' inbox, catalog
//   --redis[=URL]      REDIS_URL      catalog's read cache
//   --nats[=URL]       NATS_URL       the bus: NATS JetStream
//   --rabbitmq[=URL]   RABBITMQ_URL   the bus: RabbitMQ
//   --kafka[=BROKERS]  KAFKA_BROKERS  the bus: Kafka
//   --etcd[=HOSTS]     ETCD_ENDPOINTS the registry: etcd (host:port,…); the gateway reads the members
//                                     from it, instances register there (else: the gateway's own)
//   --listen, --admin  the gateway's addresses (default those of gateway.yaml)
//   --pair             two gateways behind one virtual address (keepalived), each in a network
//                      namespace of its own; as root (pair.js)
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Gateway } from 'tandem-ha/gateway';
import { loadConfigFile } from 'tandem-ha/config';
import { createLogger } from 'tandem-ha/observe';

const SWITCHES = {
  postgres: ['DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/postgres'],
  redis: ['REDIS_URL', 'redis://127.0.0.1:6379'],
  nats: ['NATS_URL', 'nats://127.0.0.1:4222'],
  rabbitmq: ['RABBITMQ_URL', 'amqp://guest:guest@127.0.0.1:5672'],
  kafka: ['KAFKA_BROKERS', '127.0.0.1:9092'],
  etcd: ['ETCD_ENDPOINTS', '127.0.0.1:2379'],
};

/** `--name` or `--name=value` flags. */
function parseFlags(args) {
  const flags = {};
  for (const arg of args) {
    const [, name, value] = /^--([a-z]+)(?:=(.*))?$/.exec(arg) ?? [];
    if (name === undefined || !(name in SWITCHES || ['listen', 'admin', 'pair', 'drill', 'quick', 'duration', 'rate'].includes(name))) {
      throw new Error(`unknown argument ${arg}; flags: ${Object.keys(SWITCHES).map((n) => `--${n}[=…]`).join(' ')} --listen=host:port --admin=host:port --pair`);
    }
    flags[name] = value ?? true;
  }
  if (flags.pair !== undefined && flags.pair !== true) throw new Error('--pair takes no value');
  for (const other of ['listen', 'admin', 'etcd']) {
    // The gateways are in namespaces of their own: 127.0.0.1 there is not this machine's.
    if (flags.pair && flags[other] !== undefined) throw new Error(`--pair with --${other}: the pair's gateways listen on the virtual address 10.214.0.100:8080 and their hosts' addresses, and reach only what is on the bridge (not etcd on 127.0.0.1)`);
  }
  return flags;
}

/** The gateway and the instances it started, by service. */
export class Shop {
  instances = [];
  effects = [];
  #counts = new Map();

  constructor(gateway, env, { quiet = false } = {}) {
    this.gateway = gateway;
    this.env = env;
    this.quiet = quiet;
  }

  /** Starts an instance of `service` (<service>.js); resolves once it is registered. */
  start(service) {
    const n = (this.#counts.get(service) ?? 0) + 1;
    this.#counts.set(service, n);
    const script = fileURLToPath(new URL(`${service}.js`, import.meta.url));
    const child = spawn(process.execPath, [script], { env: this.env, stdio: ['ignore', 'pipe', 'inherit'] });
    const instance = { service, name: `${service}-${n}`, child, exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal))) };
    this.instances.push(instance);
    return new Promise((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const fields = parseJson(line);
        if (fields?.msg === 'serving') resolve(instance);
        else if (fields?.order !== undefined) this.effects.push({ ...fields, instance: instance.name });
        const text = fields?.msg === 'serving' ? `serving on ${fields.address}` : fields?.text ?? line;
        if (!this.quiet) process.stdout.write(`[${instance.name}] ${text}\n`);
      });
      void instance.exited.then((code) => reject(new Error(`${instance.name} exited (${code}) before it was serving`)));
    });
  }

  running(service) {
    return this.instances.filter((i) => i.service === service && i.child.exitCode === null && i.child.signalCode === null);
  }

  /** SIGTERM to every instance (each drains), then the gateway stops. */
  async stop() {
    for (const i of this.instances) if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill('SIGTERM');
    await Promise.all(this.instances.map((i) => i.exited));
    await this.gateway.shutdown();
  }
}

function parseJson(line) {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

/** Starts the gateway and every instance with the flags' settings; resolves once all are serving. */
export async function launch(flags, { quiet = false } = {}) {
  const env = { ...process.env };
  for (const [name, [variable, fallback]] of Object.entries(SWITCHES)) {
    if (flags[name] !== undefined) env[variable] = flags[name] === true ? fallback : flags[name];
  }
  const configFile = fileURLToPath(new URL('gateway.yaml', import.meta.url));
  const gateway = flags.pair ? await startPair(configFile) : await startGateway(configFile, flags, env);
  if (flags.pair) Object.assign(env, { TANDEM_REGISTRY: gateway.registries.join(' '), TANDEM_TOKEN: gateway.token, SHOP_HOST: gateway.serviceHost });
  else env.TANDEM_REGISTRY = env.ETCD_ENDPOINTS ? `etcd://${env.ETCD_ENDPOINTS}` : `http://${gateway.adminAddress}`;
  const shop = new Shop(gateway, env, { quiet });
  // State in a process's memory cannot be shared: without PostgreSQL, orders and payments run once.
  const stateful = env.DATABASE_URL ? 3 : 1;
  shop.plan = { catalog: 3, orders: stateful, payments: stateful, notifications: 2, shipping: 2 };
  try {
    // First one instance of each, but shipping: their first starts create the tables of
    // tandem's inbox (notifications) and outbox (orders) and would race for them.
    const first = ['payments', 'catalog', 'notifications', 'orders'];
    await Promise.all(first.map((service) => shop.start(service)));
    const rest = Object.entries(shop.plan).flatMap(([service, count]) => Array(count - (first.includes(service) ? 1 : 0)).fill(service));
    await Promise.all(rest.map((service) => shop.start(service)));
    await gateway.elect?.(); // the pair: keepalived, once both gateways know every instance
  } catch (err) {
    await shop.stop();
    throw err;
  }
  return shop;
}

/** The one gateway, in this process. */
async function startGateway(configFile, flags, env) {
  const config = await loadConfigFile(configFile);
  const address = (text) => ({ host: text.slice(0, text.lastIndexOf(':')), port: Number(text.slice(text.lastIndexOf(':') + 1)) });
  if (flags.listen) config.listen = [{ ...address(flags.listen), tls: undefined }];
  if (flags.admin) config.admin = address(flags.admin);
  if (env.ETCD_ENDPOINTS) config.registry = { ...config.registry, etcd: env.ETCD_ENDPOINTS.split(',') };
  return Gateway.start(config, createLogger('warn'));
}

/** The pair (pair.js), which only a clone of tandem has: it runs scripts/lib/gateway-pair.js. */
async function startPair(configFile) {
  const { startPair: start } = await import('./pair.js').catch((err) => {
    throw new Error(`--pair runs the gateways with scripts/lib/gateway-pair.js, which only a clone of tandem has (${err.message})`);
  });
  return start(configFile);
}

async function main() {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.drill) {
    const { runDrill } = await import('./drill.js');
    process.exit(await runDrill(flags));
  }
  const shop = await launch(flags);
  const { gateway, env, plan } = shop;
  const base = `http://${gateway.listenAddress}`;
  const uses = Object.entries(SWITCHES).filter(([, [variable]]) => env[variable]).map(([name, [variable]]) => `${name} (${variable}=${env[variable]})`);
  process.stdout.write(`
  the shop: gateway ${base}/  — ${Object.entries(plan).map(([s, n]) => `${s} ×${n}`).join(', ')}
  using     ${uses.length > 0 ? uses.join(', ') : 'no database or broker: in-memory stores and the memory bus'}${gateway.pair ? pairLines(gateway) : ''}
  try       curl ${base}/catalog/items/cheese
            curl -i ${base}/orders -H 'Idempotency-Key: my-first-order' -d '{"sku":"cheese","qty":2}'
            curl ${base}/orders/<the id it returned>
  dashboard http://${gateway.adminAddress}/?token=${gateway.adminToken}
  Ctrl-C stops everything (each instance drains first).

`);
  await new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.stdout.write(`\n  stopping: draining every instance, then the ${gateway.pair ? 'gateways, and removing their namespaces' : 'gateway'}\n`);
  await shop.stop();
}

/** What --pair adds to the banner: where the gateways are, who holds the address, how to see it move. */
function pairLines({ pair, hosts, logs }) {
  const holder = hosts.holder();
  const gateways = ['g1', 'g2'].map((h) => `${h} ${hosts.address(h)} (pid ${pair.gw[h].child.pid}${h === holder ? ', holds the address' : ''})`).join(', ');
  return `
  the pair  ${hosts.vip} moves between the gateways ${gateways}: keepalived, tandem watchdog,
            in network namespaces ${hosts.ns('g1')} and ${hosts.ns('g2')}; the services on ${hosts.address('root')}
  failover  kill -9 ${pair.gw[holder].child.pid}   # the address is on the other within a second; the killed one restarts
            ip -n ${hosts.ns('g1')} -br addr show dev eth0; ip -n ${hosts.ns('g2')} -br addr show dev eth0
  logs      ${logs}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`shop: ${err.message}\n`);
    process.exit(1);
  });
}
