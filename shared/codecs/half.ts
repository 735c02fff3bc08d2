/**
 * float32 <-> 16-bit float conversion for wire compression (IEEE binary16 and bfloat16).
 *
 * Both directions round to nearest, ties to even, and keep infinities and NaN. Sums are never done in
 * 16 bits: callers decode to float32, add, and re-encode. Unit roundoff (max relative rounding error of one
 * conversion of a normal number): float16 2^-11, bfloat16 2^-8. float16 overflows to ±Inf above 65504 and
 * has an absolute error of at most 2^-25 in its subnormal range (|x| < 2^-14).
 *
 * This is the one float16/bfloat16 implementation of the code base: the wire codecs (encodeHalf, decodeHalf,
 * roundToHalf) work in place on caller buffers, the allocating helpers (f16ToFloat32, float32ToF16, ...) serve
 * checkpoint I/O. float16 -> float32 is a 65536-entry table lookup; float32 -> float16 is straight-line
 * integer arithmetic for normal values with a per-element slow path only for zeros, subnormals and specials.
 */
import { addInto } from "./float32-sum";

/** The 16-bit formats supported on the wire. */
export type HalfKind = "fp16" | "bf16";

/** Max relative error of one float32 -> half conversion of a value in the normal range. */
export const HALF_UNIT_ROUNDOFF: Readonly<Record<HalfKind, number>> = { fp16: 2 ** -11, bf16: 2 ** -8 };

/** Max absolute error of one float32 -> half conversion in the subnormal range (0 for bfloat16's range). */
export const HALF_SUBNORMAL_ABS_ERROR: Readonly<Record<HalfKind, number>> = { fp16: 2 ** -25, bf16: 2 ** -134 };

/** binary16 bits -> binary32 bits for every one of the 65536 patterns (256 KiB, built once). */
const F16_TO_F32_BITS = buildF16Table();
const F16_TO_F32 = new Float32Array(F16_TO_F32_BITS.buffer);
const F16_TO_F32_BITS_I32 = new Int32Array(F16_TO_F32_BITS.buffer);

function buildF16Table(): Uint32Array {
  const t = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f) bits = sign | 0x7f800000 | (mant << 13);
    else if (exp !== 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
    else if (mant === 0) bits = sign;
    else {
      // subnormal half: normalise into a float32 normal
      let e = 113;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits = sign | (e << 23) | ((mant & 0x3ff) << 13);
    }
    t[h] = bits >>> 0;
  }
  return t;
}

/** Converts float32 bits to binary16 bits, round to nearest even. */
export function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1) !== 0)) q++;
    return sign | q;
  }
  let q = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (q & 1) !== 0)) q++;
  return sign | q;
}

/** Converts float32 bits to bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) / 65536) & 0xffff;
}

// Fast paths. Elements are read as int32 bit patterns (Int32Array views stay in V8's small-integer range, unlike
// Uint32Array values >= 2^31) and converted with straight-line integer arithmetic; only zeros, float16
// subnormals, overflow, infinities and NaN take the per-element slow path above.

/** |bits| range [2^-14, 2^16) handled inline: normal float16 results, rounding up to infinity from 65520 on. */
const F16_NORMAL_MIN = 0x38800000;
const F16_NORMAL_END = 0x47800000;
/** Rebias of the exponent from float32 (127) to float16 (15), in float32 bit position. */
const F16_REBIAS = 112 << 23;

/** float32 bits (as int32) -> float16 bits; the common normal case inline, the rest via f32BitsToF16. */
function f16Fast(i: number): number {
  const a = i & 0x7fffffff;
  if (a >= F16_NORMAL_MIN && a < F16_NORMAL_END) {
    // round to nearest even on the 13 dropped mantissa bits; a carry correctly bumps the exponent
    return ((i >>> 16) & 0x8000) | ((a - F16_REBIAS + 0xfff + ((a >>> 13) & 1)) >>> 13);
  }
  return a === 0 ? (i >>> 16) & 0x8000 : f32BitsToF16(i >>> 0);
}

/** float32 bits (as int32) -> bfloat16 bits, round to nearest even (NaN stays a quiet NaN). */
function bf16Fast(i: number): number {
  if ((i & 0x7fffffff) > 0x7f800000) return ((i >>> 16) | 0x40) & 0xffff;
  return (i + 0x7fff + ((i >>> 16) & 1)) >>> 16;
}

/** Encodes src into dst (same length), one 16-bit pattern per element. */
export function encodeHalf(kind: HalfKind, src: Float32Array, dst: Uint16Array): void {
  if (dst.length !== src.length) throw new Error(`encodeHalf: length mismatch (src ${src.length}, dst ${dst.length})`);
  const bits = new Int32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  if (kind === "fp16") for (let i = 0; i < n; i++) dst[i] = f16Fast(bits[i]);
  else for (let i = 0; i < n; i++) dst[i] = bf16Fast(bits[i]);
}

/** Scratch block for decoding bfloat16 before adding (bit patterns must pass through memory to become floats). */
const BLOCK = 4096;
const scratchF32 = new Float32Array(BLOCK);
const scratchI32 = new Int32Array(scratchF32.buffer);

/** Decodes src and writes (add = false) or adds (add = true) it into dst, in float32. */
export function decodeHalf(kind: HalfKind, src: Uint16Array, dst: Float32Array, add: boolean): void {
  if (dst.length !== src.length) throw new Error(`decodeHalf: length mismatch (src ${src.length}, dst ${dst.length})`);
  const n = src.length;
  if (kind === "fp16") {
    const t = F16_TO_F32;
    if (add) for (let i = 0; i < n; i++) dst[i] += t[src[i]];
    else for (let i = 0; i < n; i++) dst[i] = t[src[i]];
  } else if (!add) {
    const out = new Int32Array(dst.buffer, dst.byteOffset, dst.length);
    for (let i = 0; i < n; i++) out[i] = src[i] << 16;
  } else {
    for (let base = 0; base < n; base += BLOCK) {
      const m = Math.min(BLOCK, n - base);
      for (let j = 0; j < m; j++) scratchI32[j] = src[base + j] << 16;
      addInto(dst.subarray(base, base + m), scratchF32);
    }
  }
}

/** Rounds every element of data, in place, to the nearest value representable in the 16-bit format. */
export function roundToHalf(kind: HalfKind, data: Float32Array): void {
  const bits = new Int32Array(data.buffer, data.byteOffset, data.length);
  const n = data.length;
  if (kind === "fp16") {
    const t = F16_TO_F32_BITS_I32;
    for (let i = 0; i < n; i++) bits[i] = t[f16Fast(bits[i])];
  } else for (let i = 0; i < n; i++) bits[i] = bf16Fast(bits[i]) << 16;
}

// Allocating helpers (checkpoint loading/saving: safetensors F16 / BF16 tensors).

/** Decodes float16 bit patterns into a new Float32Array (exact: every half value is a float32). */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  decodeHalf("fp16", bits, out, false);
  return out;
}

/** Decodes bfloat16 bit patterns into a new Float32Array (exact: bf16 is the top half of a float32). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  decodeHalf("bf16", bits, out, false);
  return out;
}

/** Encodes float32 values as new float16 bit patterns (round to nearest even; overflow to ±Inf, NaN stays NaN). */
export function float32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  encodeHalf("fp16", values, out);
  return out;
}

/** Encodes float32 values as new bfloat16 bit patterns (round to nearest even; NaN stays a quiet NaN). */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  encodeHalf("bf16", values, out);
  return out;
}

/** Decodes one 16-bit pattern to a number (for tests and diagnostics). */
export function halfToNumber(kind: HalfKind, h: number): number {
  if (kind === "fp16") return F16_TO_F32[h & 0xffff];
  const f = new Float32Array(new Uint32Array([(h & 0xffff) << 16]).buffer);
  return f[0];
}
