/**
 * What the worker loop trains: a Task hides the model, its data and its objective behind the few operations the
 * loop needs, so the loop (worker/train-loop.ts) reads the same for pretraining and fine-tuning.
 */
import type { SplitSchedule } from "./plans";
import type { RunConfig } from "../../shared/config/schema";
import type { MicroBatchStats, StepResult } from "../../shared/train/trainer";
import type { GradientReducer } from "../../shared/train/reducer";
import type { EvalResult, JoinResponse } from "../../proto/coordinator";
import type { WorkerEnv } from "../env";

/** Everything a task is built from. */
export interface TaskContext {
  cfg: RunConfig;
  joined: JoinResponse;
  env: WorkerEnv;
  reducer: GradientReducer;
  log: (line: string) => void;
  /** How each step's global batch is divided between ranks (the train loop records the coordinator's announcements). */
  splits: SplitSchedule;
}

/** One prefetched micro-batch: the sequence indices it holds (checked against the plan) and how to train on it. */
export interface MicroBatch {
  indices: number[];
  /** Non-padding tokens in the batch. */
  tokens: number;
  /**
   * Forward + backward into the gradient buffers; rowOffset is the global index of its first sequence. `last`:
   * the step's last micro-batch, whose backward pass may start the gradient all-reduce (overlap).
   */
  train(rowOffset: number, last: boolean): MicroBatchStats;
}

/** The operations of the worker loop, for one kind of training. */
export interface Task {
  /** One line for the start log (model, data sizes). */
  readonly summary: string;
  /** Sequence length of the batches (for FLOP counts). */
  readonly seqLen: number;
  /** The next micro-batch in plan order; undefined when the plan is exhausted. */
  nextMicroBatch(): Promise<MicroBatch | undefined>;
  /**
   * Only for tasks whose loss needs the step's global target counts before the first backward pass (mlm+nsp: MLM
   * mean + NSP mean): called with all of this rank's micro-batches of the step, before any is trained; sums their
   * counts across ranks (one small collective). Absent: the loop trains each micro-batch as it arrives.
   */
  beginStep?(microBatches: readonly MicroBatch[]): Promise<void>;
  /** All-reduce, normalise, clip, AdamW. */
  applyUpdate(): Promise<StepResult>;
  /** This rank's share of an evaluation on the validation or test split. */
  evaluate(split: "validation" | "test", indices: number[]): EvalResult;
  /** Checksum of every parameter (frozen ones included), equal across ranks. */
  checksum(): string;
  /** Writes a checkpoint of `step` into dir (rank 0 only). */
  save(dir: string, step: number): Promise<void>;
  /** Model FLOPs of a step on `tokens` tokens with `targets` targets. */
  flops(tokens: number, targets: number): number;
  /** Stops threads and frees the model. */
  close(): Promise<void>;
}
