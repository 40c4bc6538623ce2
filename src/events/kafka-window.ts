/**
 * Kafka keeps no delivery count, so the Kafka adapter keeps one itself, in the metadata string
 * of the group's committed offset (OffsetCommit carries one per partition, stored with the
 * offset in `__consumer_offsets`, replicated, and handed to the next owner of the partition by
 * OffsetFetch). Why there and not in a topic of our own: it is written by the same request that
 * commits progress (no second write per batch), fenced by the group generation like any commit,
 * and read back in one request when a partition changes hands, with no log to scan.
 *
 * The string describes the partition's window past the committed offset: for each record that
 * was started and has no outcome yet, how many times it was started; for each record that has
 * an outcome though an earlier one does not (handlers finish out of order), that it is done, so
 * the next owner skips it. Format: `tk1;` then `delta.count` entries joined by `,`, where delta
 * is the offset minus the committed offset and count 0 means done.
 */

/** Offsets past the committed one: starts without an outcome (≥ 1), or 0 for done. */
export type DeliveryWindow = Map<bigint, number>;

const PREFIX = 'tk1;';
/**
 * Kafka refuses a commit whose metadata is longer than `offset.metadata.max.bytes` (4096 by
 * default): entries past this length are left out. Started records come first, so what is lost
 * then is a skip of a done record (it runs again, the inbox absorbs it), not a count.
 */
export const WINDOW_MAX_CHARS = 3_800;

/** The metadata string for a partition committed at `base`; entries below `base` are left out. */
export function encodeWindow(base: bigint, entries: Iterable<[bigint, number]>): string {
  const started: string[] = [];
  const done: string[] = [];
  for (const [offset, count] of entries) {
    if (offset < base) continue;
    (count > 0 ? started : done).push(`${offset - base}.${count}`);
  }
  let out = PREFIX;
  let first = true;
  for (const e of [...started, ...done]) {
    if (out.length + e.length + 1 > WINDOW_MAX_CHARS) break;
    out += first ? e : `,${e}`;
    first = false;
  }
  return out;
}

/** The window a previous owner committed at `base`; empty for anything else (no metadata, another client's). */
export function decodeWindow(base: bigint, metadata: string | null | undefined): DeliveryWindow {
  const out: DeliveryWindow = new Map();
  if (!metadata?.startsWith(PREFIX) || base < 0n) return out;
  for (const e of metadata.slice(PREFIX.length).split(',')) {
    const m = /^(\d{1,12})\.(\d{1,6})$/.exec(e);
    if (m) out.set(base + BigInt(m[1]!), Number(m[2]));
  }
  return out;
}
