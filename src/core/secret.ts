import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TandemError } from './errors.js';

/**
 * The admin listener's secret: who holds it may register, heartbeat, drain and deregister
 * instances and read the cluster state (docs/security.md). The gateway takes it from
 * `registry.token`, `registry.tokenFile`, TANDEM_TOKEN or TANDEM_TOKEN_FILE; with none of them
 * and a loopback admin listener it creates one and keeps it in a file that only the same user
 * on the same host can read, where `tandem/node`, `tandem/client` and `tandem status` find it
 * by themselves (the model: a Kubernetes service-account token mounted as a file, or
 * Jupyter's runtime-directory tokens).
 */

/** The secret itself, for gateways and instances that do not use the local file. */
export const TOKEN_ENV = 'TANDEM_TOKEN';
/** A file holding the secret (a mounted Kubernetes or Docker secret, say). */
export const TOKEN_FILE_ENV = 'TANDEM_TOKEN_FILE';
export const MIN_TOKEN_LENGTH = 16;
const LOCAL_TOKEN_NAME = 'admin.token';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * The per-user directory for the generated secret: $XDG_RUNTIME_DIR/tandem (systemd makes
 * $XDG_RUNTIME_DIR 0700 for its user), else <tmpdir>/tandem-<uid>.
 */
export function runtimeDir(env: Env = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg) return join(xdg, 'tandem');
  return join(env.TMPDIR || tmpdir(), `tandem-${process.getuid?.() ?? 'user'}`);
}

/** Where the generated secret lives. */
export function localTokenPath(env: Env = process.env): string {
  return join(runtimeDir(env), LOCAL_TOKEN_NAME);
}

/** Why a token is unusable, or undefined when it is fine. */
export function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) return `is ${token.length} characters long; at least ${MIN_TOKEN_LENGTH} are needed`;
  // Printable ASCII only: the secret travels in a header and a cookie.
  if (!/^[\x21-\x7e]+$/.test(token)) return 'must be printable ASCII without white space';
  return undefined;
}

/** Reads a token file (one line; surrounding white space ignored). Throws with the path named. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new TandemError('TANDEM_ERR_TOKEN', `cannot read the token file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const token = text.trim();
  const problem = tokenProblem(token);
  if (problem) throw new TandemError('TANDEM_ERR_TOKEN', `the token in ${path} ${problem}`);
  return token;
}

/**
 * Makes sure `dir` is a directory of this user that nobody else can enter. A directory made
 * beforehand by somebody else (to read or plant a secret) is refused, not used.
 */
function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) throw new TandemError('TANDEM_ERR_TOKEN', `${dir} is not a directory (a link?): remove it so tandem can keep its secret there`);
  if (uid !== undefined && st.uid !== uid) throw new TandemError('TANDEM_ERR_TOKEN', `${dir} belongs to uid ${st.uid}, not to this user (${uid}): remove it, or set TANDEM_TOKEN`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new TandemError('TANDEM_ERR_TOKEN', `${dir} can be entered by other users (mode ${(st.mode & 0o777).toString(8)}): chmod 700 it, or remove it`);
  }
}

/** The generated secret, if a gateway of this user on this host made one. */
export function readLocalToken(env: Env = process.env): string | undefined {
  try {
    return readTokenFile(localTokenPath(env));
  } catch {
    return undefined;
  }
}

/**
 * The generated secret: read when a gateway of this user made it already, else created —
 * written whole to a private file, then linked into place, so a gateway starting at the same
 * moment reads either nothing or the complete token, and both end up with the same one.
 */
export function ensureLocalToken(env: Env = process.env): { token: string; file: string } {
  const dir = runtimeDir(env);
  privateDir(dir);
  const file = join(dir, LOCAL_TOKEN_NAME);
  const existing = readLocalToken(env);
  if (existing !== undefined) return { token: existing, file };
  const token = randomBytes(32).toString('base64url');
  const temp = join(dir, `.${LOCAL_TOKEN_NAME}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, file);
    return { token, file };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { token: readTokenFile(file), file };
  } finally {
    unlinkSync(temp);
  }
}

/** True for the names and addresses that reach only this host. */
export function isLoopbackHost(host: string): boolean {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.startsWith('::ffff:')) h = h.slice(7);
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The secret a client of the admin listener at `url` sends when it was given none: TANDEM_TOKEN,
 * then TANDEM_TOKEN_FILE, then — for a gateway on this host only, so the local secret never
 * travels — the generated one. Read at each call: a gateway started later may have made it.
 */
export function tokenFor(url: URL, env: Env = process.env): string | undefined {
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv) return fromEnv;
  const file = env[TOKEN_FILE_ENV];
  if (file) return readTokenFile(file);
  return isLoopbackHost(url.hostname) ? readLocalToken(env) : undefined;
}

/** Constant-time comparison (of digests, so the lengths match too). */
export function sameSecret(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}
