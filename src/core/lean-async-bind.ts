import { AsyncResource } from 'node:async_hooks';

/**
 * `AsyncResource.prototype.bind` without what Node's own keeps alive.
 *
 * Node's bind (Node 20 to 24 at least) gives every bound function an `asyncResource` accessor
 * whose getter and setter are closures made for that call (each wrapped by `deprecate()`,
 * DEP0172), and those closures share their scope with the bound target. Measured on Node 20
 * and 24: an accessor of closures made per call, defined on a function, survives the
 * scavenges after it until the next full collection — and with it what its scope holds (a
 * 5 KB target: 4.3–4.9 KB per bind still young after a minor collection; with one getter and
 * setter shared by every function, nothing). node:http2 binds every request this way
 * (`ClientHttp2Session.request` binds `requestOnConnect` to the new stream, its header block
 * and options): each stream the gateway opens to an endpoint, and all it still holds, was
 * copied out of the young generation twice, then waited in the old one — measured in
 * docs/benchmarks.md ("A stream the gateway opens no longer outlives its scavenge").
 *
 * This bind does what Node's does: runs `fn` in the resource's async scope, with `thisArg` or
 * else the call's own `this`; keeps `fn.length` and Node's names (`bound`, `bound
 * runInAsyncScope`); has the deprecated `asyncResource` accessor, which warns DEP0172 once a
 * process, as Node's does. Its getter and setter are shared by every
 * bound function (the resource is kept in a private field of the function), so nothing of a
 * bind outlives it; a non-function is refused by Node's own bind, with Node's own error.
 */

type Bind = (this: AsyncResource, fn: unknown, thisArg?: unknown) => (...args: unknown[]) => unknown;

let nodeBind: Bind | undefined;
let warned = false;

function warnDeprecated(from: (...args: never[]) => unknown): void {
  if (warned) return;
  warned = true;
  // emitWarning honours --no-deprecation and --throw-deprecation, as Node's deprecate() does;
  // `from` starts --trace-deprecation's stack at the accessor.
  process.emitWarning('The asyncResource property on bound functions is deprecated', 'DeprecationWarning', 'DEP0172', from);
}

/** A base class whose constructor hands back the object it is given, so a subclass can put its private fields on any object. */
class Stamped {
  constructor(target: object) {
    return target as Stamped;
  }
}

/**
 * The resource of a bound function, in a private field of the function itself: no property
 * anyone can see (Node's bound functions have none), and adding it is a store an inline cache
 * handles, where Object.defineProperty is a call into the runtime on every bind.
 */
class ResourceSlot extends Stamped {
  #resource: AsyncResource;

  private constructor(bound: object, resource: AsyncResource) {
    super(bound);
    this.#resource = resource;
  }

  static put(bound: object, resource: AsyncResource): void {
    new ResourceSlot(bound, resource);
  }

  static get(bound: object): AsyncResource | undefined {
    return #resource in bound ? (bound as ResourceSlot).#resource : undefined;
  }

  static set(bound: object, resource: AsyncResource): void {
    if (#resource in bound) (bound as ResourceSlot).#resource = resource;
  }
}

function getAsyncResource(this: object): AsyncResource | undefined {
  warnDeprecated(getAsyncResource);
  return ResourceSlot.get(this);
}

function setAsyncResource(this: object, value: AsyncResource): void {
  warnDeprecated(setAsyncResource);
  ResourceSlot.set(this, value);
}

/** The `asyncResource` accessor of every bound function: one getter, one setter. */
const ASYNC_RESOURCE: PropertyDescriptor = Object.freeze({ configurable: true, enumerable: true, get: getAsyncResource, set: setAsyncResource });

function leanBind(this: AsyncResource, fn: unknown, thisArg?: unknown): (...args: unknown[]) => unknown {
  if (typeof fn !== 'function') return nodeBind!.call(this, fn, thisArg);
  return boundTo(this, fn as (...args: unknown[]) => unknown, thisArg);
}

function boundTo(resource: AsyncResource, target: (...args: unknown[]) => unknown, thisArg: unknown): (...args: unknown[]) => unknown {
  const bound = thisArg === undefined
    ? function bound(this: unknown, ...args: unknown[]): unknown { return resource.runInAsyncScope(target, this, ...args); }
    : resource.runInAsyncScope.bind(resource, target, thisArg) as (...args: unknown[]) => unknown;
  // A function's own length has these attributes already: redefined only when the value
  // differs (node:http2's targets have none), which keeps the function out of dictionary mode.
  if (bound.length !== target.length) Object.defineProperty(bound, 'length', { configurable: true, enumerable: false, value: target.length, writable: false });
  Object.defineProperty(bound, 'asyncResource', ASYNC_RESOURCE);
  ResourceSlot.put(bound, resource);
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
  if (typeof proto.bind !== 'function' || !Function.prototype.toString.call(proto.bind).includes('DEP0172')) return false;
  nodeBind = proto.bind;
  proto.bind = leanBind;
  return true;
}
