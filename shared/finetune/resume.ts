/**
 * Resuming a fine-tune from one of its run's checkpoints. The base model is rebuilt as at the start (its frozen
 * weights come from finetune.base_model, whose checksum must be the one the checkpoint recorded), then every trained
 * parameter is taken from the checkpoint: from the exported tensors (model.safetensors of a complete classifier,
 * adapter_model.safetensors of an adapter, read back through the same readers `launch predict` uses) or, for those
 * the export does not hold as they are, from training_state.safetensors (save.ts). The optimizer state comes from
 * training_state.safetensors too; with the trainer step and the data position (a function of the step) the run
 * continues exactly where the checkpoint was taken.
 */
import * as path from "node:path";
import { CheckpointError, readManifest, type CheckpointManifest } from "../checkpoint/manifest";
import { hasTrainingState, loadCheckpoint, readTrainingState, TRAINING_STATE_FILE } from "../checkpoint/checkpoint";
import { assignValues, transpose2d, type HostTensor } from "../model/hf";
import type { PeftClassifier } from "../peft/classifier";
import type { AdamWState } from "../train/adamw";
import { ADAPTER_MODEL_FILE, TASK_FILE } from "./adapter-config";
import { readAdapterDescription, readAdapterTensors } from "./read-adapter";
import { STATE_PARAMETER_PREFIX } from "./save";

/** What a fine-tune's checkpoint gives back to the trainer. */
export interface ResumedClassifier {
  /** For Trainer.setOptimizerState: the AdamW moments and the trainer's step. */
  optimizer: AdamWState;
  /** The resume metadata saved with the checkpoint (step, data position, base model, ...). */
  meta: Record<string, unknown>;
}

/**
 * Why a fine-tune checkpoint without training state cannot be resumed (checkpoints written before fine-tuning runs
 * were resumable): one sentence naming the checkpoint, for launch and the worker alike.
 */
export function missingTrainingStateMessage(checkpointDir: string): string {
  return `checkpoint ${checkpointDir} holds no ${TRAINING_STATE_FILE} (AdamW moments, trainer step, data position): ` +
    `it was saved by a version of ringtrain whose fine-tuning checkpoints kept only the trained weights, so the run cannot continue exactly from it ` +
    `(its weights still load with launch predict)`;
}

/**
 * Restores the trained parameters of `model` (built from the base model as at the start of the run) from the
 * checkpoint in `dir`, and returns its optimizer state. `baseChecksum` is the SHA-256 of the base model's
 * model.safetensors loaded now: a checkpoint trained on another base is refused, since its frozen weights would differ.
 */
export async function restoreClassifier(dir: string, model: PeftClassifier, baseChecksum: string): Promise<ResumedClassifier> {
  const manifest = await readManifest(dir);
  if (!hasTrainingState(manifest)) throw new Error(missingTrainingStateMessage(dir));
  const state = await readTrainingState(dir, manifest);
  const stateFile = path.join(dir, TRAINING_STATE_FILE);
  const meta = state.meta;
  if (meta.method !== model.settings.method) {
    throw new CheckpointError(stateFile, `was saved by a ${String(meta.method)} fine-tune; this run's finetune.method is ${model.settings.method}`);
  }
  if (meta.base_model_sha256 !== baseChecksum) {
    throw new CheckpointError(stateFile, `was trained on a base model with model.safetensors sha256 ${String(meta.base_model_sha256)} (${String(meta.base_model)}), ` +
      `but finetune.base_model now has sha256 ${baseChecksum}: the frozen weights would differ`);
  }
  const exported = await exportedTensors(dir, manifest, model);
  const problems: string[] = [];
  for (const p of model.trainable) {
    const saved = state.tensors.get(STATE_PARAMETER_PREFIX + p.name);
    if (saved !== undefined) {
      // saved in the model's own layout
      if (saved.shape.join() !== p.shape.join()) problems.push(`${stateFile}: '${STATE_PARAMETER_PREFIX}${p.name}' has shape [${saved.shape}], expected [${p.shape}]`);
      else assignValues(p.variable, saved.data, p.shape);
      continue;
    }
    const t = exported.tensors.get(p.name);
    if (t === undefined) {
      problems.push(`${exported.file}: lacks trained parameter '${p.name}' (and ${TRAINING_STATE_FILE} does not hold it)`);
      continue;
    }
    const linear = isLinear(model, p.name);
    // exported in HF layout: linear weights [out, in], the model keeps [in, out]
    const want = linear ? [p.shape[1], p.shape[0]] : p.shape;
    if (t.shape.join() !== want.join()) problems.push(`${exported.file}: '${p.name}' has shape [${t.shape}], expected [${want}]`);
    else assignValues(p.variable, linear ? transpose2d(t.data, p.shape[1], p.shape[0]) : t.data, p.shape);
  }
  if (problems.length > 0) throw new Error(`cannot resume from ${dir}:\n  ${problems.join("\n  ")}`);
  const optimizer = new Map([...state.tensors].filter(([k]) => !k.startsWith(STATE_PARAMETER_PREFIX)).map(([k, t]) => [k, t.data]));
  const trainerStep = meta.trainer_step;
  if (typeof trainerStep !== "number" || !Number.isSafeInteger(trainerStep) || trainerStep < 0) {
    throw new CheckpointError(stateFile, `trainer_step ${JSON.stringify(trainerStep)} is not a non-negative integer`);
  }
  return { optimizer: { step: trainerStep, tensors: optimizer }, meta };
}

/** The tensors the checkpoint exported (HF layouts, ringtrain names) and the file they came from, for messages. */
async function exportedTensors(dir: string, manifest: CheckpointManifest, model: PeftClassifier): Promise<{ tensors: Map<string, HostTensor>; file: string }> {
  if (Object.prototype.hasOwnProperty.call(manifest.files, TASK_FILE)) {
    return { tensors: (await loadCheckpoint(dir)).tensors, file: path.join(dir, "model.safetensors") };
  }
  const desc = await readAdapterDescription(dir, manifest, `checkpoint ${dir}`);
  return { tensors: await readAdapterTensors(dir, manifest, desc, model.base.config), file: path.join(dir, ADAPTER_MODEL_FILE) };
}

/** Whether a trained parameter is a linear weight (stored [in, out] here, [out, in] in HF files). */
function isLinear(model: PeftClassifier, name: string): boolean {
  const spec = model.extraSpecs.find((s) => s.name === name) ?? model.base.specs.find((s) => s.name === name);
  if (spec === undefined) throw new Error(`classifier has no parameter '${name}'`);
  return spec.linear;
}
