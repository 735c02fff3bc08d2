import type { RunConfig } from "./schema";
import { bertConfig, type BertConfig } from "../model/config";
import type { LrSchedule } from "../train/schedule";

/** The model shape a run config asks for, with the vocabulary size of its tokenizer. */
export function modelConfigOf(cfg: RunConfig, vocabSize: number): BertConfig {
  const m = cfg.model;
  if (m === undefined) throw new Error("the run config has no `model` section (task: classification takes the shape from finetune.base_model)");
  const shape = m.preset ?? {};
  const overrides: Partial<BertConfig> = {
    maxPositionEmbeddings: m.max_position_embeddings,
    hiddenDropoutProb: m.hidden_dropout,
    attentionProbsDropoutProb: m.attention_dropout,
  };
  if (m.hidden_size !== undefined) overrides.hiddenSize = m.hidden_size;
  if (m.num_layers !== undefined) overrides.numHiddenLayers = m.num_layers;
  if (m.num_heads !== undefined) overrides.numAttentionHeads = m.num_heads;
  const hidden = overrides.hiddenSize;
  if (m.intermediate_size !== undefined) overrides.intermediateSize = m.intermediate_size;
  else if (hidden !== undefined) overrides.intermediateSize = 4 * hidden;
  if (cfg.objective === "causal") overrides.isDecoder = true;
  return bertConfig(shape, vocabSize, overrides);
}

/** The learning-rate schedule of a run config. */
export function scheduleOf(cfg: RunConfig): LrSchedule {
  return {
    peakLr: cfg.optimizer.lr,
    warmupSteps: cfg.schedule.warmup_steps,
    totalSteps: cfg.training.max_steps,
    decay: cfg.schedule.decay,
    minLrRatio: cfg.schedule.min_lr_ratio,
  };
}
