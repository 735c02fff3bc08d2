/** The pre-training objective of one micro-batch: MLM cross-entropy SUMMED over targets (+ optional NSP). */
import * as tf from "@tensorflow/tfjs";
import { BertModel, encode, maskedPositions, mlmLogits, nspLogits, pooledOutput, type ForwardOptions } from "../model/bert";
import { softmaxCrossEntropySum } from "../model/ops/cross-entropy";
import type { Batch } from "./batch";

/** Tensors of one objective evaluation (scalars), and the target counts. */
export interface ObjectiveParts {
  /** mlmSum + nspWeight * nspSum: the value whose gradient is taken (the Trainer divides it by the global MLM count). */
  total: tf.Scalar;
  mlmSum: tf.Scalar;
  nspSum: tf.Scalar | null;
  mlmTargets: number;
  nspTargets: number;
}

/**
 * Builds the objective for a batch. With an NSP head and nspLabels, each sequence adds nspWeight * its NSP
 * cross-entropy. The update later divides the whole sum by the global MLM target count M; with nspWeight = M / S
 * (S: the global batch's NSP sequences, which the Trainer learns before the step's first backward pass) that gives
 * HF BertForPreTraining's loss, MLM mean + NSP mean, exactly for any split over ranks and micro-batches.
 */
export function pretrainingObjective(model: BertModel, batch: Batch, fwd: ForwardOptions, nspWeight: number): ObjectiveParts {
  const n = batch.batchSize * batch.seqLen;
  if (batch.mlmLabels.length !== n) throw new Error(`mlmLabels has ${batch.mlmLabels.length} entries, expected ${n}`);
  const { positions, labels } = maskedPositions(batch.mlmLabels, model.config.vocabSize);
  const hidden = encode(model, batch, fwd);
  let mlmSum: tf.Scalar = tf.scalar(0);
  if (positions.length > 0) mlmSum = softmaxCrossEntropySum(mlmLogits(model, hidden, positions), labels);
  let nspSum: tf.Scalar | null = null;
  let nspTargets = 0;
  if (model.hasNsp && batch.nspLabels !== undefined) {
    if (batch.nspLabels.length !== batch.batchSize) throw new Error(`nspLabels has ${batch.nspLabels.length} entries, expected ${batch.batchSize}`);
    for (const y of batch.nspLabels) if (y !== 0 && y !== 1) throw new Error(`nspLabels must be 0 or 1, got ${y}`);
    const logits = nspLogits(model, pooledOutput(model, hidden, batch.batchSize, batch.seqLen));
    nspSum = softmaxCrossEntropySum(logits, batch.nspLabels);
    nspTargets = batch.batchSize;
  }
  const total = nspSum === null ? mlmSum : tf.add(mlmSum, tf.mul(nspSum, nspWeight));
  return { total: total as tf.Scalar, mlmSum, nspSum, mlmTargets: positions.length, nspTargets };
}
