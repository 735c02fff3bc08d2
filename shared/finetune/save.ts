/**
 * Saving a fine-tuned classifier. Full fine-tuning (and LoRA with merge) writes a complete checkpoint, as pretraining
 * does, plus the head (classifier.*) and task.json. Every other method writes only what it trained:
 * adapter_model.safetensors (HF layouts) and a description naming the base model by path and checksum. LoRA with
 * [CLS] pooling is written in HF PEFT's format (peft-format.ts: PEFT tensor names, PEFT's adapter_config.json,
 * ringtrain's fields in ringtrain_adapter.json); the other methods have no exact PEFT equivalent and keep ringtrain's
 * format (adapter_config.json version 1). All end with a checkpoint.json manifest, so run checkpoints are listed,
 * verified and pruned the same way.
 *
 * A run's checkpoints also hold training_state.safetensors, what resuming needs beyond the exported tensors (see
 * resume.ts): the AdamW moments of the trained parameters, under the trainer's names, and the trained parameters
 * that the export does not hold as they are (the prefix MLP, whose output table is exported instead; LoRA factors
 * folded into the weights by lora.merge), under STATE_PARAMETER_PREFIX in the model's own layout.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { saveCheckpoint, writeTrainingState, MODEL_FILE, TRAINING_STATE_FILE, type FloatTensor, type TrainingState } from "../checkpoint/checkpoint";
import { MANIFEST_FILE, readManifest, writeManifest } from "../checkpoint/manifest";
import { encodeSafetensors, type SafetensorsTensor } from "../checkpoint/safetensors";
import { atomicWriteFile, type WrittenFile } from "../io/atomic-write";
import { exportHfTensors, transpose2d, type HostTensor } from "../model/hf";
import type { PeftClassifier } from "../peft/classifier";
import { methodSettings } from "../peft/settings";
import { prefixTableSpec, type ExtraSpec } from "../peft/specs";
import { ADAPTER_CONFIG_FILE, ADAPTER_MODEL_FILE, RINGTRAIN_ADAPTER_FILE, TASK_FILE, type AdapterConfig, type TaskFile } from "./adapter-config";
import { peftExportable, peftLoraConfig, toPeftKey } from "./peft-format";

/** What a saved classifier records beside its tensors. */
export interface ClassifierMeta {
  labels: string[];
  maxSeqLen: number;
  lowercase: boolean;
  /** The base checkpoint directory and the SHA-256 of its model.safetensors. */
  baseDir: string;
  baseChecksum: string;
  vocab: readonly string[];
  padTokenId: number;
  step?: number;
  /** What resuming needs (a run's checkpoints); absent for an export that only predicts. */
  training?: ClassifierTraining;
}

/** The trainer's side of a fine-tune's training state. */
export interface ClassifierTraining {
  /** AdamW moments and per-parameter step counts by the trainer's names (Trainer.getOptimizerState().tensors). */
  optimizer: ReadonlyMap<string, Float32Array>;
  /** Resume metadata (step, trainer step, data position, base model, ...), JSON-safe. */
  meta: Record<string, unknown>;
}

/** Key prefix, in a fine-tune's training state, of the trained parameters its exported tensors do not hold as they are. */
export const STATE_PARAMETER_PREFIX = "parameter/";

/**
 * The training state to save beside exported tensors named `exported` (ringtrain names): the optimizer state, and
 * every trained parameter missing from the export, in the model's layout.
 */
function classifierTrainingState(model: PeftClassifier, training: ClassifierTraining, exported: ReadonlySet<string>): TrainingState {
  const tensors = new Map<string, FloatTensor>([...training.optimizer].map(([k, v]) => [k, { shape: [v.length], data: v }]));
  for (const p of model.trainable) {
    if (!exported.has(p.name)) tensors.set(STATE_PARAMETER_PREFIX + p.name, { shape: p.shape.slice(), data: Float32Array.from(p.variable.dataSync() as Float32Array) });
  }
  return { tensors, meta: training.meta };
}

/** True when a method's export is a complete checkpoint (full fine-tuning, or LoRA folded into the weights). */
export function savesCompleteCheckpoint(model: PeftClassifier): boolean {
  return model.settings.method === "full" || (model.settings.method === "lora" && model.settings.lora.merge);
}

/** Saves the classifier into `dir` in the form its method calls for. */
export async function saveClassifier(dir: string, model: PeftClassifier, meta: ClassifierMeta): Promise<void> {
  if (savesCompleteCheckpoint(model)) await saveCompleteClassifier(dir, model, meta);
  else await saveAdapter(dir, model, meta);
}

/** The head and method tensors under their names, in HF layout (linear weights [out, in]); prefix MLP as its output table. */
export function adapterTensors(model: PeftClassifier, opts: { includeBase: boolean } = { includeBase: true }): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const extra = new Set(model.extraSpecs.map((s) => s.name));
  const hf = (s: { shape: number[]; linear: boolean }, data: Float32Array): HostTensor =>
    s.linear ? { shape: [s.shape[1], s.shape[0]], data: transpose2d(data, s.shape[0], s.shape[1]) } : { shape: s.shape.slice(), data: Float32Array.from(data) };
  if (opts.includeBase) {
    for (const p of model.trainable) if (!extra.has(p.name)) out.set(p.name, hf(model.base.specs.find((s) => s.name === p.name)!, p.variable.dataSync() as Float32Array));
  }
  for (const s of model.extraSpecs as ExtraSpec[]) {
    if (s.transient) continue;
    out.set(s.name, hf(s, model.param(s.name).dataSync() as Float32Array));
  }
  if (model.settings.method === "prefix" && model.settings.prefix.reparameterize) {
    const t = model.prefixTable();
    out.set("prefix.past_key_values", { shape: prefixTableSpec(model.base.config, t.shape[0]).shape, data: Float32Array.from(t.dataSync() as Float32Array) });
    t.dispose();
  }
  return out;
}

async function saveAdapter(dir: string, model: PeftClassifier, meta: ClassifierMeta): Promise<void> {
  const peft = peftExportable(model.settings);
  // HF PEFT names every tensor from the PeftModel down: base_model.model.<transformers name>.
  const ownNames = adapterTensors(model);
  const training = meta.training === undefined ? undefined : classifierTrainingState(model, meta.training, new Set(ownNames.keys()));
  const tensors = new Map([...ownNames].map(([k, t]) => [peft ? toPeftKey(k) : k, t]));
  const st = new Map<string, SafetensorsTensor>([...tensors].map(([k, t]) => [k, { dtype: "F32", shape: t.shape, data: t.data }]));
  const chunks = encodeSafetensors(st, { format: "pt" }, path.join(dir, ADAPTER_MODEL_FILE));
  const baseDir = path.resolve(meta.baseDir);
  const fields = {
    format: "ringtrain-adapter" as const,
    method: model.settings.method, settings: methodSettings(model.settings),
    base_model: { path: baseDir, sha256: meta.baseChecksum },
    tensors: [...tensors.keys()],
    labels: meta.labels, max_seq_len: meta.maxSeqLen, lowercase: meta.lowercase, classifier_dropout: model.settings.classifierDropout, pooling: model.settings.pooling,
  };
  const description: AdapterConfig = peft ? { ...fields, version: 2 } : { ...fields, version: 1 };
  await fs.mkdir(dir, { recursive: true });
  await fs.rm(path.join(dir, MANIFEST_FILE), { force: true });
  await fs.rm(path.join(dir, RINGTRAIN_ADAPTER_FILE), { force: true });
  const written: Record<string, WrittenFile> = {};
  written[ADAPTER_MODEL_FILE] = await atomicWriteFile(path.join(dir, ADAPTER_MODEL_FILE), async (sink) => {
    for (const c of chunks) await sink.write(c);
  });
  const json = (v: unknown): string => JSON.stringify(v, null, 2) + "\n";
  if (peft) {
    written[ADAPTER_CONFIG_FILE] = await atomicWriteFile(path.join(dir, ADAPTER_CONFIG_FILE), json(peftLoraConfig(model.base.config, model.settings, baseDir)));
    written[RINGTRAIN_ADAPTER_FILE] = await atomicWriteFile(path.join(dir, RINGTRAIN_ADAPTER_FILE), json(description));
  } else {
    written[ADAPTER_CONFIG_FILE] = await atomicWriteFile(path.join(dir, ADAPTER_CONFIG_FILE), json(description));
  }
  const state = await writeTrainingState(dir, training);
  if (state !== undefined) written[TRAINING_STATE_FILE] = state;
  await writeManifest(dir, written, meta.step ?? null);
}

async function saveCompleteClassifier(dir: string, model: PeftClassifier, meta: ClassifierMeta): Promise<void> {
  const tensors = exportHfTensors(model.base);
  // LoRA: the folded weights W + (alpha/r) A·B are computed on copies; the live model keeps its exact base weights.
  if (model.settings.method === "lora") {
    for (const [name, w] of model.mergedWeights()) {
      const s = model.base.specs.find((p) => p.name === name)!;
      tensors.set(name, { shape: [s.shape[1], s.shape[0]], data: transpose2d(w, s.shape[0], s.shape[1]) });
    }
  }
  for (const [k, t] of adapterTensors(model, { includeBase: false })) if (k.startsWith("classifier.")) tensors.set(k, t);
  // The LoRA-wrapped weights hold W + (alpha/r) A·B here, but they are frozen: a resume takes them from the base model.
  const trainingState = meta.training === undefined ? undefined : classifierTrainingState(model, meta.training, new Set(tensors.keys()));
  await saveCheckpoint(dir, {
    config: model.base.config, tensors, vocab: meta.vocab, padTokenId: meta.padTokenId, lowercase: meta.lowercase, step: meta.step,
    hfConfigExtra: hfClassifierFields(meta.labels, model.settings.pooling, model.settings.classifierDropout), trainingState,
  });
  const task: TaskFile = {
    format: "ringtrain-classifier", version: 1, method: model.settings.method,
    labels: meta.labels, max_seq_len: meta.maxSeqLen, lowercase: meta.lowercase, classifier_dropout: model.settings.classifierDropout, pooling: model.settings.pooling,
  };
  // Add task.json to the manifest saveCheckpoint wrote (re-listing its files with their recorded sizes and hashes).
  const manifest = await readManifest(dir);
  const written: Record<string, WrittenFile> = { ...manifest.files };
  written[TASK_FILE] = await atomicWriteFile(path.join(dir, TASK_FILE), JSON.stringify(task, null, 2) + "\n");
  await writeManifest(dir, written, manifest.step);
  if (!(MODEL_FILE in written)) throw new Error(`${dir}: checkpoint lacks ${MODEL_FILE}`);
}

/**
 * config.json fields that make a complete classifier load as HF's BertForSequenceClassification (its tensor names,
 * bert.* and classifier.*, already match): class i is labels[i]. Only with CLS pooling, which is that model's
 * head (pooler, dropout, linear); other poolings keep the masked-LM architecture name, and task.json describes them.
 */
export function hfClassifierFields(labels: readonly string[], pooling: string, classifierDropout: number): Record<string, unknown> {
  const id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
  const label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
  const common = { id2label, label2id, classifier_dropout: classifierDropout, problem_type: "single_label_classification" };
  return pooling === "cls" ? { architectures: ["BertForSequenceClassification"], ...common } : common;
}
