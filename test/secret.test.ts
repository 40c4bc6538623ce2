// The admin secret's storage and lookup (core/secret.ts) and the addresses no instance may have
// (discovery/address-policy.ts).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync as makeTemp, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureLocalToken, localTokenPath, readLocalToken, runtimeDir, tokenFor } from '../src/core/secret.js';
import { forbiddenAddress } from '../src/discovery/address-policy.js';
import { ROOT } from './helpers/gateway.js';

/** Every temp dir this file makes, removed once its tests ran. */
const made: string[] = [];
after(() => { for (const dir of made) rmSync(dir, { recursive: true, force: true }); });
function mkdtempSync(prefix: string): string {
  const dir = makeTemp(prefix);
  made.push(dir);
  return dir;
}

const fresh = () => ({ TMPDIR: mkdtempSync(join(tmpdir(), 'tandem-secret-')) });

test('the generated secret: a 0600 file in a 0700 directory of this user; made once, then read', () => {
  const env = fresh();
  assert.equal(readLocalToken(env), undefined);
  const first = ensureLocalToken(env);
  assert.equal(first.file, localTokenPath(env));
  assert.match(first.token, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
  assert.equal(statSync(first.file).mode & 0o777, 0o600);
  assert.equal(statSync(runtimeDir(env)).mode & 0o777, 0o700);
  assert.equal(ensureLocalToken(env).token, first.token);
  assert.equal(readLocalToken(env), first.token);
  assert.deepEqual(readdirSync(runtimeDir(env)), ['admin.token'], 'no temporary file left behind');
  // $XDG_RUNTIME_DIR wins over the temp directory.
  const xdg = mkdtempSync(join(tmpdir(), 'tandem-xdg-'));
  assert.equal(runtimeDir({ ...env, XDG_RUNTIME_DIR: xdg }), join(xdg, 'tandem'));
});

test('gateways starting at the same moment end up with one secret (eight processes race for the file)', async () => {
  const env = fresh();
  const script = `import { ensureLocalToken } from ${JSON.stringify(join(ROOT, 'dist/src/core/secret.js'))}; process.stdout.write(ensureLocalToken(process.env).token);`;
  const tokens = await Promise.all(Array.from({ length: 8 }, () => new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, XDG_RUNTIME_DIR: '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
  })));
  assert.equal(new Set(tokens).size, 1, tokens.join(' '));
  assert.equal(tokens[0], readLocalToken(env));
});

test('a runtime directory somebody else could have prepared is refused, not used', () => {
  // Open to other users.
  const open = fresh();
  mkdirSync(runtimeDir(open), { mode: 0o777 });
  chmodSync(runtimeDir(open), 0o777);
  assert.throws(() => ensureLocalToken(open), /can be entered by other users \(mode 777\)/);
  // A link to another directory.
  const linked = fresh();
  symlinkSync(mkdtempSync(join(tmpdir(), 'tandem-elsewhere-')), runtimeDir(linked));
  assert.throws(() => ensureLocalToken(linked), /is not a directory \(a link\?\)/);
  // Owned by another user (only root can make one to test with).
  if (process.getuid?.() === 0) {
    const foreign = fresh();
    mkdirSync(runtimeDir(foreign), { mode: 0o700 });
    chownSync(runtimeDir(foreign), 65534, 65534);
    assert.throws(() => ensureLocalToken(foreign), /belongs to uid 65534, not to this user/);
  }
});

test('tokenFor: TANDEM_TOKEN, then TANDEM_TOKEN_FILE, then the local secret — for a gateway on this host only', () => {
  const env = fresh();
  const { token } = ensureLocalToken(env);
  const local = new URL('http://127.0.0.1:9901');
  assert.equal(tokenFor(local, env), token);
  assert.equal(tokenFor(new URL('http://localhost:9901'), env), token);
  assert.equal(tokenFor(new URL('http://[::1]:9901'), env), token);
  assert.equal(tokenFor(new URL('http://10.0.0.5:9901'), env), undefined, 'the local secret never travels to another host');
  assert.equal(tokenFor(new URL('http://gw.example:9901'), env), undefined);
  const file = join(env.TMPDIR, 'mounted');
  writeFileSync(file, 'from-a-mounted-file-0123456789\n');
  assert.equal(tokenFor(new URL('http://10.0.0.5:9901'), { ...env, TANDEM_TOKEN_FILE: file }), 'from-a-mounted-file-0123456789');
  assert.equal(tokenFor(local, { ...env, TANDEM_TOKEN_FILE: file, TANDEM_TOKEN: 'from-the-environment-0123' }), 'from-the-environment-0123');
  writeFileSync(file, 'short\n');
  assert.throws(() => tokenFor(local, { ...env, TANDEM_TOKEN_FILE: file }), new RegExp(`the token in ${file} is 5 characters long; at least 16`));
  assert.throws(() => tokenFor(local, { ...env, TANDEM_TOKEN_FILE: join(env.TMPDIR, 'missing') }), /cannot read the token file .*missing: ENOENT/);
});

test('forbiddenAddress: link-local, unspecified, multicast and broadcast in every spelling; ordinary addresses pass', () => {
  const refused: Array<[string, RegExp]> = [
    ['169.254.169.254', /link-local/], ['169.254.0.1', /link-local/], ['::ffff:169.254.169.254', /link-local/],
    ['::ffff:a9fe:a9fe', /link-local/], ['0:0:0:0:0:ffff:a9fe:a9fe', /link-local/], ['fe80::1', /link-local/], ['febf::1', /link-local/],
    ['0.0.0.0', /unspecified/], ['0.1.2.3', /unspecified/], ['::', /unspecified/], ['0:0:0:0:0:0:0:0', /unspecified/],
    ['224.0.0.1', /multicast/], ['239.255.255.250', /multicast/], ['ff02::1', /multicast/], ['::ffff:224.0.0.1', /multicast/],
    ['255.255.255.255', /broadcast/],
  ];
  for (const [ip, why] of refused) assert.match(forbiddenAddress(ip) ?? 'accepted', why, ip);
  for (const ip of ['127.0.0.1', '10.0.0.5', '192.168.1.9', '172.16.0.1', '8.8.8.8', '::1', '2001:db8::1', 'fd00::1', '::ffff:127.0.0.1', 'example.com']) {
    assert.equal(forbiddenAddress(ip), undefined, ip);
  }
});
