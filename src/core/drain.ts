/**
 * Work in this process that a graceful stop waits for. tandem/events buses enter here while
 * open, so `serve()` (tandem/node) closes them — their running handlers finish first — before
 * the process exits on SIGTERM, even when the application registered no hook of its own.
 */
export interface Drainable {
  /** Names it in the drain's log line. */
  readonly drainName: string;
  close(): Promise<void>;
}

const open = new Set<Drainable>();

/** Enters `item` until the returned disposer is called (its own close() should call it). */
export function trackForDrain(item: Drainable): { dispose(): void } {
  open.add(item);
  return { dispose: () => open.delete(item) };
}

/** What is open now, oldest first. */
export function openDrainables(): Drainable[] {
  return [...open];
}
