/** LayerNorm over the last axis, with a hand-written gradient (autodiff of the composite costs ~3x more ops). */
import * as tf from "@tensorflow/tfjs";
import { LAYER_NORM_GRAD_KERNEL, LAYER_NORM_KERNEL, fusedKernelsAvailable, runFused } from "../../backend/fused-kernels";
import { customOp } from "./custom-op";

/**
 * y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis of x [rows, hidden] (biased variance, as torch).
 * Backward: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = dy * gamma;
 * dgamma = sum_rows dy * xhat; dbeta = sum_rows dy.
 */
export function layerNormOps(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const op = customOp(([xi, g, b], save) => {
    const mean = tf.mean(xi, -1, true);
    const xc = tf.sub(xi, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(xc, rstd);
    save([xhat, rstd, g]);
    return {
      value: tf.add(tf.mul(xhat, g), b),
      gradFunc: (dy, [sxhat, srstd, sg]) => {
        const dxhat = tf.mul(dy, sg);
        const m1 = tf.mean(dxhat, -1, true);
        const m2 = tf.mean(tf.mul(dxhat, sxhat), -1, true);
        const dx = tf.mul(srstd, tf.sub(tf.sub(dxhat, m1), tf.mul(sxhat, m2)));
        return [dx, tf.sum(tf.mul(dy, sxhat), 0), tf.sum(dy, 0)];
      },
    };
  });
  return op(x, gamma, beta) as tf.Tensor2D;
}

/** The same op through the fused kernels (wasm, cpu): one pass forward, one pass backward. */
export function layerNormFused(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  const op = customOp(([xi, g, b], save) => {
    const [y, xhat, rstd] = runFused(LAYER_NORM_KERNEL, { x: xi, gamma: g, beta: b }, { eps });
    save([xhat, rstd, g]);
    return {
      value: y,
      gradFunc: (dy, [sxhat, srstd, sg]) => runFused(LAYER_NORM_GRAD_KERNEL, { dy, xhat: sxhat, rstd: srstd, gamma: sg }),
    };
  });
  return op(x, gamma, beta) as tf.Tensor2D;
}

/** LayerNorm: fused kernels where the backend has them, core ops elsewhere. */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  return fusedKernelsAvailable() ? layerNormFused(x, gamma, beta, eps) : layerNormOps(x, gamma, beta, eps);
}
