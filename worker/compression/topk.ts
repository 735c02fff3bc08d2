/**
 * Top-k selection for sparsified all-reduce: the k entries of largest magnitude, chosen deterministically
 * (ties broken by lower index) in O(n) expected time with a quickselect on the magnitudes.
 */

/** Float32 represents every integer below 2^24 exactly; indices travel as float32, so blocks stay below it. */
export const MAX_EXACT_FLOAT32_INDEX = 2 ** 24;

/** How many entries top-k keeps of a block of n at `ratio` (at least 1, at most n). */
export function topkCount(n: number, ratio: number): number {
  if (n === 0) return 0;
  return Math.min(n, Math.max(1, Math.ceil(ratio * n - 1e-9)));
}

/**
 * Indices (ascending) of the k entries of x[offset, offset + length) with the largest |value|, relative to offset.
 * NaN and infinities rank above every finite value, so they are always sent and the trainer's finite-norm
 * check sees them. `scratch` (length >= length) avoids an allocation per call.
 */
export function topkIndices(x: Float32Array, offset: number, length: number, k: number, scratch?: Float32Array): Uint32Array {
  if (k <= 0) return new Uint32Array(0);
  if (k >= length) {
    const all = new Uint32Array(length);
    for (let i = 0; i < length; i++) all[i] = i;
    return all;
  }
  const mags = scratch !== undefined && scratch.length >= length ? scratch.subarray(0, length) : new Float32Array(length);
  for (let i = 0; i < length; i++) mags[i] = magnitude(x[offset + i]);
  const threshold = selectAscending(mags, length - k);
  // Entries strictly above the threshold are all in; fill up with entries equal to it, lowest index first.
  let above = 0;
  for (let i = 0; i < length; i++) if (magnitude(x[offset + i]) > threshold) above++;
  let ties = k - above;
  const out = new Uint32Array(k);
  let n = 0;
  for (let i = 0; i < length && n < k; i++) {
    const m = magnitude(x[offset + i]);
    if (m > threshold) out[n++] = i;
    else if (m === threshold && ties > 0) {
      out[n++] = i;
      ties--;
    }
  }
  if (n !== k) throw new Error(`top-k selected ${n} of ${k} entries (internal error)`);
  return out;
}

function magnitude(v: number): number {
  return v === v ? Math.abs(v) : Infinity;
}

/** The value that would sit at index `want` if a were sorted ascending (a is permuted). Hoare quickselect. */
function selectAscending(a: Float32Array, want: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = lo + ((hi - lo) >> 1);
    const x = a[lo];
    const y = a[mid];
    const z = a[hi];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else break; // a[j+1 .. i-1] all equal the pivot
  }
  return a[want];
}
