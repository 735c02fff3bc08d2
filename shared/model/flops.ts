import type { BertConfig } from "./config";

/**
 * Model FLOPs of one training step (forward + backward = 3x forward) of a BERT encoder with the MLM head,
 * as in the PaLM appendix: 6 FLOPs per parameter per token for the matmuls of the encoder, 12·L·H·S per
 * token for attention scores and mixing, and the vocabulary projection only for the target positions
 * (the head is computed on masked positions alone). Embedding lookups, LayerNorm and softmax are not counted.
 */
export function trainingFlops(cfg: BertConfig, tokens: number, seqLen: number, targets: number): number {
  const H = cfg.hiddenSize;
  const perLayer = 4 * H * H + 2 * H * cfg.intermediateSize; // QKV + output projection, feed-forward
  const encoderMatmulParams = cfg.numHiddenLayers * perLayer + H * H; // + MLM transform dense
  const attention = 12 * cfg.numHiddenLayers * H * seqLen;
  return tokens * (6 * encoderMatmulParams + attention) + targets * 6 * H * cfg.vocabSize;
}
