// The gRPC drill's service (grpc-drill.proto) loaded through @grpc/proto-loader, as an application
// loads its .proto, and the few helpers the drill's instance, load client and benchmark share.
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const PROTO_FILE = fileURLToPath(new URL('grpc-drill.proto', import.meta.url));

/** Full method paths, as they travel in `:path`. */
export const GET_PATH = '/tandem.drill.Drill/Get';
export const WATCH_PATH = '/tandem.drill.Drill/Watch';

let loaded;

/** { Drill, DrillControl }: grpc-js client constructors (each with `.service`, the definition). */
export function drillPackage() {
  loaded ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, { keepCase: false, defaults: true })).tandem.drill;
  return loaded;
}

/** The status's name for a grpc-js status code (14 → UNAVAILABLE). */
export function statusName(code) {
  return Object.entries(grpc.status).find(([, v]) => v === code)?.[0] ?? String(code);
}

/**
 * One gRPC message frame (the 5-byte prefix: not compressed, big-endian length) holding a
 * GetRequest { id }: what h2load posts in the benchmark (`-d file`). Encoded by hand: field 1,
 * wire type 2 (length-delimited), one-byte length.
 */
export function getRequestFrame(id = 'bench') {
  const text = Buffer.from(id);
  if (text.length > 127) throw new Error('id too long for a one-byte length');
  const message = Buffer.concat([Buffer.from([0x0a, text.length]), text]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

export { grpc };
