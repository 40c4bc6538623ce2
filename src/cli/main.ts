import { parseArgs } from 'node:util';
import { CONFIG_SCHEMA } from '../config/schema.js';
import { closest } from '../core/suggest.js';
import { VERSION } from '../version.js';
import { KEEPALIVED_DEFAULTS, runKeepalived } from './keepalived-command.js';
import { WATCHDOG_DEFAULTS } from '../gateway/watchdog.js';
import { DEFAULT_HANDOVER_TIMEOUT_MS } from '../gateway/handover.js';

/**
 * What a command runs is loaded when it runs: `tandem --help`, `--version` or a mistyped command
 * start in a fraction of a gateway's start, which loads the proxy, the registry and their
 * libraries.
 */
const load = {
  gateway: () => import('./gateway-command.js'),
  demo: () => import('./demo-command.js'),
  status: () => import('./status-command.js'),
  watchdog: () => import('./watchdog-command.js'),
};

/**
 * The `tandem` command. Each subcommand is one entry of COMMANDS: its flags (node's own
 * parseArgs reads them), their help, examples, and what it runs. `tandem <command> --help`,
 * "did you mean" for a misspelt command or flag, and the usage on a mistake all come from the
 * table, so they cannot drift from what is parsed.
 */

interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  /** The value's name in the help (string flags). */
  value?: string;
  help: string;
}

type Values = Record<string, string | boolean | undefined>;

interface Command {
  summary: string;
  flags: Record<string, Flag>;
  /** Usage lines after "tandem <name>". */
  usage: string[];
  examples: string[];
  /** Extra help text after the flags. */
  notes?: string;
  /** Positional arguments are refused unless the command takes them. */
  run(values: Values): Promise<number> | number;
}

const HELP_FLAG: Flag = { type: 'boolean', short: 'h', help: 'show this help and exit' };

const COMMANDS: Record<string, Command> = {
  gateway: {
    summary: 'run the gateway, or validate its config',
    usage: ['--config FILE', '--check FILE'],
    flags: {
      config: { type: 'string', short: 'c', value: 'FILE', help: 'run the gateway with this config (YAML or JSON)' },
      check: { type: 'string', value: 'FILE', help: 'validate the config and exit: 0 valid, 2 invalid (every problem with its path)' },
      'track-file': { type: 'string', value: 'FILE', help: 'keepalived\'s track_file: 0 once listening, 1 on SIGTERM (a pair behind a virtual address)' },
      'virtual-address': { type: 'string', value: 'IP', help: 'on SIGTERM, wait until this address left the host before draining' },
      'handover-timeout': { type: 'string', value: 'S', help: `longest wait for the address to leave (default ${DEFAULT_HANDOVER_TIMEOUT_MS / 1000})` },
      'process-name': { type: 'string', value: 'NAME', help: 'the process name keepalived\'s track_process looks for (default with --track-file: tandem-gateway)' },
      'handover-drop-syn': { type: 'boolean', help: 'on SIGTERM, drop new connections to the virtual address (nftables; needs CAP_NET_ADMIN) until the open ones ended, then release it' },
    },
    examples: ['tandem gateway --config gateway.yaml', 'tandem gateway --check gateway.yaml', 'kill -HUP <pid>     # reload the config without dropping requests',
      'tandem gateway --config gateway.yaml --track-file /run/tandem/handover --virtual-address 10.0.0.100'],
    notes: 'Signals: SIGHUP reloads the config (a bad one is refused, the old one keeps serving);\nSIGTERM and SIGINT drain in-flight requests and stop; with --track-file or --virtual-address\nthe address moves to the peer first (docs/deployment.md). Config keys: docs/configuration.md.',
    run: (v) => {
      const file = (v.check ?? v.config) as string | undefined;
      if (!file) return usageError('gateway', '--config FILE is required');
      const timeout = positive(v['handover-timeout'], '--handover-timeout');
      if (typeof timeout === 'string') return usageError('gateway', timeout, false);
      const trackFile = v['track-file'] as string | undefined;
      const address = v['virtual-address'] as string | undefined;
      const dropSyn = v['handover-drop-syn'] === true;
      if (dropSyn && address === undefined) return usageError('gateway', '--handover-drop-syn goes with --virtual-address (the address whose new connections are dropped)', false);
      const handover = trackFile !== undefined || address !== undefined ? { trackFile, address, timeoutMs: timeout === undefined ? DEFAULT_HANDOVER_TIMEOUT_MS : timeout * 1000, dropSyn } : undefined;
      const processName = v['process-name'] as string | undefined;
      if (processName !== undefined && !/^[\w.-]{1,15}$/.test(processName)) return usageError('gateway', `--process-name wants 1–15 letters, digits, '.', '_' or '-', got "${processName}"`, false);
      return load.gateway().then((m) => m.runGateway({ config: file, check: v.check !== undefined, handover, processName }));
    },
  },
  demo: {
    summary: 'the quick start: a gateway and two services of three instances each',
    usage: ['', '--drill [--duration S] [--rate N]'],
    flags: {
      drill: { type: 'boolean', help: 'run the cluster under load with a rolling deploy and a SIGKILL; print what clients saw' },
      duration: { type: 'string', value: 'S', help: 'drill length in seconds (default 30)' },
      rate: { type: 'string', value: 'N', help: 'drill requests per second (default 300)' },
      listen: { type: 'string', value: 'HOST:PORT', help: 'the gateway\'s listener (default 127.0.0.1:8080; port 0 picks a free one)' },
      admin: { type: 'string', value: 'HOST:PORT', help: 'the admin listener (default 127.0.0.1:9901)' },
    },
    examples: ['tandem demo', 'tandem demo --drill --duration 10', 'tandem demo --listen 127.0.0.1:0 --admin 127.0.0.1:0'],
    notes: 'catalog ×3 and orders ×3 are child processes using tandem/node; orders calls catalog\nthrough tandem/client. Ctrl-C drains every instance, then stops the gateway.',
    run: (v) => {
      const duration = positive(v.duration, '--duration');
      const rate = positive(v.rate, '--rate');
      if (typeof duration === 'string' || typeof rate === 'string') return usageError('demo', (typeof duration === 'string' ? duration : rate) as string, false);
      return load.demo().then((m) => m.runDemo({ drill: v.drill === true, duration, rate, listen: v.listen as string | undefined, admin: v.admin as string | undefined }));
    },
  },
  status: {
    summary: 'the cluster as the dashboard shows it, in the terminal',
    usage: ['[--admin URL] [--once] [--interval S]'],
    flags: {
      admin: { type: 'string', short: 'a', value: 'URL', help: 'the gateway\'s admin listener (default http://127.0.0.1:9901)' },
      once: { type: 'boolean', help: 'print one picture and exit (0, or 1 when the gateway cannot be read)' },
      interval: { type: 'string', value: 'S', help: 'seconds between refreshes (default 1)' },
    },
    examples: ['tandem status', 'tandem status --admin http://10.0.0.5:9901 --once', 'TANDEM_TOKEN=… tandem status --admin http://gw2:9901'],
    notes: 'The admin listener wants the gateway\'s secret: on the gateway\'s host it is found by\nitself; elsewhere set TANDEM_TOKEN or TANDEM_TOKEN_FILE (docs/security.md).',
    run: (v) => {
      const interval = positive(v.interval, '--interval');
      if (typeof interval === 'string') return usageError('status', interval, false);
      return load.status().then((m) => m.runStatus({ admin: (v.admin as string | undefined) ?? 'http://127.0.0.1:9901', once: v.once === true, intervalMs: (interval ?? 1) * 1000 }));
    },
  },
  keepalived: {
    summary: 'print the keepalived.conf that puts this gateway behind a virtual address',
    usage: ['--interface IFACE --address VIP/PREFIX --priority N [--config FILE] [--peer IP,…]'],
    flags: {
      interface: { type: 'string', short: 'i', value: 'IFACE', help: 'the interface the address goes on (eth0)' },
      address: { type: 'string', short: 'a', value: 'VIP/PREFIX', help: 'the virtual address and its prefix length (10.0.0.100/24)' },
      priority: { type: 'string', short: 'p', value: 'N', help: '1–254; the higher takes the address first; high values take over sooner' },
      config: { type: 'string', short: 'c', value: 'FILE', help: 'the gateway\'s config: its admin listener is checked (/readyz)' },
      admin: { type: 'string', value: 'HOST:PORT', help: 'the admin listener without --config (default 127.0.0.1:9901)' },
      'router-id': { type: 'string', value: 'N', help: 'virtual_router_id, the same on both gateways, unique on the link (default 51)' },
      peer: { type: 'string', value: 'IP,…', help: 'unicast adverts to these peers (where multicast does not pass)' },
      source: { type: 'string', value: 'IP', help: 'this host\'s address for unicast adverts' },
      'track-file': { type: 'string', value: 'FILE', help: 'the handover file, as given to tandem gateway (default /run/tandem/handover)' },
      'watchdog-file': { type: 'string', value: 'FILE', help: `the file tandem watchdog writes (default ${KEEPALIVED_DEFAULTS.watchdogFile})` },
      'advert-int': { type: 'string', value: 'S', help: 'seconds between adverts (default 0.2; VRRPv3 takes 0.01 steps)' },
      'track-process': { type: 'boolean', help: 'also track the gateway process (needs kernel process events; not in every VM)' },
      'handover-drop-syn': { type: 'boolean', help: 'the gateway runs with --handover-drop-syn: taking the address removes a drop rule left behind' },
      'process-name': { type: 'string', value: 'NAME', help: 'with --track-process: the gateway\'s --process-name (default tandem-gateway)' },
    },
    examples: ['tandem keepalived -i eth0 -a 10.0.0.100/24 -p 250 --config /etc/tandem/gateway.yaml > /etc/keepalived/keepalived.conf',
      'tandem keepalived -i eth0 -a 10.0.0.100/24 -p 240 --peer 10.0.0.11 --source 10.0.0.12'],
    notes: 'Run the gateway with --track-file and --virtual-address so that SIGTERM moves the address\nbefore the drain. Why each line is there, and the failover times: docs/deployment.md.',
    run: (v) => runKeepalived({
      interface: v.interface as string | undefined, address: v.address as string | undefined, priority: v.priority as string | undefined,
      config: v.config as string | undefined, admin: v.admin as string | undefined, routerId: v['router-id'] as string | undefined,
      peers: typeof v.peer === 'string' ? v.peer.split(',').map((p) => p.trim()).filter(Boolean) : [], source: v.source as string | undefined,
      trackFile: v['track-file'] as string | undefined, watchdogFile: v['watchdog-file'] as string | undefined, advertInt: v['advert-int'] as string | undefined,
      processName: v['process-name'] as string | undefined, trackProcess: v['track-process'] === true, dropSyn: v['handover-drop-syn'] === true,
    }),
  },
  watchdog: {
    summary: 'beside a gateway of a pair: move the address within half a second of a freeze',
    usage: ['--config FILE --track-file FILE [--interval MS] [--dead-after MS] [--rise N]'],
    flags: {
      config: { type: 'string', short: 'c', value: 'FILE', help: 'the gateway\'s config: its admin listener is asked (/readyz)' },
      admin: { type: 'string', value: 'HOST:PORT', help: 'the admin listener without --config (default 127.0.0.1:9901)' },
      'track-file': { type: 'string', value: 'FILE', help: `the file keepalived tracks (tandem keepalived --watchdog-file; default ${KEEPALIVED_DEFAULTS.watchdogFile})` },
      interval: { type: 'string', value: 'MS', help: `milliseconds between probes (default ${WATCHDOG_DEFAULTS.intervalMs})` },
      'dead-after': { type: 'string', value: 'MS', help: `no answer for this long: 1 in the file (default ${WATCHDOG_DEFAULTS.deadAfterMs})` },
      rise: { type: 'string', value: 'N', help: `answers in a row before 0 again (default ${WATCHDOG_DEFAULTS.rise})` },
    },
    examples: ['tandem watchdog --config /etc/tandem/gateway.yaml --track-file /run/tandem/watchdog'],
    notes: 'Writes 1 to the file when /readyz has not answered for --dead-after (frozen), refuses the\nconnection (gone) or answers 503 (not ready); 0 after --rise answers of 200. keepalived\nreads the file by inotify (docs/deployment.md#the-watchdog).',
    run: (v) => {
      const interval = positive(v.interval, '--interval');
      const deadAfter = positive(v['dead-after'], '--dead-after');
      const rise = positive(v.rise, '--rise');
      for (const bad of [interval, deadAfter, rise]) if (typeof bad === 'string') return usageError('watchdog', bad, false);
      const intervalMs = (interval as number | undefined) ?? WATCHDOG_DEFAULTS.intervalMs;
      const deadAfterMs = (deadAfter as number | undefined) ?? WATCHDOG_DEFAULTS.deadAfterMs;
      if (deadAfterMs <= intervalMs) return usageError('watchdog', `--dead-after (${deadAfterMs}) must be longer than --interval (${intervalMs})`, false);
      if (rise !== undefined && !Number.isInteger(rise)) return usageError('watchdog', `--rise wants a whole number, got "${String(v.rise)}"`, false);
      return load.watchdog().then((m) => m.runWatchdog({ config: v.config as string | undefined, admin: v.admin as string | undefined, trackFile: (v['track-file'] as string | undefined) ?? KEEPALIVED_DEFAULTS.watchdogFile,
        intervalMs, deadAfterMs, rise: (rise as number | undefined) ?? WATCHDOG_DEFAULTS.rise }));
    },
  },
  schema: {
    summary: 'print the config file\'s JSON Schema',
    usage: [''],
    flags: {},
    examples: ['tandem schema > tandem.schema.json'],
    run: () => {
      process.stdout.write(`${JSON.stringify(CONFIG_SCHEMA, null, 2)}\n`);
      return 0;
    },
  },
};

const USAGE = `tandem ${VERSION} — high availability for Node.js services

Usage:
  tandem gateway --config FILE     run the gateway (YAML or JSON config)
  tandem gateway --check FILE      validate a config and exit (0 valid, 2 invalid)
  tandem demo [--drill]            ${COMMANDS.demo!.summary}
  tandem status [--admin URL]      ${COMMANDS.status!.summary}
  tandem keepalived -i IFACE -a VIP/PREFIX -p N
                                   ${COMMANDS.keepalived!.summary}
  tandem watchdog --config FILE    ${COMMANDS.watchdog!.summary}
  tandem schema                    ${COMMANDS.schema!.summary}
  tandem <command> --help          a command's flags and examples
  tandem --version
`;

/** `tandem <name> --help`. */
function commandHelp(name: string): string {
  const c = COMMANDS[name]!;
  const flags = Object.entries(c.flags).map(([flag, f]) => [`${f.short ? `-${f.short}, ` : '    '}--${flag}${f.value ? ` ${f.value}` : ''}`, f.help] as const);
  flags.push(['-h, --help', HELP_FLAG.help]);
  const width = Math.max(...flags.map(([l]) => l.length));
  return [
    `tandem ${name} — ${c.summary}`,
    '',
    'Usage:',
    ...c.usage.map((u) => `  tandem ${name}${u ? ` ${u}` : ''}`),
    '',
    'Flags:',
    ...flags.map(([l, h]) => `  ${l.padEnd(width)}  ${h}`),
    '',
    'Examples:',
    ...c.examples.map((e) => `  ${e}`),
    ...(c.notes ? ['', c.notes] : []),
    '',
  ].join('\n');
}

function usageError(name: string, message: string, withUsage = true): number {
  process.stderr.write(`tandem ${name}: ${message}\n${withUsage ? `\n${commandHelp(name)}` : ''}`);
  return 2;
}

/** Returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  switch (name) {
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      if (name === 'help' && rest[0] !== undefined && rest[0] in COMMANDS) {
        process.stdout.write(commandHelp(rest[0]));
        return 0;
      }
      process.stdout.write(USAGE);
      return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    const hint = closest(name, Object.keys(COMMANDS));
    process.stderr.write(`tandem: unknown command "${name}"${hint ? ` — did you mean "${hint}"?` : ''}\n\n${USAGE}`);
    return 2;
  }
  let values: Values;
  try {
    const options = Object.fromEntries(Object.entries({ ...command.flags, help: HELP_FLAG }).map(([k, f]) => [k, { type: f.type, ...(f.short ? { short: f.short } : {}) }]));
    ({ values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false }));
  } catch (err) {
    return usageError(name, withHint((err as Error).message, Object.keys(command.flags)));
  }
  if (values.help === true) {
    process.stdout.write(commandHelp(name));
    return 0;
  }
  return command.run(values);
}

/** parseArgs's message for an unknown flag, with the closest known one. */
function withHint(message: string, flags: string[]): string {
  const unknown = /Unknown option '--?([^']+)'/.exec(message)?.[1];
  if (unknown === undefined) return message;
  const hint = closest(unknown, flags);
  return hint ? `Unknown option '--${unknown}' — did you mean --${hint}?` : message;
}

/** A positive number from a flag's text; undefined when absent, a message when not a positive number. */
function positive(text: string | boolean | undefined, flag: string): number | undefined | string {
  if (text === undefined || typeof text === 'boolean') return undefined;
  const n = Number(text);
  return Number.isFinite(n) && n > 0 ? n : `${flag} must be a positive number, got "${text}"`;
}
