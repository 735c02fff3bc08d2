/**
 * BertConfig <-> Hugging Face `config.json` (snake_case BertConfig fields), so a saved checkpoint directory
 * loads with `BertForMaskedLM.from_pretrained(dir)`.
 */
import { z } from "zod";
import type { BertConfig } from "../model/config";

const posInt = z.number().int().positive();
const prob = z.number().min(0).lt(1);

/** The HF config.json fields we write and require on read; other fields in the file are ignored. */
const HfBertConfigSchema = z.object({
  architectures: z.array(z.string()).optional(),
  model_type: z.literal("bert"),
  vocab_size: posInt,
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  intermediate_size: posInt,
  // The model implements exact (erf) GELU, which is HF's "gelu"; other activations cannot be honoured.
  hidden_act: z.literal("gelu"),
  hidden_dropout_prob: prob,
  attention_probs_dropout_prob: prob,
  max_position_embeddings: posInt,
  type_vocab_size: posInt,
  initializer_range: z.number().positive(),
  layer_norm_eps: z.number().positive(),
  pad_token_id: z.number().int().nonnegative(),
  is_decoder: z.boolean().optional(),
});

export type HfBertConfigJson = z.infer<typeof HfBertConfigSchema>;

/** Converts our config to HF config.json form; throws naming the field if the config is invalid. */
export function hfConfigFromBert(config: BertConfig, padTokenId = 0): HfBertConfigJson {
  const json: HfBertConfigJson = {
    architectures: ["BertForMaskedLM"],
    model_type: "bert",
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    num_hidden_layers: config.numHiddenLayers,
    num_attention_heads: config.numAttentionHeads,
    intermediate_size: config.intermediateSize,
    hidden_act: "gelu",
    hidden_dropout_prob: config.hiddenDropoutProb,
    attention_probs_dropout_prob: config.attentionProbsDropoutProb,
    max_position_embeddings: config.maxPositionEmbeddings,
    type_vocab_size: config.typeVocabSize,
    initializer_range: config.initializerRange,
    layer_norm_eps: config.layerNormEps,
    pad_token_id: padTokenId,
  };
  if (config.isDecoder === true) {
    json.is_decoder = true;
    json.architectures = ["BertLMHeadModel"];
  }
  return checked(json, "BertConfig");
}

/** Parses HF config.json content (already JSON-decoded) into our config plus the pad token id; `source` names it in errors. */
export function bertConfigFromHf(json: unknown, source: string): { config: BertConfig; padTokenId: number } {
  const c = checked(json, source);
  return {
    config: {
      vocabSize: c.vocab_size,
      hiddenSize: c.hidden_size,
      numHiddenLayers: c.num_hidden_layers,
      numAttentionHeads: c.num_attention_heads,
      intermediateSize: c.intermediate_size,
      maxPositionEmbeddings: c.max_position_embeddings,
      typeVocabSize: c.type_vocab_size,
      hiddenDropoutProb: c.hidden_dropout_prob,
      attentionProbsDropoutProb: c.attention_probs_dropout_prob,
      layerNormEps: c.layer_norm_eps,
      initializerRange: c.initializer_range,
      ...(c.is_decoder === true ? { isDecoder: true } : {}),
    },
    padTokenId: c.pad_token_id,
  };
}

function checked(json: unknown, source: string): HfBertConfigJson {
  const r = HfBertConfigSchema.safeParse(json);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new Error(`${source}: invalid BERT config: ${problems}`);
  }
  const c = r.data;
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new Error(`${source}: invalid BERT config: hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads}`);
  }
  return c;
}
