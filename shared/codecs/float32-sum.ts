/**
 * dst[i] += src[i] over float32 arrays: the all-reduce's inner loop, also gradient accumulation and error feedback.
 *
 * V8 neither vectorises nor unrolls typed-array loops, and every rank of a ring sums (N−1)/N of the buffer per
 * all-reduce, so the loop is unrolled by eight by hand: still one float32 addition per element in index order, so
 * the sums are bit-identical to the plain loop's. `npm run bench:sum` times the two side by side
 * (docs/PERFORMANCE.md has the figures, and why a wasm SIMD version was measured and not kept).
 */

/** dst[i] += src[i] for i < dst.length (src must be at least as long). */
export function addInto(dst: Float32Array, src: Float32Array): void {
  const n = dst.length;
  if (src.length < n) throw new Error(`addInto: source has ${src.length} elements, destination ${n}`);
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    dst[i] += src[i];
    dst[i + 1] += src[i + 1];
    dst[i + 2] += src[i + 2];
    dst[i + 3] += src[i + 3];
    dst[i + 4] += src[i + 4];
    dst[i + 5] += src[i + 5];
    dst[i + 6] += src[i + 6];
    dst[i + 7] += src[i + 7];
  }
  for (; i < n; i++) dst[i] += src[i];
}
