/** The pretrained model a fine-tuning run starts from: where it is, its identity (checksum), and loading it. */
import * as fs from "node:fs";
import * as path from "node:path";
import { loadCheckpoint, MODEL_FILE, type LoadedCheckpoint } from "../checkpoint/checkpoint";
import { readManifest } from "../checkpoint/manifest";
import { latestGoodCheckpoint } from "../checkpoint/run-checkpoints";

/** A checkpoint directory, or a run directory (its newest verified checkpoint); throws naming `what` otherwise. */
export async function resolveCheckpointDir(dir: string, what: string): Promise<string> {
  if (fs.existsSync(path.join(dir, "checkpoint.json"))) return dir;
  if (fs.existsSync(path.join(dir, "checkpoints"))) {
    const { checkpoint } = await latestGoodCheckpoint(dir);
    if (checkpoint) return checkpoint.dir;
  }
  throw new Error(`${what} ${dir}: not a checkpoint directory (no checkpoint.json) nor a run directory with a complete checkpoint`);
}

/** SHA-256 of a checkpoint's model.safetensors as its manifest records it: the identity adapters are tied to. */
export async function modelChecksum(checkpointDir: string): Promise<string> {
  const manifest = await readManifest(checkpointDir);
  const entry = Object.prototype.hasOwnProperty.call(manifest.files, MODEL_FILE) ? manifest.files[MODEL_FILE] : undefined;
  if (entry === undefined) throw new Error(`${checkpointDir}: checkpoint manifest lists no ${MODEL_FILE}`);
  return entry.sha256;
}

/** Tensor names a classifier checkpoint adds to a BERT checkpoint. */
export function isHeadTensor(name: string): boolean {
  return name.startsWith("classifier.");
}

/** A loaded base checkpoint (files verified against the manifest) with its checksum and directory. */
export interface BaseModel {
  dir: string;
  checksum: string;
  checkpoint: LoadedCheckpoint;
}

/** Loads the base checkpoint of `dir` (checkpoint or run directory). */
export async function loadBaseModel(dir: string, what = "finetune.base_model"): Promise<BaseModel> {
  const resolved = await resolveCheckpointDir(dir, what);
  return { dir: resolved, checksum: await modelChecksum(resolved), checkpoint: await loadCheckpoint(resolved) };
}
