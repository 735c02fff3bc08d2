/** A typed wrapper around tf.customGrad for ops with a hand-written gradient. */
import * as tf from "@tensorflow/tfjs";

/** Forward of a custom op: computes the value from its inputs and returns the gradient function. */
export type CustomOpForward = (
  inputs: tf.Tensor[],
  save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/** Builds an op whose gradient (one tensor per input) comes from `forward`'s gradFunc instead of autodiff. */
export function customOp(forward: CustomOpForward): (...inputs: tf.Tensor[]) => tf.Tensor {
  const g = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return forward(args.slice(0, -1) as tf.Tensor[], save);
  });
  return (...inputs: tf.Tensor[]) => g(...inputs);
}
