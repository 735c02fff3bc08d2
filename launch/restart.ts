/**
 * `launch --max-restarts K`: when a worker fails, restart the job from the last complete checkpoint, up to K
 * times (torchelastic-style whole-job restart). With `elastic.min_workers` below the launched world size, each
 * restart drops the failed workers' slots (a lost slot is not retried), never below min_workers, and keeps the
 * global batch: accumulation steps grow instead. Single node only: on several nodes, restart every node's
 * launch (a scheduler's job restart, e.g. a JobSet's failurePolicy.maxRestarts). Pretraining and fine-tuning
 * restart alike: their checkpoints hold the optimizer state, the step and the data position.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, loadRunConfig } from "../shared/config/load";
import type { RunConfig } from "../shared/config/schema";
import { newestResumePoint, snapshotRoot } from "./snapshots";
import { EXIT_WORKER_FAILURE } from "../shared/exit-codes";
import { launchTraining, RUN_CONFIG_FILE, type TrainArgs } from "./train";

/** Runs launchTraining, restarting after worker failures as the config's `elastic` section and K allow. */
export async function launchWithRestarts(args: TrainArgs, maxRestarts: number): Promise<number> {
  if (maxRestarts === 0 || args.dryRun) return launchTraining(args);
  if ((args.nodes ?? 1) > 1) throw new ConfigError("--max-restarts works on a single node; on several nodes let the scheduler restart every node (see docs/CLUSTER.md)");
  const cfg = args.resume !== undefined
    ? loadRunConfig(path.join(args.resume, RUN_CONFIG_FILE), { ...args.overrides, output: args.resume })
    : loadRunConfig(args.config ?? "", args.overrides);
  const runDir = path.resolve(cfg.output_dir);
  let workers = args.gpus ?? args.workers ?? 1;
  checkElastic(cfg, workers);
  let current = args;
  for (let attempt = 0; ; attempt++) {
    const code = await launchTraining(current);
    if (code !== EXIT_WORKER_FAILURE || attempt >= maxRestarts) return code;
    const failedRanks = readFailedRanks(runDir);
    workers = nextWorldSize(cfg, workers, failedRanks.length);
    const { entry, snapshot } = await newestResumePoint(runDir, snapshotRoot(cfg));
    const from = entry !== undefined ? `the ${snapshot ? "in-memory snapshot" : "checkpoint"} of step ${entry.step}` : "the start (no checkpoint yet)";
    process.stderr.write(`launch: restart ${attempt + 1}/${maxRestarts} with ${workers} worker(s) from ${from}\n`);
    const world = args.gpus !== undefined ? { gpus: workers, workers: undefined } : { workers, gpus: undefined };
    current = entry !== undefined
      ? { ...args, ...world, config: undefined, resume: runDir, overrides: { ...args.overrides, output: undefined }, restarting: true }
      : { ...args, ...world, overwrite: true, restarting: true }; // from the start: the failed attempt's metrics and logs are replaced
  }
}

/** The world size of the next attempt: the same, or shrunk by the failed slots when elastic allows it. */
export function nextWorldSize(cfg: RunConfig, workers: number, failed: number): number {
  const min = cfg.elastic.min_workers;
  if (min === 0 || min >= workers) return workers;
  let next = Math.max(min, workers - Math.max(1, failed));
  // The global batch must split evenly over micro-batches of all workers; shrink further if needed.
  while (next >= min && cfg.batch.global_batch_size % (cfg.batch.micro_batch_size * next) !== 0) next--;
  if (next < min) {
    throw new ConfigError(`elastic: no world size between ${min} and ${workers - 1} divides global_batch_size ${cfg.batch.global_batch_size} into micro-batches of ${cfg.batch.micro_batch_size}`);
  }
  return next;
}

function checkElastic(cfg: RunConfig, workers: number): void {
  const { min_workers: min, max_workers: max } = cfg.elastic;
  if (max > 0 && workers > max) throw new ConfigError(`--workers ${workers} exceeds elastic.max_workers ${max}`);
  if (min > workers) throw new ConfigError(`elastic.min_workers ${min} exceeds the ${workers} worker(s) launched`);
}

function readFailedRanks(runDir: string): number[] {
  try {
    const record = JSON.parse(fs.readFileSync(path.join(runDir, "failure.json"), "utf8")) as { rank?: number };
    return record.rank === undefined ? [] : [record.rank];
  } catch {
    return [];
  }
}
