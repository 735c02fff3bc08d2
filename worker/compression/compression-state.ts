/**
 * Gradient compression's per-rank state (error-feedback residuals, PowerSGD's warm-start Q) through a checkpoint.
 * Each rank holds its own residuals, so each rank writes its own file, beside the checkpoint that rank 0 writes:
 * `checkpoints/step-000100.ranks/compression-rank-1.safetensors` (atomic, like every checkpoint file). A resumed
 * run with the same world size and compression settings continues exactly where the saved one stopped; anything
 * else (a missing file, another world size or method) starts the state from zero and says why.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { rankStateDirFor } from "../../shared/checkpoint/run-checkpoints";
import { readSafetensors, tensorToFloat32, writeSafetensors, type SafetensorsFile, type SafetensorsTensor } from "../../shared/checkpoint/safetensors";
import type { CompressingReducer, GradientCompressionSettings } from "./compressing-reducer";

const FORMAT = "ringtrain-compression-state";

/** Where rank `rank`'s compression state for a checkpoint lives. */
export function compressionStateFile(checkpointDir: string, rank: number): string {
  return path.join(rankStateDirFor(checkpointDir), `compression-rank-${rank}.safetensors`);
}

/** The settings that must match for saved state to be meaningful (the ratio or rank shape what was kept). */
function settingsKey(s: GradientCompressionSettings): string {
  return JSON.stringify({ method: s.method, topk_ratio: s.topk_ratio, powersgd_rank: s.powersgd_rank, error_feedback: s.error_feedback });
}

/** Writes this rank's compression state for the checkpoint of `step` (atomically); returns the file. */
export async function saveCompressionState(checkpointDir: string, reducer: CompressingReducer, where: { rank: number; worldSize: number; step: number }): Promise<string> {
  const file = compressionStateFile(checkpointDir, where.rank);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, data] of reducer.exportState()) tensors.set(name, { dtype: "F32", shape: [data.length], data });
  await writeSafetensors(file, tensors, {
    format: FORMAT, rank: String(where.rank), world_size: String(where.worldSize), step: String(where.step), settings: settingsKey(reducer.settings),
  });
  return file;
}

/**
 * Restores this rank's compression state from the checkpoint a run resumes. Returns one line for the log: what
 * was restored, or why the state starts from zero. A file that exists but cannot be read is an error (it names
 * the file): silently dropping state a user expects to be there would change the training without a word.
 */
export async function loadCompressionState(checkpointDir: string, reducer: CompressingReducer, where: { rank: number; worldSize: number }): Promise<string> {
  const file = compressionStateFile(checkpointDir, where.rank);
  const fresh = "error feedback and PowerSGD state start from zero";
  let saved: SafetensorsFile;
  try {
    saved = await readSafetensors(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    return `no compression state for rank ${where.rank} beside ${checkpointDir} (${file} is missing; saved by an older version, or the save was cut short): ${fresh}`;
  }
  const meta = saved.metadata;
  if (meta.format !== FORMAT) throw new Error(`${file}: not a compression state file (metadata format '${meta.format ?? ""}', expected '${FORMAT}')`);
  if (meta.rank !== String(where.rank)) throw new Error(`${file}: written by rank ${meta.rank}, read by rank ${where.rank}`);
  if (meta.world_size !== String(where.worldSize)) {
    return `compression state in ${file} was saved by a world of ${meta.world_size} ranks, this run has ${where.worldSize}; residuals belong to one rank's share of the batch, so ${fresh}`;
  }
  if (meta.settings !== settingsKey(reducer.settings)) {
    return `compression state in ${file} was saved with gradient_compression ${meta.settings}, this run uses ${settingsKey(reducer.settings)}: ${fresh}`;
  }
  const state = new Map<string, Float32Array>();
  let elements = 0;
  for (const [name, t] of saved.tensors) {
    const data = tensorToFloat32(t, `${file}: ${name}`);
    state.set(name, data);
    elements += data.length;
  }
  reducer.importState(state);
  return `restored compression state of rank ${where.rank} from step ${meta.step} (${state.size} tensors, ${elements} values)`;
}
