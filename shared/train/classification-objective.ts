/** Sequence classification as a TrainObjective: cross-entropy of the class logits, SUMMED over sequences. */
import * as tf from "@tensorflow/tfjs";
import { softmaxCrossEntropySum } from "../model/ops/cross-entropy";
import type { ClassificationBatch } from "../data/labelled";
import type { PeftClassifier } from "../peft/classifier";
import type { TrainObjective } from "./trainer";

/**
 * The classification objective of a classifier. The summed loss is divided later by the GLOBAL number of labelled
 * sequences (the reducer sums the counts), so N ranks with B/N sequences update exactly as 1 rank with B.
 */
export function classificationObjective(model: PeftClassifier): TrainObjective<ClassificationBatch> {
  return {
    targetName: "labelled",
    targets: (batch) => batch.batchSize,
    build: (batch, fwd) => {
      if (batch.labels.length !== batch.batchSize) throw new Error(`labels has ${batch.labels.length} entries, expected ${batch.batchSize}`);
      const sum = softmaxCrossEntropySum(model.logits(batch, fwd), batch.labels);
      return { total: sum, mlmSum: sum, nspSum: null, mlmTargets: batch.batchSize, nspTargets: 0 };
    },
  };
}

/** Loss sum and confusion counts of one batch, dropout off. confusion[true * classes + predicted] += 1. */
export function evaluateClassification(model: PeftClassifier, batch: ClassificationBatch, confusion: Float64Array): { lossSum: number; correct: number } {
  const classes = model.settings.numLabels;
  if (confusion.length !== classes * classes) throw new Error(`confusion matrix has ${confusion.length} cells, expected ${classes * classes}`);
  if (batch.batchSize === 0) return { lossSum: 0, correct: 0 };
  let lossSum = 0;
  let predicted: Int32Array = new Int32Array(0);
  tf.tidy(() => {
    const logits = model.logits(batch, { training: false });
    lossSum = softmaxCrossEntropySum(logits, batch.labels).dataSync()[0];
    predicted = tf.argMax(logits, -1).dataSync() as Int32Array;
  });
  let correct = 0;
  for (let i = 0; i < batch.batchSize; i++) {
    confusion[batch.labels[i] * classes + predicted[i]] += 1;
    if (predicted[i] === batch.labels[i]) correct++;
  }
  return { lossSum, correct };
}
