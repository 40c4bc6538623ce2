import { formatEndpoint, parseEndpointAddress } from '../core/address.js';
import { TandemError } from '../core/errors.js';
import { closest } from '../core/suggest.js';
import { forbiddenAddress } from './address-policy.js';
import { INSTANCE_STATES, type Instance, type InstanceState } from './types.js';

/** Limits a registry puts on what one registration may carry. */
export interface RegistrationLimits {
  /** Bytes of the metadata's JSON. */
  maxMetadataSize: number;
  minTtl: number;
  maxTtl: number;
}

const FIELDS = ['service', 'id', 'address', 'zone', 'weight', 'metadata', 'state', 'ttl', 'retryKey'] as const;
const SERVICE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/;
const ZONE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const RETRY_KEY_RE = /^[A-Za-z0-9_-]{16,128}$/;

export function invalid(path: string, message: string): TandemError {
  return new TandemError('TANDEM_ERR_REGISTRY_INVALID', path ? `${path}: ${message}` : message, { status: 400 });
}

/** A registration checked field by field; throws TANDEM_ERR_REGISTRY_INVALID (400) or _LIMIT (413) naming the field. */
export function checkRegistration(raw: unknown, limits: RegistrationLimits): { instance: Instance; ttl: number | undefined; retryKey: string | undefined } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw invalid('', 'expected a JSON object { service, id, address, … }');
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      const hint = closest(key, FIELDS);
      throw invalid(key, `unknown field${hint ? ` — did you mean ${hint}?` : ` (known: ${FIELDS.join(', ')})`}`);
    }
  }
  const service = text(r.service, 'service', SERVICE_RE, 'letters, digits, "_", "." and "-", at most 128');
  const id = text(r.id, 'id', ID_RE, 'letters, digits, "_", ".", ":", "@" and "-", at most 128');
  if (typeof r.address !== 'string') throw invalid('address', 'required: "host:port" (or "https://host:port") where the instance takes requests');
  const hp = parseEndpointAddress(r.address);
  if (typeof hp === 'string') throw invalid('address', `"${r.address.slice(0, 100)}" is not a valid address: ${hp}`);
  const forbidden = forbiddenAddress(hp.host);
  if (forbidden !== undefined) throw invalid('address', forbidden);
  const zone = r.zone === undefined ? undefined : text(r.zone, 'zone', ZONE_RE, 'letters, digits, "_", "." and "-", at most 64');
  let weight = 1;
  if (r.weight !== undefined) {
    if (typeof r.weight !== 'number' || !Number.isInteger(r.weight) || r.weight < 1 || r.weight > 1000) throw invalid('weight', 'must be an integer from 1 to 1000');
    weight = r.weight;
  }
  const metadata = checkMetadata(r.metadata, limits.maxMetadataSize);
  let state: InstanceState = 'ready';
  if (r.state !== undefined) {
    if (!INSTANCE_STATES.includes(r.state as InstanceState)) throw invalid('state', `must be one of ${INSTANCE_STATES.join(', ')}`);
    state = r.state as InstanceState;
  }
  let ttl: number | undefined;
  if (r.ttl !== undefined) {
    if (typeof r.ttl !== 'number' || !Number.isInteger(r.ttl) || r.ttl < limits.minTtl || r.ttl > limits.maxTtl) {
      throw invalid('ttl', `must be an integer number of milliseconds from ${limits.minTtl} to ${limits.maxTtl}`);
    }
    ttl = r.ttl;
  }
  const retryKey = r.retryKey === undefined ? undefined : text(r.retryKey, 'retryKey', RETRY_KEY_RE, '16 to 128 letters, digits, "_" and "-"');
  // https:// stays in the address (the endpoint's id everywhere); `tls` only when set, so a
  // plaintext instance reads as it always did.
  const address = formatEndpoint(hp.host, hp.port, hp.tls);
  return { instance: Object.freeze({ service, id, address, host: hp.host, port: hp.port, ...(hp.tls ? { tls: true } : {}), zone, weight, metadata, state }), ttl, retryKey };
}

export function checkState(raw: unknown): InstanceState {
  if (!INSTANCE_STATES.includes(raw as InstanceState)) throw invalid('state', `must be one of ${INSTANCE_STATES.join(', ')}`);
  return raw as InstanceState;
}

function text(value: unknown, path: string, re: RegExp, rule: string): string {
  if (typeof value !== 'string') throw invalid(path, value === undefined ? 'required' : `expected a string, got ${typeof value}`);
  if (!re.test(value)) throw invalid(path, `"${value.slice(0, 100)}" is not valid (${rule})`);
  return value;
}

function checkMetadata(value: unknown, maxSize: number): Readonly<Record<string, string>> {
  if (value === undefined) return Object.freeze({});
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('metadata', 'expected an object of strings');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw invalid(`metadata.${k.slice(0, 100)}`, `expected a string, got ${v === null ? 'null' : typeof v}`);
    out[k] = v;
  }
  const size = Buffer.byteLength(JSON.stringify(out));
  if (size > maxSize) {
    throw new TandemError('TANDEM_ERR_REGISTRY_LIMIT', `metadata: ${size} bytes of JSON, more than the limit of ${maxSize} (registry.maxMetadataSize)`, { status: 413 });
  }
  return Object.freeze(out);
}
