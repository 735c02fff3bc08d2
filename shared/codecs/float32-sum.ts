/**
 * The all-reduce's inner loop: dst[i] += src[i] over float32 arrays.
 *
 * V8 neither vectorises nor unrolls typed-array loops, and every rank of a ring sums (N−1)/N of the buffer per
 * all-reduce, so this loop is a visible share of the collective's CPU. Two paths, both one float32 addition per
 * element in index order (so the sums are the same numbers as the plain loop's; only a NaN's payload bits may differ):
 *  - long arrays: 128-bit WebAssembly SIMD (`f32x4.add`), in blocks copied through a 1 MiB wasm memory — the two
 *    copies cost less than the four lanes save;
 *  - short arrays, or where wasm SIMD is missing: a JS loop unrolled by eight.
 * `npm run bench:sum` times the three side by side (docs/PERFORMANCE.md has the figures).
 */

/**
 * The module, assembled with wabt's wat2wasm from:
 *   (module (memory (export "memory") 16)
 *     (func (export "add") (param $dst i32) (param $src i32) (param $bytes i32) (local $i i32)
 *       (block $done (loop $next
 *         (br_if $done (i32.ge_u (local.get $i) (local.get $bytes)))
 *         (v128.store (i32.add (local.get $dst) (local.get $i))
 *           (f32x4.add (v128.load (i32.add (local.get $dst) (local.get $i)))
 *                      (v128.load (i32.add (local.get $src) (local.get $i)))))
 *         (local.set $i (i32.add (local.get $i) (i32.const 16)))
 *         (br $next)))))
 */
const SIMD_ADD_WASM_BASE64 =
  "AGFzbQEAAAABBwFgA39/fwADAgEABQMBABAHEAIGbWVtb3J5AgADYWRkAAAKOgE4AQF/AkADQCADIAJPDQEgACADaiAAIANq/QAEACABIANq/QAEAP3kAf0LBAAgA0EQaiEDDAALCws=";
/** The module's memory: 16 pages of 64 KiB. */
const WASM_MEMORY_BYTES = 16 * 65536;
/** Floats per operand block: two blocks (destination, source) fill the memory. */
const BLOCK_FLOATS = WASM_MEMORY_BYTES / 4 / 2;
/** Below this many elements the copies into wasm memory are not worth it. */
const MIN_SIMD_ELEMENTS = 1024;

interface SimdAdd {
  memory: Float32Array;
  add: (dstByte: number, srcByte: number, bytes: number) => void;
}

/** The slice of the WebAssembly API used here (the project's lib is ES2022 without DOM typings). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: { memory: { buffer: ArrayBuffer }; add: SimdAdd["add"] } };
}

let simd: SimdAdd | null | undefined;

function simdAdd(): SimdAdd | null {
  if (simd !== undefined) return simd;
  try {
    const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
    const { exports } = new wasm.Instance(new wasm.Module(Buffer.from(SIMD_ADD_WASM_BASE64, "base64")));
    simd = { memory: new Float32Array(exports.memory.buffer), add: exports.add };
  } catch {
    simd = null; // no wasm SIMD in this runtime: the unrolled loop does the work
  }
  return simd;
}

/** dst[i] += src[i] for i < dst.length (src must be at least as long). */
export function addInto(dst: Float32Array, src: Float32Array): void {
  const n = dst.length;
  if (src.length < n) throw new Error(`addInto: source has ${src.length} elements, destination ${n}`);
  const s = n >= MIN_SIMD_ELEMENTS ? simdAdd() : null;
  let i = 0;
  if (s !== null) {
    const mem = s.memory;
    for (; n - i >= 4; ) {
      const m = Math.min(BLOCK_FLOATS, (n - i) & ~3);
      mem.set(dst.subarray(i, i + m), 0);
      mem.set(src.subarray(i, i + m), BLOCK_FLOATS);
      s.add(0, BLOCK_FLOATS * 4, m * 4);
      dst.set(mem.subarray(0, m), i);
      i += m;
    }
  }
  addUnrolled(dst, src, i, n);
}

/** The JS path: dst[i] += src[i] for from <= i < to, unrolled by eight. */
function addUnrolled(dst: Float32Array, src: Float32Array, from: number, to: number): void {
  let i = from;
  for (; i + 8 <= to; i += 8) {
    dst[i] += src[i];
    dst[i + 1] += src[i + 1];
    dst[i + 2] += src[i + 2];
    dst[i + 3] += src[i + 3];
    dst[i + 4] += src[i + 4];
    dst[i + 5] += src[i + 5];
    dst[i + 6] += src[i + 6];
    dst[i + 7] += src[i + 7];
  }
  for (; i < to; i++) dst[i] += src[i];
}

/** dst[i] += src[i] on the JS path only (what addInto does without wasm SIMD); for benchmarks and tests. */
export function addIntoUnrolled(dst: Float32Array, src: Float32Array): void {
  if (src.length < dst.length) throw new Error(`addInto: source has ${src.length} elements, destination ${dst.length}`);
  addUnrolled(dst, src, 0, dst.length);
}

/** Whether addInto uses WebAssembly SIMD in this runtime (for logs and tests). */
export function simdSumAvailable(): boolean {
  return simdAdd() !== null;
}
