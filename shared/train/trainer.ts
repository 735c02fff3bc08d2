/**
 * One data-parallel training step: forward/backward per micro-batch into float32 gradient buffers, reduce across
 * ranks, divide by the GLOBAL target count, clip, AdamW. N ranks with B/N sequences each (rowOffset = their global
 * first sequence) make the same update as 1 rank with B, and k micro-batches of B/k the same as one of B.
 */
import * as tf from "@tensorflow/tfjs";
import type { BertModel } from "../model/bert";
import { assignValues } from "../model/hf";
import { AdamW, type AdamWOptions, type AdamWState } from "./adamw";
import { IGNORE_INDEX, type Batch } from "./batch";
import { clipByGlobalNorm, globalNorm } from "./clip";
import { pretrainingObjective } from "./objective";
import { IdentityReducer, type GradientReducer, type NamedGradient } from "./reducer";
import { lrAt, type LrSchedule } from "./schedule";

export interface TrainerOptions {
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
}

/** Counter slots reduced with the gradients. */
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
export class Trainer {
  readonly model: BertModel;
  readonly options: TrainerOptions;
  readonly reducer: GradientReducer;
  readonly optimizer: AdamW;
  /** Gradient accumulation buffers, one per parameter in registration order (what goes to the reducer). */
  readonly grads: NamedGradient[];
  /** Reduced alongside the gradients; slots in COUNTERS. */
  readonly counters = new Float32Array(NUM_COUNTERS);
  /** Number of updates applied so far. */
  step = 0;
  /** Parameters that received a gradient since the last update (torch skips the others in AdamW). */
  private readonly touched = new Set<string>();

  constructor(model: BertModel, options: TrainerOptions, reducer: GradientReducer = new IdentityReducer()) {
    this.model = model;
    this.options = options;
    this.reducer = reducer;
    this.optimizer = new AdamW(options.adamw);
    this.grads = model.specs.map((s) => ({ name: s.name, data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) }));
  }

  /**
   * Forward + backward of one micro-batch; adds d(sum of losses)/d(param) into the gradient buffers and the counts
   * into the counters. rowOffset is the global index of the batch's first sequence (for dropout masks).
   */
  accumulate(batch: Batch, rowOffset = 0): MicroBatchStats {
    const vars = this.model.variables();
    const stats: MicroBatchStats = { mlmLossSum: 0, mlmTargets: 0, nspLossSum: 0, nspTargets: 0 };
    const hasNsp = this.model.hasNsp && batch.nspLabels !== undefined;
    // Nothing to learn from (e.g. one rank's share without masked tokens): contributes zeros, no backward pass.
    if (!hasNsp && batch.mlmLabels.every((y) => y === IGNORE_INDEX)) return stats;
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const parts = pretrainingObjective(
          this.model,
          batch,
          { training: true, dropoutSeed: this.options.dropoutSeed ?? 0, step: this.step, rowOffset, dropoutRate: this.options.dropoutRate },
          this.options.nspWeight ?? 1,
        );
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
    if (!(targets > 0)) throw new Error(`step ${this.step}: the global batch has no MLM targets (every label is -100)`);
    const inv = 1 / targets;
    for (const g of this.grads) {
      const d = g.data;
      for (let j = 0; j < d.length; j++) d[j] *= inv;
    }
    const maxNorm = this.options.maxGradNorm ?? 0;
    const gradNorm = maxNorm > 0 ? clipByGlobalNorm(this.grads, maxNorm) : globalNorm(this.grads);
    if (!Number.isFinite(gradNorm)) throw new Error(`step ${this.step}: gradient norm is ${gradNorm}; refusing to apply the update`);
    const lr = lrAt(this.options.schedule, this.step);
    this.model.specs.forEach((s, i) => {
      if (!this.touched.has(s.name)) return;
      const v = this.model.param(s.name);
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
  async trainStep(microBatches: readonly Batch[], rowOffsets?: readonly number[]): Promise<StepResult> {
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
    const names = new Set(this.model.specs.map((s) => s.name));
    for (const key of state.tensors.keys()) {
      const name = key.replace(/\.(exp_avg|exp_avg_sq|step)$/, "");
      if (!names.has(name)) throw new Error(`optimizer state entry '${key}' names no parameter of this model`);
    }
    this.optimizer.setState(state);
    this.step = state.step;
  }
}
