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
import { latestGoodCheckpoint, pruneCheckpoints, type CheckpointEntry } from "../shared/checkpoint/run-checkpoints";

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

/** The newest complete state to resume from: the run's latest good checkpoint or a newer snapshot. */
export async function newestResumePoint(runDir: string, snapshots: string): Promise<{ entry?: CheckpointEntry; snapshot: boolean; warnings: string[] }> {
  const disk = await latestGoodCheckpoint(runDir);
  const mem = fs.existsSync(snapshots) ? await latestGoodCheckpoint(snapshots) : { checkpoint: undefined, warnings: [] };
  const warnings = [...disk.warnings, ...mem.warnings];
  if (mem.checkpoint !== undefined && (disk.checkpoint === undefined || mem.checkpoint.step > disk.checkpoint.step)) {
    return { entry: mem.checkpoint, snapshot: true, warnings };
  }
  return { entry: disk.checkpoint, snapshot: false, warnings };
}
