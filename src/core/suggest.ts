/** "did you mean …?" for a misspelt key or value: the closest candidate within a small edit distance. */
export function closest(input: string, candidatesIn: Iterable<string>): string | undefined {
  const candidates = [...candidatesIn];
  let best: string | undefined;
  let bestDistance = Infinity;
  const needle = input.toLowerCase();
  for (const candidate of candidates) {
    const d = editDistance(needle, candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  const allowed = Math.max(1, Math.min(3, Math.floor(input.length / 3)));
  if (bestDistance <= allowed) return best;
  // "warning" → warn, "round" → round-robin: one is a prefix of the other
  for (const candidate of candidates) {
    const c = candidate.toLowerCase();
    if (Math.min(c.length, needle.length) >= 3 && (c.startsWith(needle) || needle.startsWith(c))) return candidate;
  }
  return undefined;
}

/** Damerau–Levenshtein (optimal string alignment) distance: a swap of two letters counts once. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array<number>(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      }
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}
