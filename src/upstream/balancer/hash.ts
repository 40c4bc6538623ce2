/**
 * MurmurHash3 (x86, 32-bit) of a string's UTF-16LE encoding: one 32-bit block per two code
 * units, read with charCodeAt so hashing a key allocates nothing. Murmur3 rather than FNV
 * because its final mix spreads similar keys ("host#1", "host#2") evenly over the ring.
 */
export function hash32(text: string, seed = 0): number {
  const length = text.length;
  let h = seed | 0;
  let i = 0;
  for (; i + 1 < length; i += 2) {
    h ^= scramble(text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < length) h ^= scramble(text.charCodeAt(i));
  // Murmur3 folds in the length in bytes; every code unit is two bytes.
  h ^= length * 2;
  return finalMix(h);
}

function scramble(block: number): number {
  let k = Math.imul(block, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, 0x1b873593);
}

/** The avalanche step: every input bit flips each output bit with probability about 1/2. */
function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
