/**
 * float32 <-> 16-bit float conversion for wire compression (IEEE binary16 and bfloat16).
 *
 * Both directions round to nearest, ties to even, and keep infinities and NaN. Sums are never done in
 * 16 bits: callers decode to float32, add, and re-encode. Unit roundoff (max relative rounding error of one
 * conversion of a normal number): float16 2^-11, bfloat16 2^-8. float16 overflows to ±Inf above 65504 and
 * has an absolute error of at most 2^-25 in its subnormal range (|x| < 2^-14).
 */

/** The 16-bit formats supported on the wire. */
export type HalfKind = "fp16" | "bf16";

/** Max relative error of one float32 -> half conversion of a value in the normal range. */
export const HALF_UNIT_ROUNDOFF: Readonly<Record<HalfKind, number>> = { fp16: 2 ** -11, bf16: 2 ** -8 };

/** Max absolute error of one float32 -> half conversion in the subnormal range (0 for bfloat16's range). */
export const HALF_SUBNORMAL_ABS_ERROR: Readonly<Record<HalfKind, number>> = { fp16: 2 ** -25, bf16: 2 ** -134 };

/** binary16 bits -> binary32 bits for every one of the 65536 patterns (256 KiB, built once). */
const F16_TO_F32_BITS = buildF16Table();
const F16_TO_F32 = new Float32Array(F16_TO_F32_BITS.buffer);

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

/** Encodes src into dst (same length), one 16-bit pattern per element. */
export function encodeHalf(kind: HalfKind, src: Float32Array, dst: Uint16Array): void {
  if (dst.length !== src.length) throw new Error(`encodeHalf: length mismatch (src ${src.length}, dst ${dst.length})`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const n = src.length;
  if (kind === "fp16") for (let i = 0; i < n; i++) dst[i] = f32BitsToF16(bits[i]);
  else for (let i = 0; i < n; i++) dst[i] = f32BitsToBf16(bits[i]);
}

/** Decodes src and writes (add = false) or adds (add = true) it into dst, in float32. */
export function decodeHalf(kind: HalfKind, src: Uint16Array, dst: Float32Array, add: boolean): void {
  if (dst.length !== src.length) throw new Error(`decodeHalf: length mismatch (src ${src.length}, dst ${dst.length})`);
  const n = src.length;
  if (kind === "fp16") {
    const t = F16_TO_F32;
    if (add) for (let i = 0; i < n; i++) dst[i] += t[src[i]];
    else for (let i = 0; i < n; i++) dst[i] = t[src[i]];
  } else {
    const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    if (add) {
      const tmp = new Float32Array(1);
      const tmpBits = new Uint32Array(tmp.buffer);
      for (let i = 0; i < n; i++) {
        tmpBits[0] = src[i] << 16;
        dst[i] += tmp[0];
      }
    } else for (let i = 0; i < n; i++) out[i] = src[i] << 16;
  }
}

/** Rounds every element of data, in place, to the nearest value representable in the 16-bit format. */
export function roundToHalf(kind: HalfKind, data: Float32Array): void {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const n = data.length;
  if (kind === "fp16") for (let i = 0; i < n; i++) bits[i] = F16_TO_F32_BITS[f32BitsToF16(bits[i])];
  else for (let i = 0; i < n; i++) bits[i] = f32BitsToBf16(bits[i]) << 16;
}

/** Decodes one 16-bit pattern to a number (for tests and diagnostics). */
export function halfToNumber(kind: HalfKind, h: number): number {
  if (kind === "fp16") return F16_TO_F32[h & 0xffff];
  const f = new Float32Array(new Uint32Array([(h & 0xffff) << 16]).buffer);
  return f[0];
}
