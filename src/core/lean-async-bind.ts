import { AsyncResource } from 'node:async_hooks';

/**
 * `AsyncResource.prototype.bind` without what Node's own keeps alive.
 *
 * Node's bind (Node 20 to 24 at least) gives every bound function an `asyncResource` accessor
 * whose getter and setter are closures made for that call (each wrapped by `deprecate()`,
 * DEP0172). An accessor pair of its own gives the function a hidden class (V8 map) of its own,
 * which V8's transition tree holds by a weak link — and a scavenge keeps whatever a weak link
 * reaches. So the closures, the bound function's target and that target's bound arguments
 * survive every minor collection until the next full one: they are copied out of the young
 * generation twice, then wait in the old one. node:http2 binds every request this way
 * (`ClientHttp2Session.request` binds `requestOnConnect` to the new stream): each stream the
 * gateway opens to an endpoint, and all it still holds, went that way — measured in
 * docs/benchmarks.md ("A stream the gateway opens no longer outlives its scavenge").
 *
 * This bind does what Node's does: runs `fn` in the resource's async scope, with `thisArg` or
 * else the call's own `this`; keeps `fn.length`; has the deprecated `asyncResource` accessor,
 * which warns DEP0172 once. Its getter and setter are shared by every bound function (the
 * resource is kept under a symbol), so bound functions share their hidden classes and keep
 * nothing alive; a non-function is refused by Node's own bind, with Node's own error.
 */

type Bind = (this: AsyncResource, fn: unknown, thisArg?: unknown) => (...args: unknown[]) => unknown;

const kResource = Symbol('tandem.asyncResource');
type Bound = ((...args: unknown[]) => unknown) & { [kResource]: AsyncResource };

let nodeBind: Bind | undefined;
let warned = false;

function warnDeprecated(): void {
  if (warned) return;
  warned = true;
  // emitWarning honours --no-deprecation and --throw-deprecation, as Node's deprecate() does.
  process.emitWarning('The asyncResource property on bound functions is deprecated', 'DeprecationWarning', 'DEP0172');
}

/** The `asyncResource` accessor of every bound function: one getter, one setter. */
const ASYNC_RESOURCE: PropertyDescriptor = Object.freeze({
  configurable: true,
  enumerable: true,
  get(this: Bound): AsyncResource {
    warnDeprecated();
    return this[kResource];
  },
  set(this: Bound, value: AsyncResource): void {
    warnDeprecated();
    this[kResource] = value;
  },
});

function leanBind(this: AsyncResource, fn: unknown, thisArg?: unknown): (...args: unknown[]) => unknown {
  if (typeof fn !== 'function') return nodeBind!.call(this, fn, thisArg);
  return boundTo(this, fn as (...args: unknown[]) => unknown, thisArg);
}

function boundTo(resource: AsyncResource, target: (...args: unknown[]) => unknown, thisArg: unknown): (...args: unknown[]) => unknown {
  const bound = (thisArg === undefined
    ? function (this: unknown, ...args: unknown[]): unknown { return resource.runInAsyncScope(target, this, ...args); }
    : resource.runInAsyncScope.bind(resource, target, thisArg)) as Bound;
  Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: target.length, writable: false });
  Object.defineProperty(bound, 'asyncResource', ASYNC_RESOURCE);
  bound[kResource] = resource;
  return bound;
}

/**
 * Puts the lean bind in place of Node's, for this process: only over Node's own (recognised by
 * its DEP0172 accessor — a Node without it has nothing to mend, and a bind someone else put
 * there is theirs). The gateway process calls it at startup; the libraries never do. Returns
 * whether the lean bind is in place.
 */
export function installLeanAsyncBind(): boolean {
  const proto = AsyncResource.prototype as unknown as { bind: Bind };
  if (proto.bind === leanBind) return true;
  if (!Function.prototype.toString.call(proto.bind).includes('DEP0172')) return false;
  nodeBind = proto.bind;
  proto.bind = leanBind;
  return true;
}
