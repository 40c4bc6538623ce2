// The gateway's AsyncResource.bind (core/lean-async-bind.ts): it behaves as Node's does, it
// keeps nothing of a request alive past a minor collection where Node's keeps what node:http2
// bound (measured in child processes, with node:http2's own client), and the gateway process
// puts it in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AsyncResource, executionAsyncId, triggerAsyncId } from 'node:async_hooks';
import { installLeanAsyncBind } from '../src/core/lean-async-bind.js';
import { startGateway } from './helpers/gateway.js';
import { runRetentionChild } from './helpers/young-retention.js';

const nodeBind = AsyncResource.prototype.bind;
/** bind as Node has it (@types/node leaves out its thisArg). */
type AnyBind = (this: AsyncResource, fn: (...args: never[]) => unknown, thisArg?: unknown) => (...args: unknown[]) => unknown;
const installed = installLeanAsyncBind();

test('Node\'s bind has the per-call DEP0172 accessor here, and the lean bind takes its place (once)', () => {
  assert.equal(installed, true, `Node ${process.version}: its AsyncResource.prototype.bind was not recognised`);
  assert.notEqual(AsyncResource.prototype.bind, nodeBind);
  const lean = AsyncResource.prototype.bind;
  assert.equal(installLeanAsyncBind(), true);
  assert.equal(AsyncResource.prototype.bind, lean, 'a second install keeps the first');
});

test('a bound function runs in the resource\'s async scope, with the call\'s this or thisArg, its arguments and result', () => {
  const resource = new AsyncResource('tandem-test');
  const seen: Array<{ id: number; trigger: number; self: unknown; args: unknown[] }> = [];
  function target(this: unknown, ...args: unknown[]): string {
    seen.push({ id: executionAsyncId(), trigger: triggerAsyncId(), self: this, args });
    return 'result';
  }
  const bound = resource.bind(target);
  const receiver = { name: 'receiver' };
  assert.equal(bound.call(receiver, 1, 2), 'result');
  // @types/node leaves out bind's thisArg, which Node's own takes.
  const withThis = (resource.bind as (fn: typeof target, thisArg: unknown) => typeof target)(target, 'fixed');
  assert.equal(withThis(3), 'result');
  assert.equal(seen.length, 2);
  for (const s of seen) {
    assert.equal(s.id, resource.asyncId());
    assert.equal(s.trigger, resource.triggerAsyncId());
  }
  assert.equal(seen[0]!.self, receiver);
  assert.deepEqual(seen[0]!.args, [1, 2]);
  assert.equal(seen[1]!.self, 'fixed');
  assert.deepEqual(seen[1]!.args, [3]);
  // The static form goes through the prototype's.
  const viaStatic = AsyncResource.bind((a: number, b: number) => executionAsyncId() + a + b);
  assert.equal(typeof viaStatic(0, 0), 'number');
  assert.equal(viaStatic.length, 2);
});

test('a bound function keeps fn.length and has the deprecated asyncResource accessor, which warns DEP0172 once', async () => {
  const resource = new AsyncResource('tandem-test');
  const bound = resource.bind((a: number, b: number, c: number) => a + b + c) as ((...args: number[]) => number) & { asyncResource: AsyncResource };
  assert.equal(bound.length, 3);
  assert.equal(Object.getOwnPropertyDescriptor(bound, 'length')?.writable, false);
  const descriptor = Object.getOwnPropertyDescriptor(bound, 'asyncResource')!;
  assert.equal(descriptor.enumerable, true);
  assert.equal(descriptor.configurable, true);
  assert.equal(typeof descriptor.get, 'function');
  const warnings: Array<{ name: string; code?: string }> = [];
  const onWarning = (w: Error & { code?: string }) => warnings.push({ name: w.name, code: w.code });
  process.on('warning', onWarning);
  try {
    assert.equal(bound.asyncResource, resource);
    const other = new AsyncResource('tandem-other');
    bound.asyncResource = other;
    assert.equal(bound.asyncResource, other);
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
  }
  assert.deepEqual(warnings, [{ name: 'DeprecationWarning', code: 'DEP0172' }]);
});

test('a bound function has the properties Node\'s has, each its own resource, and one accessor shared by all', () => {
  const target = function named(this: unknown, a: number, b: number): number { return a + b; };
  for (const thisArg of [undefined, { self: true }]) {
    const resource = new AsyncResource('tandem-test');
    const lean = (AsyncResource.prototype.bind as unknown as AnyBind).call(resource, target, thisArg);
    const node = (nodeBind as unknown as AnyBind).call(resource, target, thisArg);
    assert.equal(lean.name, node.name);
    assert.deepEqual(Object.getOwnPropertyNames(lean).sort(), Object.getOwnPropertyNames(node).sort());
    assert.deepEqual(Object.keys(lean), Object.keys(node), 'enumerable own keys');
    assert.deepEqual(Object.getOwnPropertySymbols(lean), Object.getOwnPropertySymbols(node), 'own symbols (none: the resource is in a private field)');
    assert.equal(Reflect.ownKeys(lean).length, Reflect.ownKeys(node).length);
    for (const name of Object.getOwnPropertyNames(node)) {
      const l = Object.getOwnPropertyDescriptor(lean, name)!;
      const n = Object.getOwnPropertyDescriptor(node, name)!;
      assert.deepEqual({ ...l, get: typeof l.get, set: typeof l.set, value: name === 'prototype' ? typeof l.value : l.value },
        { ...n, get: typeof n.get, set: typeof n.set, value: name === 'prototype' ? typeof n.value : n.value }, name);
    }
  }
  const r1 = new AsyncResource('tandem-one');
  const r2 = new AsyncResource('tandem-two');
  const b1 = r1.bind(target) as typeof target & { asyncResource: AsyncResource };
  const b2 = r2.bind(target) as typeof target & { asyncResource: AsyncResource };
  assert.equal(b1.asyncResource, r1);
  assert.equal(b2.asyncResource, r2);
  b1.asyncResource = r2;
  assert.equal(b2.asyncResource, r2);
  assert.equal(new AsyncResource('tandem-three').bind(target).call(undefined, 1, 2), 3);
  // What keeps nothing alive: no accessor made per bind.
  assert.equal(Object.getOwnPropertyDescriptor(b1, 'asyncResource')!.get, Object.getOwnPropertyDescriptor(b2, 'asyncResource')!.get);
  assert.equal(Object.getOwnPropertyDescriptor(b1, 'asyncResource')!.set, Object.getOwnPropertyDescriptor(b2, 'asyncResource')!.set);
  const n1 = nodeBind.call(r1, target);
  const n2 = nodeBind.call(r2, target);
  assert.notEqual(Object.getOwnPropertyDescriptor(n1, 'asyncResource')!.get, Object.getOwnPropertyDescriptor(n2, 'asyncResource')!.get, 'Node\'s bind makes an accessor per bind');
});

test('a non-function is refused with Node\'s own error', () => {
  assert.throws(() => new AsyncResource('tandem-test').bind(42 as unknown as () => void), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** Bytes per node:http2 request that a minor collection leaves young after they closed (helpers/bind-retention.ts). */
function retained(mode: 'lean' | 'node'): Promise<{ installed: boolean; bytesPerRequest: number }> {
  return runRetentionChild('bind-retention.js', mode);
}

test('node:http2 requests bound by the lean bind no longer keep, past a minor collection, what Node\'s bind kept of them (the 2 KB header block and more)', async () => {
  const [node, lean] = await Promise.all([retained('node'), retained('lean')]);
  assert.equal(lean.installed, true);
  // Measured on Node 20, 22 and 24: Node's bind leaves 6.0–7.5 KB per request young, the lean
  // bind 2.6–3.0 KB (the streams node:http2's native side still holds, the same either way).
  assert.ok(lean.bytesPerRequest <= node.bytesPerRequest - 2048,
    `per request after a minor collection: Node's bind ${node.bytesPerRequest} B, the lean bind ${lean.bytesPerRequest} B`);
});

test('the gateway process runs with the lean bind', async () => {
  const gw = await startGateway({ log: { level: 'debug' }, services: { web: { endpoints: ['127.0.0.1:9'] } }, routes: [{ prefix: '/', service: 'web' }] });
  try {
    const line = await gw.waitForLog((l) => l.msg === 'AsyncResource.bind');
    assert.equal(line.lean, true);
  } finally {
    await gw.stop();
  }
});
