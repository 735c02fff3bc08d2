/**
 * In-memory snapshots (config elastic.snapshot_interval_steps): full checkpoints written by rank 0 to a
 * RAM-backed folder, so that a restart resumes from a recent state without disk writes on the hot path. They
 * live on node 0 beside the coordinator and outlive worker processes (not the machine).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { RunConfig } from "../shared/config/schema";
import { listCheckpoints, pruneCheckpoints, verifyRunCheckpoint, type CheckpointEntry } from "../shared/checkpoint/run-checkpoints";

/** Snapshots kept: the newest, and one before it in case the newest is torn by a crash mid-write. */
const KEEP_SNAPSHOTS = 2;

/** The folder holding a run's snapshots (a run-directory layout: <root>/checkpoints/step-N). */
export function snapshotRoot(cfg: RunConfig): string {
  if (cfg.elastic.snapshot_dir !== undefined) return path.resolve(cfg.elastic.snapshot_dir);
  const base = fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir();
  const key = createHash("sha256").update(path.resolve(cfg.output_dir)).digest("hex").slice(0, 12);
  return path.join(base, "ringtrain-snapshots", `${cfg.name}-${key}`);
}

/** Keeps the newest snapshots only (called as steps complete). */
export async function pruneSnapshots(root: string): Promise<void> {
  if (fs.existsSync(path.join(root, "checkpoints"))) await pruneCheckpoints(root, KEEP_SNAPSHOTS);
}

/** Removes a run's snapshots (the run finished: its final checkpoint is on disk). */
export function dropSnapshots(root: string): void {
  fs.rmSync(root, { recursive: true, force: true });
}

/**
 * The newest complete state to resume from: the run's latest good checkpoint or a newer snapshot (a snapshot
 * and a checkpoint of the same step: the checkpoint). Corrupt or incomplete ones are skipped with a warning.
 *
 * A checkpoint is written during its step, before the coordinator records that step in metrics.jsonl; when
 * launch dies in between (killed while a checkpoint step is in flight: the workers finish the step and save
 * it without the coordinator), the newest checkpoint's step has no record, and resuming from it would leave
 * that step out of metrics.jsonl for good. So a state whose step is recorded is preferred while one is left
 * (the later steps are trained again, to the same parameters, and recorded once); only without one is the
 * unrecorded state used, with a warning naming the steps that stay unrecorded.
 */
export async function newestResumePoint(runDir: string, snapshots: string): Promise<{ entry?: CheckpointEntry; snapshot: boolean; warnings: string[] }> {
  const recorded = lastRecordedStep(path.join(runDir, "metrics.jsonl"));
  const disk = (await listCheckpoints(runDir)).map((entry) => ({ entry, snapshot: false }));
  const mem = fs.existsSync(snapshots) ? (await listCheckpoints(snapshots)).map((entry) => ({ entry, snapshot: true })) : [];
  const candidates = [...disk, ...mem].sort((a, b) => b.entry.step - a.entry.step || Number(a.snapshot) - Number(b.snapshot));
  const warnings: string[] = [];
  let unrecorded: { entry: CheckpointEntry; snapshot: boolean } | undefined;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i];
    const kind = c.snapshot ? "in-memory snapshot" : "checkpoint";
    try {
      await verifyRunCheckpoint(c.entry);
    } catch (e) {
      const fallback = i < candidates.length - 1 ? "falling back to an earlier one" : "no earlier one left";
      warnings.push(`skipping ${kind} step ${c.entry.step}: ${(e as Error).message}; ${fallback}`);
      continue;
    }
    if (recorded === undefined || c.entry.step <= recorded) {
      if (unrecorded !== undefined) {
        warnings.push(`not resuming from step ${unrecorded.entry.step} (${unrecorded.entry.dir}): metrics.jsonl ends at step ${recorded} (the job stopped after that state was saved, before its step was recorded); ` +
          `resuming from step ${c.entry.step} instead, so that ${stepRange(c.entry.step + 1, unrecorded.entry.step)} ${c.entry.step + 1 === unrecorded.entry.step ? "is" : "are"} trained again and recorded once`);
      }
      return { ...c, warnings };
    }
    unrecorded ??= c;
  }
  if (unrecorded !== undefined) {
    warnings.push(`metrics.jsonl ends at step ${recorded}, and no saved state at or before it is left: resuming from step ${unrecorded.entry.step}; ${stepRange(recorded! + 1, unrecorded.entry.step)} ${recorded! + 1 === unrecorded.entry.step ? "has" : "have"} no record in metrics.jsonl`);
    return { ...unrecorded, warnings };
  }
  return { entry: undefined, snapshot: false, warnings };
}

/** "step 5" or "steps 5-7". */
function stepRange(from: number, to: number): string {
  return from === to ? `step ${from}` : `steps ${from}-${to}`;
}

/** The last step recorded in a metrics.jsonl (lines that do not parse are ignored); undefined without records. */
export function lastRecordedStep(file: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  let last: number | undefined;
  for (const line of text.split("\n")) {
    try {
      const step = (JSON.parse(line) as { step?: unknown }).step;
      if (typeof step === "number" && Number.isSafeInteger(step)) last = Math.max(last ?? step, step);
    } catch {
      // a line torn by a crash, or blank
    }
  }
  return last;
}
