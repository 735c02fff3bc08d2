import type { BertTokenizer } from "../tokenizer/bert-tokenizer";
import type { Batch } from "./batch";
import { makeCausalBatch } from "./causal";
import { makeMlmBatch, type MlmOptions } from "./masking";
import { makeNspBatch, type NspCorpus } from "./nsp";
import type { PackedSequences } from "./packed";

/** Masking options without the epoch, which every step supplies. */
export type MaskSettings = Omit<MlmOptions, "epoch">;

/**
 * Masking settings for a tokenizer's vocabulary: all five specials are never masked nor drawn as random
 * replacements; [MASK] and [PAD] ids by name.
 */
export function maskSettingsFor(
  tokenizer: BertTokenizer,
  seed: number,
  extra: { mlmProbability?: number; wholeWordMask?: boolean } = {},
): MaskSettings {
  const sp = tokenizer.specialIds;
  return {
    seed,
    vocabSize: tokenizer.vocabSize,
    specialIds: [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask],
    maskId: sp.mask,
    padId: sp.pad,
    ...extra,
  };
}

/** What a batch is built for, with the data it is built from. */
export type Objective =
  | { kind: "mlm"; data: PackedSequences; mask: MaskSettings }
  | { kind: "causal"; data: PackedSequences }
  | { kind: "nsp"; data: NspCorpus; mask: MaskSettings };

/** One step's work: the epoch (for the masks) and the global sequence indices of the batch. */
export interface StepPlan {
  /** One epoch for all rows, or one per row. */
  epoch: number | ArrayLike<number>;
  indices: ArrayLike<number>;
}

/** Builds the batch of one step for an objective (the same function runs in the worker threads). */
export function buildBatch(objective: Objective, step: StepPlan): Batch {
  switch (objective.kind) {
    case "mlm":
      return makeMlmBatch(objective.data, step.indices, { ...objective.mask, epoch: step.epoch });
    case "causal":
      return makeCausalBatch(objective.data, step.indices);
    case "nsp":
      return makeNspBatch(objective.data, step.indices, { ...objective.mask, epoch: step.epoch });
  }
}

/** Number of sequences (or NSP samples) an objective's data offers per epoch. */
export function objectiveSize(objective: Objective): number {
  return objective.data.count;
}
