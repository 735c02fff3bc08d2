/**
 * Checkpoints inside a run directory: `runDir/checkpoints/step-000100/`, one directory per saved step.
 * Finding the checkpoint to resume from skips incomplete or corrupt ones (with a warning), so a crash during a
 * save, or a damaged file, costs one checkpoint interval rather than the run.
 */
import type { Dirent } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { CheckpointError, looksComplete, MANIFEST_FILE, verifyCheckpoint } from "./manifest";

const CHECKPOINTS_DIR = "checkpoints";
const STEP_DIR_RE = /^step-(\d+)$/;
const RANK_STATE_SUFFIX = ".ranks";
const RANK_STATE_DIR_RE = /^step-(\d+)\.ranks$/;

/** One checkpoint directory of a run; `complete` means its manifest exists (files are not verified). */
export interface CheckpointEntry {
  step: number;
  dir: string;
  complete: boolean;
}

/** The checkpoint to resume from, if any, plus one warning per newer checkpoint that was skipped and why. */
export interface LatestGood {
  checkpoint: CheckpointEntry | undefined;
  warnings: string[];
}

/** Directory for the checkpoint of `step` in `runDir` (step zero-padded to 6 digits so names sort). */
export function checkpointDirFor(runDir: string, step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`checkpoint step ${step} is not a non-negative integer`);
  return path.join(runDir, CHECKPOINTS_DIR, `step-${String(step).padStart(6, "0")}`);
}

/**
 * Directory beside a checkpoint for state that each rank keeps for itself (gradient compression's error
 * feedback), one file per rank written by that rank: `step-000100.ranks/` next to `step-000100/`. Pruned with
 * its checkpoint.
 */
export function rankStateDirFor(checkpointDir: string): string {
  return checkpointDir + RANK_STATE_SUFFIX;
}

/** All checkpoint directories of a run, oldest step first; [] if the run has none. */
export async function listCheckpoints(runDir: string): Promise<CheckpointEntry[]> {
  const root = path.join(runDir, CHECKPOINTS_DIR);
  let entries: Dirent[];
  try {
    entries = await fs.readdir(root, { withFileTypes: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const out: CheckpointEntry[] = [];
  for (const e of entries) {
    const m = STEP_DIR_RE.exec(e.name);
    if (m === null || !e.isDirectory()) continue;
    const dir = path.join(root, e.name);
    const complete = await fs.stat(path.join(dir, MANIFEST_FILE)).then(() => true, () => false);
    out.push({ step: Number(m[1]), dir, complete });
  }
  return out.sort((a, b) => a.step - b.step);
}

/**
 * The newest checkpoint whose files all match its manifest (checksums verified) and whose manifest records the
 * step its directory is named for. Newer checkpoints that are incomplete, corrupt or disagree about their step
 * are skipped, each with a warning naming it and the problem.
 */
export async function latestGoodCheckpoint(runDir: string): Promise<LatestGood> {
  const warnings: string[] = [];
  const all = await listCheckpoints(runDir);
  for (let i = all.length - 1; i >= 0; i--) {
    const c = all[i];
    try {
      await verifyRunCheckpoint(c);
      return { checkpoint: c, warnings };
    } catch (e) {
      const fallback = i > 0 ? "falling back to an earlier checkpoint" : "no earlier checkpoint left";
      warnings.push(`skipping checkpoint step ${c.step}: ${(e as Error).message}; ${fallback}`);
    }
  }
  return { checkpoint: undefined, warnings };
}

/**
 * Verifies every file of a run's checkpoint against its manifest, and that the manifest records the step the
 * directory is named for: a resume starts at the manifest's step, so one that disagrees (an edited or copied
 * manifest) would restart the schedule and the data stream at the wrong place. Throws a CheckpointError naming
 * the file.
 */
export async function verifyRunCheckpoint(c: CheckpointEntry): Promise<void> {
  const manifest = await verifyCheckpoint(c.dir);
  if (manifest.step !== null && manifest.step !== c.step) {
    throw new CheckpointError(path.join(c.dir, MANIFEST_FILE), `manifest says step ${manifest.step}, but its directory ${path.basename(c.dir)} is step ${c.step}`);
  }
}

/**
 * Deletes old checkpoints, keeping the newest `keepLast` complete ones (manifest present, file sizes match;
 * not hashed, to stay cheap). Incomplete checkpoints older than the oldest kept one are deleted too; newer
 * incomplete ones are left alone (a save may be in progress). Returns the directories removed.
 */
export async function pruneCheckpoints(runDir: string, keepLast: number): Promise<string[]> {
  if (!Number.isSafeInteger(keepLast) || keepLast < 1) throw new Error(`pruneCheckpoints: keepLast must be an integer >= 1, got ${keepLast}`);
  const all = await listCheckpoints(runDir);
  const kept: CheckpointEntry[] = [];
  for (let i = all.length - 1; i >= 0 && kept.length < keepLast; i--) {
    if (all[i].complete && (await looksComplete(all[i].dir))) kept.push(all[i]);
  }
  if (kept.length === 0) return [];
  const oldestKept = kept[kept.length - 1].step;
  const removed: string[] = [];
  for (const c of all) {
    if (c.step >= oldestKept || kept.includes(c)) continue;
    await fs.rm(c.dir, { recursive: true, force: true });
    removed.push(c.dir);
  }
  // Per-rank state goes with its checkpoint; one older than the oldest kept whose checkpoint is gone (or never
  // completed) is left over from a crash and goes too.
  for (const name of await fs.readdir(path.join(runDir, CHECKPOINTS_DIR))) {
    const m = RANK_STATE_DIR_RE.exec(name);
    if (m === null || Number(m[1]) >= oldestKept) continue;
    const dir = path.join(runDir, CHECKPOINTS_DIR, name);
    await fs.rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}
