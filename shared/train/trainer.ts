/**
 * One data-parallel training step: forward/backward per micro-batch into float32 gradient buffers, reduce across
 * ranks, divide by the GLOBAL target count, clip, AdamW. N ranks with B/N sequences each (rowOffset = their global
 * first sequence) make the same update as 1 rank with B, and k micro-batches of B/k the same as one of B. With
 * MLM + NSP the NSP sum is weighted by the global counts learnt in beginStep, so the update is HF's MLM mean + NSP mean.
 */
import * as tf from "@tensorflow/tfjs";
import type { BertModel, EncoderInput, ForwardOptions } from "../model/bert";
import { assignValues } from "../model/hf";
import { AdamW, type AdamWOptions, type AdamWState } from "./adamw";
import { IGNORE_INDEX, countTargets, type Batch } from "./batch";
import { clipByGlobalNorm, globalNorm } from "./clip";
import { pretrainingObjective, type ObjectiveParts } from "./objective";
import { allParams, type TrainableParam } from "./trainable";
import { IdentityReducer, canOverlap, type GradientReducer, type NamedGradient, type PendingReduction } from "./reducer";
import { withGradientTap, type GradientTap } from "../model/gradient-tap";
import { lrAt, type LrSchedule } from "./schedule";
import { addInto } from "../codecs/float32-sum";

/**
 * What a micro-batch is trained on: the number of targets it holds (0: skipped, no backward pass) and the loss
 * whose gradient is taken. `targetName` names the targets in errors ("MLM", "labelled").
 */
export interface TrainObjective<B> {
  targetName: string;
  targets(batch: B): number;
  /**
   * Objectives that add a second loss averaged over its own targets (NSP: one per sequence) give each micro-batch's
   * primary (MLM) and NSP target counts here. The Trainer then sums both over the global batch before the step's
   * first backward pass (beginStep) and passes build() nspWeight = M / S (global primary / NSP targets), so that
   * the one division by M in applyUpdate yields primary mean + NSP mean. Absent: no NSP term, nspWeight unused.
   */
  stepCounts?(batch: B): { primary: number; nsp: number };
  /** The micro-batch's loss sum (see ObjectiveParts); nspWeight multiplies its NSP sum. */
  build(batch: B, fwd: ForwardOptions, nspWeight: number): ObjectiveParts;
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
  /** The parameters to train (only these are differentiated, all-reduced and updated). Default: every model parameter. */
  params?: readonly TrainableParam[];
  /** The loss. Default: the pre-training objective (MLM, + NSP with an NSP head); required when B is not Batch. */
  objective?: TrainObjective<B>;
  /**
   * Overlap the gradient reduction with the backward pass of the last micro-batch (when the reducer can): each
   * gradient is handed to the reducer the moment the backward pass has produced it, so its bucket can travel
   * while the layers below are still being differentiated. Gradient buffers then live in shared memory.
   */
  overlap?: boolean;
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
  readonly counters: Float32Array;
  /** Number of updates applied so far. */
  step = 0;
  /** Parameters that received a gradient since the last update (torch skips the others in AdamW). */
  private readonly touched = new Set<string>();
  /** The reduction started by the last micro-batch of this step (overlap), awaited by applyUpdate. */
  private pending: PendingReduction | null = null;
  /** Index in `params` of each trained variable, by tfjs variable name. */
  private readonly paramIndex = new Map<string, number>();
  /** The step beginStep() prepared (-1: none yet) and the NSP weight M / S it computed for it. */
  private preparedStep = -1;
  private nspWeight = 1;

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
    this.objective = options.objective ?? (pretraining(model) as unknown as TrainObjective<B>);
    // Shared memory lets a reducer running in another thread read each gradient the moment it is final.
    const alloc = (n: number): Float32Array => (options.overlap === true ? new Float32Array(new SharedArrayBuffer(4 * n)) : new Float32Array(n));
    this.grads = this.params.map((s) => ({ name: s.name, data: alloc(s.shape.reduce((a, b) => a * b, 1)) }));
    this.counters = alloc(NUM_COUNTERS);
    this.params.forEach((p, i) => this.paramIndex.set(p.variable.name, i));
  }

  /**
   * Prepares the current step from this rank's micro-batches of it, before the first accumulate(). Only objectives
   * with an NSP term (stepCounts) need it: their NSP sum is weighted by M / S, the global MLM and NSP target counts,
   * so this sums the local counts across ranks in one collective of two floats (reducer.sumCounts). Every other
   * objective returns at once: no collective, nothing changed. trainStep() calls it.
   */
  async beginStep(microBatches: readonly B[]): Promise<void> {
    const stepCounts = this.objective.stepCounts;
    if (stepCounts === undefined) return;
    if (this.reducer.sumCounts === undefined) {
      throw new Error("Trainer: this objective (MLM + NSP) needs the global target counts before the backward pass, and the reducer cannot sum counts (no sumCounts)");
    }
    const counts = new Float32Array(2);
    for (const b of microBatches) {
      const c = stepCounts(b);
      counts[0] += c.primary;
      counts[1] += c.nsp;
    }
    await this.reducer.sumCounts(counts, this.step);
    const [primary, nsp] = counts;
    // No NSP targets anywhere: the weight multiplies zero. No MLM targets: applyUpdate refuses the step anyway.
    this.nspWeight = nsp > 0 && primary > 0 ? primary / nsp : 1;
    this.preparedStep = this.step;
  }

  /**
   * Forward + backward of one micro-batch; adds d(sum of losses)/d(param) into the gradient buffers and the counts
   * into the counters. rowOffset is the global index of the batch's first sequence (for dropout masks). With an
   * NSP term, beginStep() must have seen the step's micro-batches first.
   */
  accumulate(batch: B, rowOffset = 0, opts: { last?: boolean } = {}): MicroBatchStats {
    if (this.objective.stepCounts !== undefined && this.preparedStep !== this.step) {
      throw new Error(`step ${this.step}: beginStep() must see this rank's micro-batches before accumulate() (the NSP weight needs the global target counts)`);
    }
    const vars = this.params.map((p) => p.variable);
    const stats: MicroBatchStats = { mlmLossSum: 0, mlmTargets: 0, nspLossSum: 0, nspTargets: 0 };
    // The last micro-batch of a step may start the reduction now and feed it gradients as the backward pass makes them.
    const pending = opts.last === true && this.options.overlap === true && canOverlap(this.reducer) && this.pending === null
      ? (this.pending = this.reducer.begin(this.grads, this.counters, this.step))
      : null;
    // Nothing to learn from (e.g. one rank's share without masked tokens): contributes zeros, no backward pass.
    if (this.objective.targets(batch) === 0) {
      if (pending !== null) {
        this.grads.forEach((_, i) => pending.gradientReady(i));
        pending.countersReady();
      }
      return stats;
    }
    const taps = pending === null ? null : new TapState(this, pending);
    tf.tidy(() => {
      const { grads } = tf.variableGrads(() => {
        const build = (): tf.Scalar => {
          const parts = this.objective.build(batch, {
            training: true, dropoutSeed: this.options.dropoutSeed ?? 0, step: this.step, rowOffset, dropoutRate: this.options.dropoutRate,
          }, this.nspWeight);
          // Read inside: tensors made in here are freed when the gradient computation returns.
          stats.mlmLossSum = parts.mlmSum.dataSync()[0];
          stats.mlmTargets = parts.mlmTargets;
          stats.nspLossSum = parts.nspSum === null ? 0 : parts.nspSum.dataSync()[0];
          stats.nspTargets = parts.nspTargets;
          return parts.total;
        };
        return taps === null ? build() : withGradientTap(taps, build);
      }, vars);
      this.grads.forEach((buf, i) => {
        if (taps !== null && taps.finish(i)) return; // delivered through the tap during the backward pass
        const g = grads[vars[i].name];
        if (g !== undefined) {
          // not on the path to the loss (e.g. pooler without NSP) when undefined
          addInto(buf.data, g.dataSync() as Float32Array);
          this.touched.add(buf.name);
        }
        pending?.gradientReady(i);
      });
    });
    this.counters[COUNTERS.mlmTargets] += stats.mlmTargets;
    this.counters[COUNTERS.mlmLossSum] += stats.mlmLossSum;
    this.counters[COUNTERS.nspTargets] += stats.nspTargets;
    this.counters[COUNTERS.nspLossSum] += stats.nspLossSum;
    pending?.countersReady();
    return stats;
  }

  /** Index in `params` of a trained variable, or -1. */
  indexOf(v: tf.Variable): number {
    return this.paramIndex.get(v.name) ?? -1;
  }

  /** Adds one finished gradient contribution into parameter i's buffer (tap path). */
  addGradient(i: number, d: Float32Array): void {
    addInto(this.grads[i].data, d);
    this.touched.add(this.grads[i].name);
  }

  /** Reduces across ranks, normalises by the global MLM target count, clips, applies AdamW, clears the buffers. */
  async applyUpdate(): Promise<StepResult> {
    if (this.pending !== null) {
      const pending = this.pending;
      this.pending = null;
      await pending.done;
    } else {
      await this.reducer.reduce(this.grads, this.counters, this.step);
    }
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

  /** beginStep(), accumulate() over the micro-batches (global first-sequence indices in rowOffsets), then applyUpdate(). */
  async trainStep(microBatches: readonly B[], rowOffsets?: readonly number[]): Promise<StepResult> {
    if (microBatches.length === 0) throw new Error("trainStep needs at least one micro-batch");
    if (rowOffsets !== undefined && rowOffsets.length !== microBatches.length) {
      throw new Error(`trainStep: ${microBatches.length} micro-batches but ${rowOffsets.length} row offsets`);
    }
    await this.beginStep(microBatches);
    let offset = 0;
    microBatches.forEach((b, i) => {
      this.accumulate(b, rowOffsets?.[i] ?? offset, { last: i === microBatches.length - 1 });
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

/**
 * The gradient tap of one overlapped micro-batch: counts each trained parameter's reads in the forward pass and,
 * in the backward pass, adds each contribution in; when the last read's contribution is in, the gradient is final
 * and goes to the reducer. Several contributions (a tied weight) are summed in backward order in a scratch buffer
 * first, exactly as tfjs sums them, so the buffers end bit-identical to the path without overlap.
 */
class TapState implements GradientTap {
  private readonly uses: Int32Array;
  private readonly read: Uint8Array;
  private readonly scratch = new Map<number, Float32Array>();

  constructor(private readonly trainer: Trainer<EncoderInput>, private readonly pending: PendingReduction) {
    this.uses = new Int32Array(trainer.params.length);
    this.read = new Uint8Array(trainer.params.length);
  }

  watches(v: tf.Variable): boolean {
    return this.trainer.indexOf(v) >= 0;
  }

  onUse(v: tf.Variable): void {
    const i = this.trainer.indexOf(v);
    this.uses[i]++;
    this.read[i] = 1;
  }

  onGradient(v: tf.Variable, dy: tf.Tensor): void {
    const i = this.trainer.indexOf(v);
    const d = dy.dataSync() as Float32Array;
    const left = --this.uses[i];
    const partial = this.scratch.get(i);
    if (left === 0 && partial === undefined) {
      this.trainer.addGradient(i, d);
      this.pending.gradientReady(i);
    } else if (partial === undefined) {
      this.scratch.set(i, Float32Array.from(d));
    } else {
      addInto(partial, d);
      if (left === 0) this.flush(i);
    }
  }

  /** After the backward pass: true if parameter i went through the tap (its gradient is then already delivered). */
  finish(i: number): boolean {
    if (this.read[i] === 0) return false;
    // reads whose result did not reach the loss never get a gradient: what did arrive is final now
    if (this.uses[i] > 0) {
      this.uses[i] = 0;
      this.flush(i);
    }
    return true;
  }

  private flush(i: number): void {
    const partial = this.scratch.get(i);
    this.scratch.delete(i);
    if (partial !== undefined) this.trainer.addGradient(i, partial);
    this.pending.gradientReady(i);
  }
}

/**
 * The pre-training objective as a TrainObjective: MLM (+ NSP when the model has the head and the batch labels, then
 * weighted as HF's BertForPreTraining weighs it: see TrainObjective.stepCounts).
 */
function pretraining(model: BertModel): TrainObjective<Batch> {
  return {
    targetName: "MLM",
    targets: (batch) => {
      if (model.hasNsp && batch.nspLabels !== undefined) return batch.batchSize;
      let n = 0;
      for (const y of batch.mlmLabels) if (y !== IGNORE_INDEX) n++;
      return n;
    },
    // only a model with the NSP head pays for the counts' collective
    stepCounts: model.hasNsp ? (batch) => ({ primary: countTargets(batch), nsp: batch.nspLabels?.length ?? 0 }) : undefined,
    build: (batch, fwd, nspWeight) => pretrainingObjective(model, batch, fwd, nspWeight),
  };
}
