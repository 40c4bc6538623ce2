import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ServerPki {
  dir: string;
  /** The throwaway CA's certificate (PEM text), for clients. */
  ca: string;
  /**
   * Issues `name`.pem / `name`.key signed by the CA; `ext` is the openssl extension text
   * (subjectAltName=…), `usage` the extended key usage (default serverAuth).
   */
  issue(name: string, subject: string, ext: string, usage?: string): { cert: string; key: string };
  /** A key that belongs to no certificate. */
  strayKey(): string;
  remove(): void;
}

/** A throwaway CA made with `openssl` in a temp dir (EC P-256 keys: quick to make). */
export function makeServerPki(): ServerPki {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-tls-'));
  const f = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const key = (name: string) => ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(name));
  key('ca.key');
  ssl('req', '-x509', '-new', '-key', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=tandem tls test CA');
  let serial = 0;
  return {
    dir,
    ca: readFileSync(f('ca.pem'), 'utf8'),
    issue(name, subject, ext, usage = 'serverAuth') {
      key(`${name}.key`);
      ssl('req', '-new', '-key', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', subject);
      writeFileSync(f(`${name}.ext`), `${ext}\nextendedKeyUsage=${usage}\n`);
      ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-set_serial', String(++serial + 1000),
        '-out', f(`${name}.pem`), '-days', '1', '-extfile', f(`${name}.ext`));
      return { cert: f(`${name}.pem`), key: f(`${name}.key`) };
    },
    strayKey() {
      key('stray.key');
      return f('stray.key');
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
