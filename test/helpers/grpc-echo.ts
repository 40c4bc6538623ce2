import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ROOT } from './gateway.js';

export interface EchoRequest { text?: string; delayMs?: number }
export interface EchoReply { text: string; instance: string; deadlineMs: number }

/** test/helpers/echo.proto through proto-loader, as an application would load it. */
export function echoPackage(): { Echo: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(join(ROOT, 'test', 'helpers', 'echo.proto'), { keepCase: false, defaults: true });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { tandem: { test: { Echo: grpc.ServiceClientConstructor } } };
  return loaded.tandem.test;
}
