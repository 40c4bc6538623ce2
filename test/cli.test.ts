// The `tandem` command as users run it: a real child process, real ports on 127.0.0.1.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { Ajv } from 'ajv';
import { MINIMAL_YAML, ROOT, runCli, startGateway, tempDir } from './helpers/gateway.js';


const tmp = tempDir('tandem-cli-test-');
const held: Server[] = [];
after(async () => {
  await Promise.all(held.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  rmSync(tmp, { recursive: true, force: true });
});

let fileCount = 0;
function file(text: string, ext = 'yaml'): string {
  const path = join(tmp, `config-${++fileCount}.${ext}`);
  writeFileSync(path, text);
  return path;
}

/** Binds 127.0.0.1:port (0 = any free port) and keeps it until the test file ends. */
async function hold(port = 0): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  held.push(server);
  return (server.address() as AddressInfo).port;
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** True when the test can bind the port itself (then releases it). */
async function canBind(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The error code of connecting to the port ('connected' when something listens). */
function connectResult(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

function lines(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter(Boolean);
}

describe('tandem gateway --check', () => {
  test('the minimal file: exit 0 and one "ok" line', async () => {
    const path = file(MINIMAL_YAML);
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${path}: ok (1 service, 1 route)\n`);
    assert.equal(r.stderr, '');
  });

  test('examples/gateway.yaml checks ok', async () => {
    const r = await runCli(['gateway', '--check', join(ROOT, 'examples', 'gateway.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok \(1 service, 1 route\)\n$/);
  });

  test('binds nothing: checks ok while the test itself holds both ports', async () => {
    const [listen, admin] = [await hold(), await hold()];
    const path = file(MINIMAL_YAML.replace('127.0.0.1:8080', `127.0.0.1:${listen}`).replace('127.0.0.1:9901', `127.0.0.1:${admin}`));
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok /);
  });

  test('a bad file: exit 2, every problem with its path and hint on stderr, nothing on stdout', async () => {
    const path = file(`listen: 127.0.0.1
admin: 127.0.0.1:9901
services:
  shop:
    endpoints: [127.0.0.1:7001, 127.0.0.1:70000]
    timout: 5s
    balancer: round-robbin
routes:
  - prefix: /
    service: shpo
`);
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    const expected = [
      'listen: "127.0.0.1" is not a valid address: expected "host:port", e.g. 127.0.0.1:8080 (line 1, column 1)',
      'services.shop.endpoints[1]: "127.0.0.1:70000" is not a valid address: port 70000 is out of range (1-65535) (line 5, column 33)',
      'services.shop.timout: unknown key — did you mean timeout? (line 6, column 5)',
      'services.shop.balancer: "round-robbin" is not one of peak-ewma, round-robin, weighted-round-robin, least-request, consistent-hash — did you mean round-robin? (line 7, column 5)',
      'routes[0].service: unknown service "shpo" — did you mean shop? (line 10, column 5)',
    ];
    const got = lines(r.stderr);
    assert.equal(got[0], `tandem: 5 config problems in ${path}:`);
    assert.deepEqual(got.slice(1).sort(), [...expected].sort());
  });

  test('invalid YAML: exit 2 with line and column', async () => {
    const path = file('listen: 127.0.0.1:8080\nservices:\n  shop:\n    endpoints: [127.0.0.1:7001\nroutes: []\n');
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\n {2}line 5, column 1: not valid YAML: /);
  });

  test('invalid JSON: exit 2 with line and column', async () => {
    const path = file('{\n  "listen": "127.0.0.1:8080",\n}\n', 'json');
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /\n {2}line 3, column 1: not valid JSON: /);
  });

  test('a missing file: exit 2 naming it', async () => {
    const path = join(tmp, 'nope.yaml');
    const r = await runCli(['gateway', '--check', path]);
    assert.equal(r.code, 2);
    assert.ok(r.stderr.includes(`in ${path}:`), r.stderr);
    assert.match(r.stderr, /cannot read the file: no such file/);
  });
});

describe('tandem gateway --config with a bad config', () => {
  test('exit 2, the problems on stderr, and no port is bound', async () => {
    const [listen, admin] = [await freePort(), await freePort()];
    const path = file(`listen: 127.0.0.1:${listen}
admin: 127.0.0.1:${admin}
services:
  shop:
    endpoint: [127.0.0.1:7001]
routes:
  - prefix: /
    service: shop
`);
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(lines(r.stderr).some((l) => /^services\.shop\.endpoint: unknown key — did you mean endpoints\? \(line 5, column 5\)$/.test(l)), r.stderr);
    assert.doesNotMatch(r.stdout, /listening/);
    assert.equal(await connectResult(listen), 'ECONNREFUSED');
    assert.equal(await connectResult(admin), 'ECONNREFUSED');
    assert.ok(await canBind(listen), `listen port ${listen} should be free`);
    assert.ok(await canBind(admin), `admin port ${admin} should be free`);
  });

  test('validation happens before any bind: exit 2 (not a bind failure) while the test holds both ports', async () => {
    const [listen, admin] = [await hold(), await hold()];
    const path = file(JSON.stringify({
      listen: `127.0.0.1:${listen}`, admin: `127.0.0.1:${admin}`,
      services: { shop: { endpoints: ['127.0.0.1:7001'], timeout: '5 sec' } },
      routes: [{ prefix: '/', service: 'shop' }],
    }), 'json');
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stderr, /cannot bind|EADDRINUSE/);
    assert.ok(lines(r.stderr).some((l) => l.startsWith('services.shop.timeout: "5 sec" is not a duration — write e.g. 500ms, 2s, 1m or a number of milliseconds (line ')), r.stderr);
  });

  test('listen and admin on one port: exit 2', async () => {
    const port = await freePort();
    const path = file(MINIMAL_YAML.replace('127.0.0.1:8080', `127.0.0.1:${port}`).replace('127.0.0.1:9901', `0.0.0.0:${port}`));
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 2, r.stderr);
    assert.ok(lines(r.stderr).includes(`admin: port ${port} is also the listen port — two listeners cannot share a port (line 2, column 1)`), r.stderr);
  });

  test('headersTimeout longer than requestTimeout: exit 2 with the path, not a crash at bind', async () => {
    const path = file(`${MINIMAL_YAML.replace('127.0.0.1:8080', '127.0.0.1:0').replace('127.0.0.1:9901', '127.0.0.1:0')}limits:\n  headersTimeout: 30s\n  requestTimeout: 20s\n`);
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /\n {2}limits\.headersTimeout: 30s is longer than limits\.requestTimeout \(20s\)/);
  });
});

describe('tandem gateway --config: bind failures', () => {
  test('listen port in use: exit 1 naming the address, and the admin port is released', async () => {
    const listen = await hold();
    const admin = await freePort();
    const path = file(MINIMAL_YAML.replace('127.0.0.1:8080', `127.0.0.1:${listen}`).replace('127.0.0.1:9901', `127.0.0.1:${admin}`));
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`listen: cannot bind 127\\.0\\.0\\.1:${listen}: EADDRINUSE \\(address already in use`));
    assert.ok(await canBind(admin), `admin port ${admin} should be free again`);
  });

  test('admin port in use: exit 1 naming the admin address; the listen port stays free', async () => {
    const admin = await hold();
    const listen = await freePort();
    const path = file(MINIMAL_YAML.replace('127.0.0.1:8080', `127.0.0.1:${listen}`).replace('127.0.0.1:9901', `127.0.0.1:${admin}`));
    const r = await runCli(['gateway', '--config', path]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`admin: cannot bind 127\\.0\\.0\\.1:${admin}: EADDRINUSE`));
    assert.ok(await canBind(listen), `listen port ${listen} should be free`);
  });
});

describe('tandem gateway --config: running', () => {
  test('a good config runs until SIGTERM, then exits 0; SIGINT too', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const gw = await startGateway({ services: { shop: { endpoints: ['127.0.0.1:9'] } }, routes: [{ prefix: '/', service: 'shop' }] }, { file: join(tmp, `running-${signal}.json`) });
      const res = await fetch(`${gw.adminUrl}/healthz`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.equal(await gw.stop(signal), 0, gw.stderr());
    }
  });
});

describe('other commands', () => {
  test('tandem schema prints valid JSON: the JSON Schema the config is checked against', async () => {
    const r = await runCli(['schema']);
    assert.equal(r.code, 0, r.stderr);
    const schema = JSON.parse(r.stdout) as { $schema: string; properties: Record<string, unknown>; required: string[] };
    assert.match(schema.$schema, /json-schema\.org/);
    assert.deepEqual(schema.required, ['listen', 'services', 'routes']);
    for (const key of ['listen', 'admin', 'services', 'routes', 'limits', 'log', 'trustedProxies', 'drainTimeout']) {
      assert.ok(key in schema.properties, key);
    }
    // an editor using it accepts the minimal file and flags a misspelt key
    const ajv = new Ajv({ strict: false, validateFormats: false });
    const check = ajv.compile(schema);
    const good = { listen: '127.0.0.1:8080', admin: '127.0.0.1:9901', services: { shop: { endpoints: ['127.0.0.1:7001'] } }, routes: [{ prefix: '/', service: 'shop' }] };
    assert.equal(check(good), true, JSON.stringify(check.errors));
    assert.equal(check({ ...good, services: { shop: { endpoints: ['127.0.0.1:7001'], timout: '1s' } } }), false);
  });

  test('tandem --version prints the package.json version', async () => {
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${version}\n`);
  });

  test('tandem --help and no arguments print usage, exit 0', async () => {
    for (const args of [['--help'], []]) {
      const r = await runCli(args);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /Usage:\n {2}tandem gateway --config FILE/);
    }
  });

  test('an unknown command: exit 2 with usage on stderr, and the closest command', async () => {
    const r = await runCli(['gatewya']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tandem: unknown command "gatewya" — did you mean "gateway"\?\n/);
    assert.match(r.stderr, /Usage:/);
    for (const [typo, meant] of [['gatway', 'gateway'], ['staus', 'status'], ['dmeo', 'demo'], ['schmea', 'schema']]) {
      assert.match((await runCli([typo!])).stderr, new RegExp(`did you mean "${meant}"\\?`), typo);
    }
    assert.doesNotMatch((await runCli(['frobnicate'])).stderr, /did you mean/);
  });

  test('tandem <command> --help: exit 0, every flag with its help, and examples', async () => {
    const flags: Record<string, string[]> = {
      gateway: ['--config FILE', '--check FILE'],
      demo: ['--drill', '--duration S', '--rate N', '--listen HOST:PORT', '--admin HOST:PORT'],
      status: ['--admin URL', '--once', '--interval S'],
      schema: [],
    };
    for (const [command, expected] of Object.entries(flags)) {
      for (const args of [[command, '--help'], [command, '-h'], ['help', command]]) {
        const r = await runCli(args);
        assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
        assert.equal(r.stderr, '');
        assert.match(r.stdout, new RegExp(`^tandem ${command} — `), args.join(' '));
        for (const flag of [...expected, '--help']) assert.ok(r.stdout.includes(flag), `${args.join(' ')} lists ${flag}`);
        assert.match(r.stdout, /\nExamples:\n {2}tandem /, args.join(' '));
      }
    }
  });

  test('a misspelt flag: exit 2, the closest flag, and the command\'s help', async () => {
    const cases: Array<[string[], string]> = [
      [['gateway', '--confg', 'x.yaml'], '--config'],
      [['gateway', '--chek', 'x.yaml'], '--check'],
      [['demo', '--dril'], '--drill'],
      [['status', '--admn', 'x'], '--admin'],
      [['status', '--onec'], '--once'],
    ];
    for (const [args, meant] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.ok(r.stderr.includes(`did you mean ${meant}?`), `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /Flags:/);
    }
  });

  test('gateway without --config, with a flag missing its value, an unknown flag or a stray argument: exit 2 with usage', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['gateway'], /--config FILE is required/],
      [['gateway', '--config'], /--config/],
      [['gateway', '--check'], /--check/],
      [['gateway', '--confg', 'x.yaml'], /--confg/],
      [['gateway', 'x.yaml'], /x\.yaml/],
    ];
    for (const [args, reason] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^tandem gateway: /, args.join(' '));
      assert.match(r.stderr, reason, args.join(' '));
      assert.match(r.stderr, /Usage:/, args.join(' '));
    }
  });
});
