/**
 * The small dense linear algebra PowerSGD needs, on row-major Float32Array matrices, with float64 accumulation.
 * Everything here is deterministic: the same inputs give the same bits on every rank (plain JavaScript arithmetic,
 * fixed loop order), which is what keeps the replicas identical after decompression.
 */

/** out (rows x r) = M (rows x cols) . Q (cols x r). */
export function matMul(m: Float32Array, rows: number, cols: number, q: Float32Array, r: number, out: Float32Array): void {
  checkSize("M", m, rows * cols);
  checkSize("Q", q, cols * r);
  checkSize("out", out, rows * r);
  const acc = new Float64Array(r);
  for (let i = 0; i < rows; i++) {
    acc.fill(0);
    const mo = i * cols;
    for (let c = 0; c < cols; c++) {
      const v = m[mo + c];
      if (v === 0) continue;
      const qo = c * r;
      for (let j = 0; j < r; j++) acc[j] += v * q[qo + j];
    }
    const oo = i * r;
    for (let j = 0; j < r; j++) out[oo + j] = acc[j];
  }
}

/** out (cols x r) = M^T (cols x rows) . P (rows x r), M being rows x cols. */
export function matTMul(m: Float32Array, rows: number, cols: number, p: Float32Array, r: number, out: Float32Array): void {
  checkSize("M", m, rows * cols);
  checkSize("P", p, rows * r);
  checkSize("out", out, cols * r);
  const acc = new Float64Array(cols * r);
  for (let i = 0; i < rows; i++) {
    const mo = i * cols;
    const po = i * r;
    for (let c = 0; c < cols; c++) {
      const v = m[mo + c];
      if (v === 0) continue;
      const ao = c * r;
      for (let j = 0; j < r; j++) acc[ao + j] += v * p[po + j];
    }
  }
  for (let k = 0; k < acc.length; k++) out[k] = acc[k];
}

/** Element (i, c) of P . Q^T, with P rows x r and Q cols x r (row-major); float64. */
export function lowRankEntry(p: Float32Array, q: Float32Array, r: number, i: number, c: number): number {
  let s = 0;
  const po = i * r;
  const qo = c * r;
  for (let j = 0; j < r; j++) s += p[po + j] * q[qo + j];
  return s;
}

/**
 * Orthonormalises the r columns of P (rows x r, row-major) in place by modified Gram-Schmidt in float64, with a
 * second pass for stability. A column left with less than `dropTolerance` of its norm after removing the earlier
 * columns is linearly dependent on them (up to float32 rounding) and becomes zero, so P^T P is the identity on the
 * nonzero columns and P P^T a projection even when r exceeds the rank of P.
 */
export function orthonormalizeColumns(p: Float32Array, rows: number, r: number, dropTolerance = 1e-5): void {
  checkSize("P", p, rows * r);
  const a = Float64Array.from(p);
  const keep = new Uint8Array(r);
  for (let j = 0; j < r; j++) {
    let norm0 = 0;
    for (let i = 0; i < rows; i++) norm0 += a[i * r + j] * a[i * r + j];
    norm0 = Math.sqrt(norm0);
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < j; k++) {
        if (keep[k] === 0) continue;
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += a[i * r + k] * a[i * r + j];
        for (let i = 0; i < rows; i++) a[i * r + j] -= dot * a[i * r + k];
      }
    }
    let norm = 0;
    for (let i = 0; i < rows; i++) norm += a[i * r + j] * a[i * r + j];
    norm = Math.sqrt(norm);
    if (!Number.isFinite(norm)) {
      // NaN/Inf gradients: let them through so the trainer's finite-norm check stops the step.
      keep[j] = 1;
      continue;
    }
    if (norm0 === 0 || norm <= dropTolerance * norm0) {
      for (let i = 0; i < rows; i++) a[i * r + j] = 0;
      continue;
    }
    keep[j] = 1;
    for (let i = 0; i < rows; i++) a[i * r + j] /= norm;
  }
  for (let k = 0; k < a.length; k++) p[k] = a[k];
}

/** Deterministic standard-normal numbers (xorshift32 + Box-Muller), the same sequence for the same seed everywhere. */
export function fillNormal(out: Float32Array, seed: number, start = 0, stride = 1): void {
  let s = (seed >>> 0) || 0x9e3779b9;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 4294967297; // (0, 1)
  };
  for (let k = start; k < out.length; k += stride) {
    out[k] = Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
  }
}

/** FNV-1a hash of a string (seeds per tensor name). */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function checkSize(what: string, a: Float32Array, n: number): void {
  if (a.length !== n) throw new Error(`linalg: ${what} has ${a.length} elements, expected ${n}`);
}
