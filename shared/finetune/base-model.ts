/** The pretrained model a fine-tuning run starts from: where it is, its identity (checksum), and loading it. */
import * as fs from "node:fs";
import * as path from "node:path";
import { CONFIG_FILE, loadCheckpoint, MODEL_FILE, type LoadedCheckpoint } from "../checkpoint/checkpoint";
import { readManifest } from "../checkpoint/manifest";
import { latestGoodCheckpoint } from "../checkpoint/run-checkpoints";

/**
 * A checkpoint directory, or a run directory (its newest verified checkpoint); otherwise throws naming `what`, the
 * directory and what it is instead (missing, a file, a Hugging Face model folder, a run whose checkpoints all fail
 * verification, and why). An empty `what` leaves the name to the caller (launch prefixes the config field).
 */
export async function resolveCheckpointDir(dir: string, what: string): Promise<string> {
  if (fs.existsSync(path.join(dir, "checkpoint.json"))) return dir;
  const fail = (why: string): Error => new Error(`${what === "" ? "" : `${what} `}${dir}: ${why}`);
  if (!fs.existsSync(dir)) throw fail("not found");
  if (!fs.statSync(dir).isDirectory()) throw fail("is a file, not a checkpoint directory or run directory");
  if (fs.existsSync(path.join(dir, "checkpoints"))) {
    const { checkpoint, warnings } = await latestGoodCheckpoint(dir);
    if (checkpoint) return checkpoint.dir;
    // say why each one was refused (a checksum mismatch, a missing file) rather than that there is none
    if (warnings.length > 0) throw fail(`a run directory with no intact checkpoint: ${warnings.join("; ")}`);
  }
  if (fs.existsSync(path.join(dir, "metrics.jsonl"))) {
    // a run that stopped (Ctrl-C, a failure) before it saved anything: the usual case with a short fine-tune
    throw fail("a run directory with no complete checkpoint yet: the run stopped before it saved one (its logs/ and failure.json say why)");
  }
  if (fs.existsSync(path.join(dir, CONFIG_FILE)) && fs.existsSync(path.join(dir, MODEL_FILE))) {
    // HF users try a downloaded or exported model folder first: say that ringtrain needs its own checkpoint manifest
    throw fail(
      `looks like a Hugging Face model folder (${CONFIG_FILE}, ${MODEL_FILE}) without ringtrain's checkpoint.json; ` +
        `give a ringtrain run directory or one of its checkpoints/step-NNNNNN directories`,
    );
  }
  throw fail("not a checkpoint directory (no checkpoint.json) nor a run directory with a complete checkpoint");
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
