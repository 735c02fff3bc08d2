/**
 * Shape of a BERT-style encoder. Field names follow HF's BertConfig (camel-cased here; the checkpoint
 * writer maps them to HF's snake_case config.json).
 */
export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  typeVocabSize: number;
  hiddenDropoutProb: number;
  attentionProbsDropoutProb: number;
  layerNormEps: number;
  initializerRange: number;
  /** Causal self-attention (each position sees only itself and earlier ones), as HF's is_decoder: GPT-style LM. */
  isDecoder?: boolean;
}

/** Turc et al. (2019) compact BERT shapes: layers / hidden / heads; intermediate = 4 x hidden. */
export const BERT_PRESETS = {
  "bert-tiny": { numHiddenLayers: 2, hiddenSize: 128, numAttentionHeads: 2 },
  "bert-mini": { numHiddenLayers: 4, hiddenSize: 256, numAttentionHeads: 4 },
  "bert-small": { numHiddenLayers: 4, hiddenSize: 512, numAttentionHeads: 8 },
  "bert-medium": { numHiddenLayers: 8, hiddenSize: 512, numAttentionHeads: 8 },
  "bert-base": { numHiddenLayers: 12, hiddenSize: 768, numAttentionHeads: 12 },
} as const;

export type BertPresetName = keyof typeof BERT_PRESETS;

/** Builds a full config from a preset name (or a custom shape) plus the vocabulary size. */
export function bertConfig(
  shape: BertPresetName | Partial<BertConfig>,
  vocabSize: number,
  overrides: Partial<BertConfig> = {},
): BertConfig {
  const base = typeof shape === "string" ? BERT_PRESETS[shape] : shape;
  if (base === undefined) throw new Error(`unknown model preset '${String(shape)}'; known: ${Object.keys(BERT_PRESETS).join(", ")}`);
  const hiddenSize = base.hiddenSize ?? 128;
  const cfg: BertConfig = {
    vocabSize,
    hiddenSize,
    numHiddenLayers: base.numHiddenLayers ?? 2,
    numAttentionHeads: base.numAttentionHeads ?? 2,
    intermediateSize: ("intermediateSize" in base && base.intermediateSize) || 4 * hiddenSize,
    maxPositionEmbeddings: 512,
    typeVocabSize: 2,
    hiddenDropoutProb: 0.1,
    attentionProbsDropoutProb: 0.1,
    layerNormEps: 1e-12,
    initializerRange: 0.02,
    ...overrides,
  };
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) {
    throw new Error(`hiddenSize ${cfg.hiddenSize} is not divisible by numAttentionHeads ${cfg.numAttentionHeads}`);
  }
  return cfg;
}
