/** Global-norm gradient clipping over named float32 buffers. */
import type { NamedGradient } from "./reducer";

/** L2 norm over all buffers together, accumulated in float64. */
export function globalNorm(grads: readonly NamedGradient[]): number {
  let s = 0;
  for (const g of grads) {
    const d = g.data;
    for (let i = 0; i < d.length; i++) s += d[i] * d[i];
  }
  return Math.sqrt(s);
}

/**
 * Scales all buffers in place so their global norm is at most maxNorm (torch.nn.utils.clip_grad_norm_: factor
 * maxNorm / (norm + 1e-6), applied only when < 1). Returns the norm before clipping.
 */
export function clipByGlobalNorm(grads: readonly NamedGradient[], maxNorm: number): number {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: maxNorm must be > 0, got ${maxNorm}`);
  const norm = globalNorm(grads);
  const f = maxNorm / (norm + 1e-6);
  if (f < 1) {
    for (const g of grads) {
      const d = g.data;
      for (let i = 0; i < d.length; i++) d[i] *= f;
    }
  }
  return norm;
}
