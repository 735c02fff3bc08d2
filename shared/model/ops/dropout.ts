/** Seedable dropout whose masks depend on (seed, step, site, global row), never on the rank or the backend. */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../../rng";

/** What decides a dropout mask. Rows are numbered globally so N ranks with B/N rows draw what 1 rank with B draws. */
export interface DropoutKey {
  seed: number;
  step: number;
  /** Identifies the dropout site in the network (e.g. layer * 8 + position). */
  site: number;
  /** Global index of the first sequence of this micro-batch. */
  rowOffset: number;
}

/**
 * Inverted dropout: zeroes each element with probability `rate` and scales the rest by 1/(1-rate).
 * x holds `sequences` equal consecutive blocks (one per sequence, e.g. [B*T, H] rows in sequence order);
 * each sequence's block of the mask comes from its own Rng(seed, step, site, rowOffset + sequence).
 */
export function dropout(x: tf.Tensor, rate: number, key: DropoutKey, sequences: number): tf.Tensor {
  if (rate <= 0) return x;
  if (rate >= 1) throw new Error(`dropout rate must be < 1, got ${rate}`);
  if (x.size % sequences !== 0) throw new Error(`dropout: tensor of ${x.size} elements does not split into ${sequences} sequences`);
  const rows = sequences;
  const perRow = x.size / rows;
  const mask = new Float32Array(x.size);
  const keep = 1 / (1 - rate);
  const threshold = rate * 4294967296;
  for (let r = 0; r < rows; r++) {
    const rng = new Rng(key.seed, key.step, key.site, key.rowOffset + r);
    const base = r * perRow;
    for (let i = 0; i < perRow; i++) mask[base + i] = rng.nextUint32() < threshold ? 0 : keep;
  }
  return tf.mul(x, tf.tensor(mask, x.shape, "float32"));
}
