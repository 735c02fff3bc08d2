/** Evaluation: MLM loss / perplexity / masked-token accuracy, and fill-mask predictions. */
import * as tf from "@tensorflow/tfjs";
import { BertModel, encode, maskedPositions, mlmLogits } from "../model/bert";
import { softmaxCrossEntropySum } from "../model/ops/cross-entropy";
import type { Batch } from "./batch";

export interface MlmEval {
  lossSum: number;
  numTargets: number;
  correct: number;
  /** Mean loss per target (NaN without targets). */
  loss: number;
  perplexity: number;
  accuracy: number;
}

/** MLM metrics on one batch, dropout off. Sums are returned too so batches can be combined exactly. */
export function evaluateMlm(model: BertModel, batch: Batch): MlmEval {
  const { positions, labels } = maskedPositions(batch.mlmLabels, model.config.vocabSize);
  if (positions.length === 0) return { lossSum: 0, numTargets: 0, correct: 0, loss: NaN, perplexity: NaN, accuracy: NaN };
  const [lossSum, correct] = tf.tidy(() => {
    const logits = mlmLogits(model, encode(model, batch, { training: false }), positions);
    const y = tf.tensor1d(labels, "int32");
    const loss = softmaxCrossEntropySum(logits, labels).dataSync()[0];
    const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), y), "int32")).dataSync()[0];
    return [loss, hits];
  });
  const loss = lossSum / positions.length;
  return { lossSum, numTargets: positions.length, correct, loss, perplexity: Math.exp(loss), accuracy: correct / positions.length };
}

/** Candidates for one position to fill. */
export interface MaskPrediction {
  sequence: number;
  position: number;
  candidates: { tokenId: number; prob: number }[];
}

/**
 * Top-k tokens for positions to fill: those holding maskTokenId when given, else those with mlmLabels != -100.
 * Probabilities are softmax over the whole vocabulary.
 */
export function predictMasked(model: BertModel, batch: Batch, topK: number, maskTokenId?: number): MaskPrediction[] {
  if (!Number.isInteger(topK) || topK < 1 || topK > model.config.vocabSize) throw new Error(`topK must be in [1, ${model.config.vocabSize}], got ${topK}`);
  let positions: Int32Array;
  if (maskTokenId !== undefined) {
    const list: number[] = [];
    batch.inputIds.forEach((id, i) => {
      if (id === maskTokenId) list.push(i);
    });
    positions = Int32Array.from(list);
  } else {
    positions = maskedPositions(batch.mlmLabels, model.config.vocabSize).positions;
  }
  if (positions.length === 0) return [];
  let values: Float32Array = new Float32Array(0);
  let indices: Int32Array = new Int32Array(0);
  tf.tidy(() => {
    const probs = tf.softmax(mlmLogits(model, encode(model, batch, { training: false }), positions));
    const top = tf.topk(probs, topK);
    // Assigned, not returned: tidy would walk a returned typed array element by element.
    values = top.values.dataSync() as Float32Array;
    indices = top.indices.dataSync() as Int32Array;
  });
  return Array.from(positions, (p, r) => ({
    sequence: Math.floor(p / batch.seqLen),
    position: p % batch.seqLen,
    candidates: Array.from({ length: topK }, (_, j) => ({ tokenId: indices[r * topK + j], prob: values[r * topK + j] })),
  }));
}
