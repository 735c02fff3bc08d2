/**
 * IEEE half (F16) and bfloat16 (BF16) <-> float32 conversion, on raw 16-bit patterns held in Uint16Array.
 * Encoding rounds to nearest, ties to even, like hardware conversions do, so round trips are exact for every
 * value representable in the smaller format.
 */

let f16Table: Float32Array | undefined;

/** Decodes F16 bit patterns to float32 (exact: every half value is a float32). */
export function f16ToFloat32(bits: Uint16Array): Float32Array {
  // A 65536-entry table (256 KiB) makes large tensors a single indexed load per element.
  if (f16Table === undefined) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = decodeF16(h);
  }
  const table = f16Table;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Decodes BF16 bit patterns to float32 (exact: bf16 is the top half of a float32). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i] << 16;
  return out;
}

/** Encodes float32 values as F16 bit patterns (round to nearest even; overflow gives +-Inf, NaN stays NaN). */
export function float32ToF16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = encodeF16(u32[i]);
  return out;
}

/** Encodes float32 values as BF16 bit patterns (round to nearest even; NaN stays a quiet NaN). */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const u32 = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = u32[i];
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40; // NaN: keep sign, force quiet bit
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

function decodeF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24; // zero / subnormal
  if (exp === 31) return man === 0 ? sign * Infinity : NaN;
  return sign * (1024 + man) * 2 ** (exp - 25);
}

function encodeF16(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const man = f & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15; // rebias
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or zero): value = M * 2^(exp-150), half subnormal unit = 2^-24.
    if (e < -10) return sign;
    const m = man | 0x800000;
    const shift = 14 - e;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    let k = m >>> shift;
    if (rem > halfway || (rem === halfway && (k & 1) === 1)) k++;
    return sign | k; // k may reach 0x400, which is correctly the smallest normal
  }
  let h = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // a carry may round up into Inf: correct
  return sign | h;
}
