import * as fs from "node:fs";
import * as path from "node:path";
import type { ClassificationMetrics } from "../shared/train/classification-metrics";

/** Per-rank time split of one step, in milliseconds. */
export interface RankTimes {
  rank: number;
  /** Sequences the rank trained (its share of the global batch; differs between ranks with batch.balance: adaptive). */
  sequences?: number;
  step_ms: number;
  data_wait_ms: number;
  compute_ms: number;
  /** Exposed all-reduce time (not hidden behind the backward pass). */
  communication_ms: number;
  /** The all-reduce's whole wall time, overlapped part included (absent in runs before this field existed). */
  allreduce_wall_ms?: number;
  optimizer_ms: number;
  /** Time this rank waited for the slowest rank (step time minus its own). */
  idle_ms: number;
}

/** One line of metrics.jsonl: a step aggregated over all ranks. */
export interface StepMetrics {
  step: number;
  /** Epochs of data consumed (fractional). */
  epoch: number;
  /** Training loss: total loss over total target tokens, all ranks. */
  loss: number;
  tokens: number;
  step_ms: number;
  tokens_per_s: number;
  /** Model-FLOPs utilisation: model FLOPs per second over the sum of the ranks' measured peak matmul FLOP/s. */
  mfu: number;
  grad_norm: number;
  per_rank: RankTimes[];
  eval?: { loss: number; perplexity: number; accuracy: number; sequences: number; macro_f1?: number };
  /** Classification runs: metrics of the summed confusion matrices (validation when evaluated, test at the end). */
  classification?: { step: number; validation?: ClassificationMetrics & { loss: number }; test?: ClassificationMetrics & { loss: number } };
  /** Float32 bytes each rank all-reduced this step (trained parameters' gradients + counters). */
  allreduce_bytes?: number;
  checkpoint_dir?: string;
}

/** Appends one JSON object per line; each line is flushed as written so a crash loses at most the last step. */
export class MetricsWriter {
  private fd: number | undefined;

  constructor(private readonly file: string) {}

  /** Appends one record. */
  write(record: StepMetrics): void {
    if (this.fd === undefined) {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      this.fd = fs.openSync(this.file, "a");
    }
    fs.writeSync(this.fd, JSON.stringify({ time: new Date().toISOString(), ...record }) + "\n");
  }

  /** Closes the file. */
  async close(): Promise<void> {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
