/**
 * A set of objects linked through the objects themselves, for a set that lives as long as the
 * process while its members come and go (connections, sessions). A Set would keep them in a
 * table that V8 replaces as entries come and go; each table replaced, once old, still points to
 * the next, and keeps what was in it alive through the scavenges until the next full collection
 * (docs/benchmarks.md, "What a long-lived table keeps"). A member taken out of a LinkedSet keeps
 * no link, and nothing links to it. Each LinkedSet has link keys of its own, so an object can be
 * in several. Iteration visits the members there when it starts, in the order they were added,
 * skipping any deleted meanwhile (those added meanwhile are not visited).
 */
export class LinkedSet<T extends object> implements Iterable<T> {
  private readonly prevKey = Symbol('tandem.linkedSet.prev');
  private readonly nextKey = Symbol('tandem.linkedSet.next');
  private head: T | null = null;
  private tail: T | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** A member has both links set: to a neighbour, or null at an end. */
  has(item: T): boolean {
    return links(item)[this.nextKey] !== undefined;
  }

  add(item: T): this {
    if (this.has(item)) return this;
    const tail = this.tail;
    links(item)[this.prevKey] = tail;
    links(item)[this.nextKey] = null;
    if (tail === null) this.head = item;
    else links(tail)[this.nextKey] = item;
    this.tail = item;
    this.count++;
    return this;
  }

  delete(item: T): boolean {
    if (!this.has(item)) return false;
    const prev = links(item)[this.prevKey] as T | null;
    const next = links(item)[this.nextKey] as T | null;
    if (prev === null) this.head = next;
    else links(prev)[this.nextKey] = next;
    if (next === null) this.tail = prev;
    else links(next)[this.prevKey] = prev;
    links(item)[this.prevKey] = undefined;
    links(item)[this.nextKey] = undefined;
    this.count--;
    return true;
  }

  *[Symbol.iterator](): Iterator<T> {
    const members: T[] = [];
    for (let item = this.head; item !== null; item = links(item)[this.nextKey] as T | null) members.push(item);
    for (const item of members) if (this.has(item)) yield item;
  }
}

function links(item: object): Record<symbol, object | null | undefined> {
  return item as Record<symbol, object | null | undefined>;
}
