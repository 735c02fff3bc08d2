/** Shared fixtures of the model / train / backend tests: tiny configs and synthetic MLM batches. */
import { Rng } from "../../shared/rng";
import { bertConfig, type BertConfig } from "../../shared/model/config";
import type { Batch } from "../../shared/train/batch";
import * as tf from "@tensorflow/tfjs";
import type { PeftClassifier } from "../../shared/peft/classifier";
import type { ClassificationBatch } from "../../shared/data/labelled";

/** A tiny BERT for fast tests (custom shape). */
export function tinyConfig(overrides: Partial<BertConfig> = {}): BertConfig {
  return bertConfig({ hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 32 }, 40, {
    maxPositionEmbeddings: 16,
    ...overrides,
  });
}

/**
 * A random MLM batch: ids in [2, vocab), ~maskRate of positions masked (id 1, label = original id), the last
 * `padding` positions of every odd row padded (mask 0, label -100), second half of each row segment 1.
 * Every row has at least one target.
 */
export function randomBatch(cfg: BertConfig, batchSize: number, seqLen: number, seed: number, maskRate = 0.3, padding = 0): Batch {
  const rng = new Rng(seed);
  const n = batchSize * seqLen;
  const inputIds = new Int32Array(n);
  const tokenTypeIds = new Int32Array(n);
  const attentionMask = new Int32Array(n).fill(1);
  const mlmLabels = new Int32Array(n).fill(-100);
  for (let b = 0; b < batchSize; b++) {
    const valid = b % 2 === 1 ? seqLen - padding : seqLen;
    let targets = 0;
    for (let t = 0; t < seqLen; t++) {
      const i = b * seqLen + t;
      tokenTypeIds[i] = t >= seqLen / 2 ? 1 : 0;
      if (t >= valid) {
        attentionMask[i] = 0;
        inputIds[i] = 0;
        continue;
      }
      inputIds[i] = 2 + rng.int(cfg.vocabSize - 2);
      if (t > 0 && (rng.next() < maskRate || (targets === 0 && t === valid - 1))) {
        mlmLabels[i] = inputIds[i];
        inputIds[i] = 1;
        targets++;
      }
    }
  }
  return { batchSize, seqLen, inputIds, tokenTypeIds, attentionMask, mlmLabels };
}

/** Rows [from, from + count) of a batch, as their own batch. */
export function sliceBatch(b: Batch, from: number, count: number): Batch {
  const s = b.seqLen;
  const cut = (a: Int32Array): Int32Array => a.slice(from * s, (from + count) * s);
  return {
    batchSize: count,
    seqLen: s,
    inputIds: cut(b.inputIds),
    tokenTypeIds: cut(b.tokenTypeIds),
    attentionMask: cut(b.attentionMask),
    mlmLabels: cut(b.mlmLabels),
    nspLabels: b.nspLabels?.slice(from, from + count),
  };
}

/** Largest |a - b| / (|a| + |b| + floor) over two arrays of equal length. */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (Math.abs(a[i]) + Math.abs(b[i]) + floor));
  return m;
}

/** max |a - b| divided by max |b|: error relative to the array's scale (robust to entries near zero). */
export function maxScaledDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return s === 0 ? d : d / s;
}

/** Largest |a - b| over two arrays of equal length (asserts the lengths match). */
export function maxAbsDiffOf(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** A classifier's logits for one batch, copied out of the backend ([batch x classes], row-major). */
export function classifierLogits(m: PeftClassifier, b: Omit<ClassificationBatch, "labels">): Float32Array {
  return tf.tidy(() => Float32Array.from(m.logits(b).dataSync() as Float32Array));
}
