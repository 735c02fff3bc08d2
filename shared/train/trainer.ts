/**
 * One data-parallel training step: forward/backward per micro-batch into float32 gradient buffers, reduce across
 * ranks, divide by the GLOBAL target count, clip, AdamW. N ranks with B/N sequences each (rowOffset = their global
 * first sequence) make the same update as 1 rank with B, and k micro-batches of B/k the same as one of B.
 */
import * as tf from "@tensorflow/tfjs";
import type { BertModel, EncoderInput, ForwardOptions } from "../model/bert";
import { assignValues } from "../model/hf";
import { AdamW, type AdamWOptions, type AdamWState } from "./adamw";
import { IGNORE_INDEX, type Batch } from "./batch";
import { clipByGlobalNorm, globalNorm } from "./clip";
import { pretrainingObjective, type ObjectiveParts } from "./objective";
import { allParams, type TrainableParam } from "./trainable";
import { IdentityReducer, type GradientReducer, type NamedGradient } from "./reducer";
import { lrAt, type LrSchedule } from "./schedule";

/**
 * What a micro-batch is trained on: the number of targets it holds (0: skipped, no backward pass) and the loss
 * whose gradient is taken. `targetName` names the targets in errors ("MLM", "labelled").
 */
export interface TrainObjective<B> {
  targetName: string;
  targets(batch: B): number;
  build(batch: B, fwd: ForwardOptions): ObjectiveParts;
}

/** Options of a Trainer. */
export interface TrainerOptions<B extends EncoderInput = Batch> {
  schedule: LrSchedule;
  adamw?: Partial<AdamWOptions>;
  /** Clip the global gradient norm to this value; 0 or absent: no clipping. */
  maxGradNorm?: number;
  /** Seed of the dropout masks (with step and global sequence index). Default 0. */
  dropoutSeed?: number;
  /** Overrides the config's dropout probabilities; 0 switches dropout off. */
  dropoutRate?: number;
  /** Weight of each sequence's NSP loss relative to one masked token (see objective.ts). Default 1. */
  nspWeight?: number;
  /** The parameters to train (only these are differentiated, all-reduced and updated). Default: every model parameter. */
  params?: readonly TrainableParam[];
  /** The loss. Default: the pre-training objective (MLM, + NSP with an NSP head); required when B is not Batch. */
  objective?: TrainObjective<B>;
}

/**
 * Counter slots reduced with the gradients. Slot mlmTargets holds the objective's primary target count (masked
 * tokens; labelled sequences for classification) and mlmLossSum its loss sum.
 */
export const COUNTERS = { mlmTargets: 0, mlmLossSum: 1, nspTargets: 2, nspLossSum: 3 } as const;
const NUM_COUNTERS = 4;

/** What one micro-batch contributed (local, before the reduce). */
export interface MicroBatchStats {
  mlmLossSum: number;
  mlmTargets: number;
  nspLossSum: number;
  nspTargets: number;
}

/** Result of one optimizer step (global figures, after the reduce). */
export interface StepResult {
  /** Index of the update just applied (0-based). */
  step: number;
  lr: number;
  /** Global mean MLM loss per target. */
  mlmLoss: number;
  mlmTargets: number;
  /** Global mean NSP loss per sequence (NaN without NSP). */
  nspLoss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

/** Training state of one rank: gradient buffers, optimizer, step counter. */
export class Trainer<B extends EncoderInput = Batch> {
  readonly model: BertModel;
  readonly options: TrainerOptions<B>;
  /** The parameters trained, in the order their gradients travel. */
  readonly params: readonly TrainableParam[];
  readonly objective: TrainObjective<B>;
  readonly reducer: GradientReducer;
  readonly optimizer: AdamW;
  /** Gradient accumulation buffers, one per trained parameter in `params` order (what goes to the reducer). */
  readonly grads: NamedGradient[];
  /** Reduced alongside the gradients; slots in COUNTERS. */
  readonly counters = new Float32Array(NUM_COUNTERS);
  /** Number of updates applied so far. */
  step = 0;
  /** Parameters that received a gradient since the last update (torch skips the others in AdamW). */
  private readonly touched = new Set<string>();

  constructor(model: BertModel, options: TrainerOptions<B>, reducer: GradientReducer = new IdentityReducer()) {
    this.model = model;
    this.options = options;
    this.reducer = reducer;
    this.optimizer = new AdamW(options.adamw);
    this.params = options.params ?? allParams(model);
    const names = new Set<string>();
    for (const p of this.params) {
      if (names.has(p.name)) throw new Error(`Trainer: parameter '${p.name}' is listed twice`);
      names.add(p.name);
    }
    this.objective = options.objective ?? (pretraining(model, options.nspWeight ?? 1) as unknown as TrainObjective<B>);
    this.grads = this.params.map((s) => ({ name: s.name, data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) }));
  }

  /**
   * Forward + backward of one micro-batch; adds d(sum of losses)/d(param) into the gradient buffers and the counts
   * into the counters. rowOffset is the global index of the batch's first sequence (for dropout masks).
   */
  accumulate(batch: B, rowOffset = 0): MicroBatchStats {
    const vars = this.params.map((p) => p.variable);
    const stats: MicroBatchStats = { mlmLossSum: 0, mlmTargets: 0, nspLossSum: 0, nspTargets: 0 };
    // Nothing to learn from (e.g. one rank's share without masked tokens): contributes zeros, no backward pass.
    if (this.objective.targets(batch) === 0) return stats;
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const parts = this.objective.build(batch, {
          training: true, dropoutSeed: this.options.dropoutSeed ?? 0, step: this.step, rowOffset, dropoutRate: this.options.dropoutRate,
        });
        // Read inside: tensors made in here are freed when the gradient computation returns.
        stats.mlmLossSum = parts.mlmSum.dataSync()[0];
        stats.mlmTargets = parts.mlmTargets;
        stats.nspLossSum = parts.nspSum === null ? 0 : parts.nspSum.dataSync()[0];
        stats.nspTargets = parts.nspTargets;
        return parts.total;
      }, vars);
      this.grads.forEach((buf, i) => {
        const g = grads[vars[i].name];
        if (g === undefined) return; // not on the path to the loss (e.g. pooler without NSP)
        const d = g.dataSync() as Float32Array;
        const acc = buf.data;
        for (let j = 0; j < acc.length; j++) acc[j] += d[j];
        this.touched.add(buf.name);
      });
    });
    this.counters[COUNTERS.mlmTargets] += stats.mlmTargets;
    this.counters[COUNTERS.mlmLossSum] += stats.mlmLossSum;
    this.counters[COUNTERS.nspTargets] += stats.nspTargets;
    this.counters[COUNTERS.nspLossSum] += stats.nspLossSum;
    return stats;
  }

  /** Reduces across ranks, normalises by the global MLM target count, clips, applies AdamW, clears the buffers. */
  async applyUpdate(): Promise<StepResult> {
    await this.reducer.reduce(this.grads, this.counters, this.step);
    const targets = this.counters[COUNTERS.mlmTargets];
    if (!(targets > 0)) throw new Error(`step ${this.step}: the global batch has no ${this.objective.targetName} targets${this.objective.targetName === "MLM" ? " (every label is -100)" : ""}`);
    const inv = 1 / targets;
    for (const g of this.grads) {
      const d = g.data;
      for (let j = 0; j < d.length; j++) d[j] *= inv;
    }
    const maxNorm = this.options.maxGradNorm ?? 0;
    const gradNorm = maxNorm > 0 ? clipByGlobalNorm(this.grads, maxNorm) : globalNorm(this.grads);
    if (!Number.isFinite(gradNorm)) throw new Error(`step ${this.step}: gradient norm is ${gradNorm}; refusing to apply the update`);
    const lr = lrAt(this.options.schedule, this.step);
    this.params.forEach((s, i) => {
      if (!this.touched.has(s.name)) return;
      const v = s.variable;
      const p = Float32Array.from(v.dataSync() as Float32Array);
      this.optimizer.update(s.name, p, this.grads[i].data, lr, s.decay);
      assignValues(v, p, s.shape);
    });
    const result: StepResult = {
      step: this.step,
      lr,
      mlmLoss: this.counters[COUNTERS.mlmLossSum] / targets,
      mlmTargets: targets,
      nspLoss: this.counters[COUNTERS.nspTargets] > 0 ? this.counters[COUNTERS.nspLossSum] / this.counters[COUNTERS.nspTargets] : NaN,
      gradNorm,
    };
    this.zeroGrad();
    this.step++;
    return result;
  }

  /** accumulate() over the micro-batches (global first-sequence indices in rowOffsets), then applyUpdate(). */
  async trainStep(microBatches: readonly B[], rowOffsets?: readonly number[]): Promise<StepResult> {
    if (microBatches.length === 0) throw new Error("trainStep needs at least one micro-batch");
    if (rowOffsets !== undefined && rowOffsets.length !== microBatches.length) {
      throw new Error(`trainStep: ${microBatches.length} micro-batches but ${rowOffsets.length} row offsets`);
    }
    let offset = 0;
    microBatches.forEach((b, i) => {
      this.accumulate(b, rowOffsets?.[i] ?? offset);
      offset += b.batchSize;
    });
    return this.applyUpdate();
  }

  /** Clears gradient buffers and counters. */
  zeroGrad(): void {
    for (const g of this.grads) g.data.fill(0);
    this.counters.fill(0);
    this.touched.clear();
  }

  /** Optimizer moments and step counts by name, plus the trainer's step, for checkpoints. */
  getOptimizerState(): AdamWState {
    const s = this.optimizer.getState();
    return { step: this.step, tensors: s.tensors };
  }

  /** Restores getOptimizerState()'s output. */
  setOptimizerState(state: AdamWState): void {
    const names = new Set(this.params.map((s) => s.name));
    for (const key of state.tensors.keys()) {
      const name = key.replace(/\.(exp_avg|exp_avg_sq|step)$/, "");
      if (!names.has(name)) throw new Error(`optimizer state entry '${key}' names no parameter of this model that trains`);
    }
    this.optimizer.setState(state);
    this.step = state.step;
  }
}

/** The pre-training objective as a TrainObjective: MLM (+ NSP when the model has the head and the batch labels). */
function pretraining(model: BertModel, nspWeight: number): TrainObjective<Batch> {
  return {
    targetName: "MLM",
    targets: (batch) => {
      if (model.hasNsp && batch.nspLabels !== undefined) return batch.batchSize;
      let n = 0;
      for (const y of batch.mlmLabels) if (y !== IGNORE_INDEX) n++;
      return n;
    },
    build: (batch, fwd) => pretrainingObjective(model, batch, fwd, nspWeight),
  };
}
