/** GELU in BERT's exact (erf) form, with a hand-written gradient. */
import * as tf from "@tensorflow/tfjs";
import { GELU_KERNEL, fusedKernelsAvailable, runFused } from "../../backend/fused-kernels";
import { customOp } from "./custom-op";

const SQRT_HALF = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/**
 * gelu(x) = x * Phi(x), Phi(x) = 0.5 * (1 + erf(x / sqrt 2)); gelu'(x) = Phi(x) + x * phi(x).
 * Built from core ops (Erf, Exp): runs on every backend.
 */
export function geluOps(x: tf.Tensor): tf.Tensor {
  const op = customOp(([xi], save) => {
    const cdf = tf.mul(0.5, tf.add(1, tf.erf(tf.mul(xi, SQRT_HALF))));
    save([xi, cdf]);
    return {
      value: tf.mul(xi, cdf),
      gradFunc: (dy, [sx, scdf]) => {
        const pdf = tf.mul(INV_SQRT_2PI, tf.exp(tf.mul(-0.5, tf.square(sx))));
        return [tf.mul(dy, tf.add(scdf, tf.mul(sx, pdf)))];
      },
    };
  });
  return op(x);
}

/**
 * Same function through the fused kernel, which also returns gelu'(x): backward is one multiply.
 * Only on backends with fused kernels (wasm, cpu).
 */
export function geluFused(x: tf.Tensor): tf.Tensor {
  const op = customOp(([xi], save) => {
    const [y, deriv] = runFused(GELU_KERNEL, { x: xi });
    save([deriv]);
    return { value: y, gradFunc: (dy, [d]) => [tf.mul(dy, d)] };
  });
  return op(x);
}

/** GELU (erf form): the fused kernel where the backend has it, core ops elsewhere. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return fusedKernelsAvailable() ? geluFused(x) : geluOps(x);
}
