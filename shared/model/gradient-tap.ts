/**
 * Gradient taps: an identity op whose gradient reports each contribution to a parameter's gradient the moment
 * the backward pass produces it (what PyTorch DDP's autograd hooks do). The trainer uses it to hand each
 * finished gradient to the all-reduce while the backward pass of the layers below is still running.
 *
 * Forward code reads parameters through readParam(); outside withGradientTap() that is the variable itself, at
 * no cost. Inside, each read of a watched variable is counted (a tied weight is read twice) and routed through
 * the identity op, whose gradient function passes dy on unchanged after calling the tap.
 */
import * as tf from "@tensorflow/tfjs";

/** Receives the uses and gradient contributions of the variables it watches during one forward/backward pass. */
export interface GradientTap {
  /** Whether reads of `v` are observed (e.g. the trainer's trainable parameters). */
  watches(v: tf.Variable): boolean;
  /** Forward: `v` was read once more. */
  onUse(v: tf.Variable): void;
  /** Backward: the gradient of the loss through one read of `v` (shape of v). Called synchronously, in backward order. */
  onGradient(v: tf.Variable, dy: tf.Tensor): void;
}

let active: GradientTap | null = null;

/** `v` for use in a forward pass: through the active tap's identity op if it watches `v`, else `v` itself. */
export function readParam(v: tf.Variable): tf.Tensor {
  const tap = active;
  if (tap === null || !tap.watches(v)) return v;
  tap.onUse(v);
  const tapped = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    // clone shares x's data: no copy, and backends that cache packed weights by data see the same weights
    value: tf.clone(args[0] as tf.Tensor),
    gradFunc: (dy: tf.Tensor | tf.Tensor[]) => {
      const g = Array.isArray(dy) ? dy[0] : dy;
      tap.onGradient(v, g);
      return g;
    },
  }));
  return tapped(v);
}

/** Runs `f` (which builds the forward pass) with `tap` observing parameter reads; the gradient callbacks fire later, in the backward pass. */
export function withGradientTap<T>(tap: GradientTap, f: () => T): T {
  const previous = active;
  active = tap;
  try {
    return f();
  } finally {
    active = previous;
  }
}
