import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { DEFAULTS } from './defaults.js';
import type { ConfigProblem } from './problems.js';
import type { PemFile, TlsCertificate, TlsConfig, TlsVersion, UpstreamTlsConfig } from './types.js';

type Raw = Record<string, unknown>;

/**
 * A listener's `tls`, its files read and checked now: a file that cannot be read, a key that is
 * not the certificate's, or a certificate that names no host is a config problem with its path,
 * so a bad file refuses the start or the reload instead of failing handshakes later.
 */
export function readTls(raw: Raw, path: string, problems: ConfigProblem[]): TlsConfig | undefined {
  const certificates: TlsCertificate[] = [];
  const first = certificateOf(raw, path, problems);
  if (first) certificates.push(first);
  if (Array.isArray(raw.certificates)) {
    raw.certificates.forEach((c: unknown, i) => {
      const more = isObject(c) ? certificateOf(c, `${path}.certificates[${i}]`, problems) : undefined;
      if (more) certificates.push(more);
    });
  }
  if (certificates.length === 0) return undefined;
  const minVersion = (typeof raw.minVersion === 'string' ? raw.minVersion : DEFAULTS.tls.minVersion) as TlsVersion;
  return { certificates, minVersion };
}

function certificateOf(raw: Raw, path: string, problems: ConfigProblem[]): TlsCertificate | undefined {
  if (typeof raw.cert !== 'string' || typeof raw.key !== 'string') return undefined; // the shape check said so
  const certFile = raw.cert;
  const keyFile = raw.key;
  const cert = readPem(certFile, `${path}.cert`, problems);
  const key = readPem(keyFile, `${path}.key`, problems);
  if (cert === undefined || key === undefined) return undefined;
  const x509 = parse(() => new X509Certificate(cert), `${path}.cert`, `"${certFile}" holds no PEM certificate`, problems);
  const privateKey = parse<KeyObject>(() => createPrivateKey(key), `${path}.key`, `"${keyFile}" holds no PEM private key (an encrypted key is not supported)`, problems);
  if (x509 === undefined || privateKey === undefined) return undefined;
  if (!x509.checkPrivateKey(privateKey)) {
    problems.push({ path: `${path}.key`, message: `"${keyFile}" is not the private key of the certificate in "${certFile}"` });
    return undefined;
  }
  const names = namesOf(x509);
  if (names.length === 0) {
    problems.push({ path: `${path}.cert`, message: `the certificate in "${certFile}" names no host (no DNS or IP entry in subjectAltName, no CN): no client could check it` });
    return undefined;
  }
  return { certFile, keyFile, cert, key, names };
}

/**
 * A service's `tls` (TLS to its https:// endpoints), its files read and checked now, as a
 * listener's are: a CA file without a certificate, a key that is not the client certificate's,
 * or one of the two without the other refuses the start or the reload.
 */
export function readUpstreamTls(raw: Raw | undefined, path: string, problems: ConfigProblem[]): UpstreamTlsConfig {
  const r = raw ?? {};
  const file = (key: 'ca' | 'cert' | 'key'): PemFile | undefined => {
    const name = r[key];
    if (typeof name !== 'string') return undefined; // unset, or the shape check said so
    const pem = readPem(name, `${path}.${key}`, problems);
    return pem === undefined ? undefined : { file: name, pem };
  };
  const ca = file('ca');
  const cert = file('cert');
  const key = file('key');
  if (ca !== undefined) parse(() => new X509Certificate(ca.pem), `${path}.ca`, `"${ca.file}" holds no PEM certificate`, problems);
  if ((r.cert === undefined) !== (r.key === undefined)) {
    problems.push({ path: `${path}.${r.cert === undefined ? 'cert' : 'key'}`, message: 'a client certificate needs its key: give tls.cert and tls.key together' });
  } else if (cert !== undefined && key !== undefined) {
    clientPair(cert, key, path, problems);
  }
  const servername = typeof r.servername === 'string' ? r.servername.toLowerCase() : undefined;
  if (servername !== undefined && (isIP(servername) !== 0 || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(servername))) {
    problems.push({ path: `${path}.servername`, message: `"${r.servername as string}" is not a host name — SNI never carries an IP address; leave servername out to check an IP endpoint's certificate against its IP` });
  }
  const insecureSkipVerify = r.insecureSkipVerify === true;
  if (insecureSkipVerify && r.ca !== undefined) problems.push({ path: `${path}.ca`, message: 'has no effect with insecureSkipVerify: true (no certificate is checked)' });
  return { ca, cert: key === undefined ? undefined : cert, key: cert === undefined ? undefined : key, servername, insecureSkipVerify };
}

function clientPair(cert: PemFile, key: PemFile, path: string, problems: ConfigProblem[]): void {
  const x509 = parse(() => new X509Certificate(cert.pem), `${path}.cert`, `"${cert.file}" holds no PEM certificate`, problems);
  const privateKey = parse<KeyObject>(() => createPrivateKey(key.pem), `${path}.key`, `"${key.file}" holds no PEM private key (an encrypted key is not supported)`, problems);
  if (x509 !== undefined && privateKey !== undefined && !x509.checkPrivateKey(privateKey)) {
    problems.push({ path: `${path}.key`, message: `"${key.file}" is not the private key of the certificate in "${cert.file}"` });
  }
}

function readPem(file: string, path: string, problems: ConfigProblem[]): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    problems.push({ path, message: `cannot read "${file}": ${code}` });
    return undefined;
  }
}

function parse<T>(make: () => T, path: string, message: string, problems: ConfigProblem[]): T | undefined {
  try {
    return make();
  } catch {
    problems.push({ path, message });
    return undefined;
  }
}

/**
 * The names a client may reach the certificate by: subjectAltName's DNS and IP entries; the CN
 * only when there is no subjectAltName (RFC 6125 6.4.4: clients ignore the CN otherwise).
 */
export function namesOf(x509: X509Certificate): string[] {
  const names: string[] = [];
  const san = x509.subjectAltName;
  if (san !== undefined) {
    for (const entry of san.split(/,\s*/)) {
      if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase());
      else if (entry.startsWith('IP Address:')) names.push(entry.slice(11).toLowerCase());
    }
    return names;
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x509.subject)?.[1]?.trim().toLowerCase();
  if (cn !== undefined && (isIP(cn) !== 0 || /^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(cn))) names.push(cn);
  return names;
}

function isObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
