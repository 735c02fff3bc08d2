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
  /** Training loss: total loss over total target tokens, all ranks (with mlm+nsp the MLM loss alone). */
  loss: number;
  /** Objective mlm+nsp: next-sentence-prediction loss per sequence, all ranks (HF BertForPreTraining's loss is loss + nsp_loss). */
  nsp_loss?: number;
  tokens: number;
  step_ms: number;
  tokens_per_s: number;
  /** Model-FLOPs utilisation: model FLOPs per second over the sum of the ranks' measured peak matmul FLOP/s. */
  mfu: number;
  grad_norm: number;
  /** Learning rate of this step's update (HF Trainer's `learning_rate`). */
  learning_rate?: number;
  per_rank: RankTimes[];
  /** Validation: loss per target; perplexity for language models only; macro_f1 for classification only. */
  eval?: { loss: number; perplexity?: number; accuracy: number; sequences: number; macro_f1?: number };
  /** Classification runs: metrics of the summed confusion matrices (validation when evaluated, test at the end). */
  classification?: { step: number; validation?: ClassificationMetrics & { loss: number }; test?: ClassificationMetrics & { loss: number } };
  /** Float32 bytes each rank all-reduced this step (trained parameters' gradients + counters). */
  allreduce_bytes?: number;
  checkpoint_dir?: string;
}

/**
 * Appends one JSON object per line; each line is flushed as written so a crash loses at most the last step.
 * A resumed run passes the checkpoint's step: records of later steps (trained again from that checkpoint, as
 * TensorBoard's purge_step does) and a line torn by a crash are dropped first, so each step appears once.
 */
export class MetricsWriter {
  private fd: number | undefined;
  /** Records dropped when the file was cut back to the resume step. */
  readonly droppedRecords: number;

  constructor(private readonly file: string, resumeStep?: number) {
    this.droppedRecords = resumeStep === undefined ? 0 : truncateAfterStep(file, resumeStep);
  }

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

/**
 * Rewrites `file` keeping only the records of steps <= `step` (and dropping unparsable lines); returns how many
 * lines were dropped. Written to a temporary file and renamed, so a crash here leaves the old file whole.
 */
export function truncateAfterStep(file: string, step: number): number {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw e;
  }
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const kept = lines.filter((line) => {
    try {
      const r = JSON.parse(line) as { step?: unknown };
      return typeof r.step === "number" && r.step <= step;
    } catch {
      return false;
    }
  });
  if (kept.length === lines.length) return 0;
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, kept.map((l) => l + "\n").join(""));
  fs.renameSync(tmp, file);
  return lines.length - kept.length;
}
