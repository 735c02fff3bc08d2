/**
 * Building classifiers: for training (base checkpoint + fresh head and method parameters) and for prediction (a
 * complete classifier checkpoint, or a base checkpoint plus an adapter, in HF PEFT's or ringtrain's layout, whose
 * recorded base checksum must match).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { loadCheckpoint, type LoadedCheckpoint } from "../checkpoint/checkpoint";
import { readManifest, readVerifiedFile } from "../checkpoint/manifest";
import { listCheckpoints } from "../checkpoint/run-checkpoints";
import { BertModel } from "../model/bert";
import { assignValues, importHfTensors, transpose2d, type HostTensor } from "../model/hf";
import { PeftClassifier, type PeftClassifierOptions } from "../peft/classifier";
import { peftSettingsOf, type PeftSettings } from "../peft/settings";
import { finetuneSchema } from "../config/schema";
import { BertTokenizer } from "../tokenizer/bert-tokenizer";
import { Vocab } from "../tokenizer/vocab";
import { ADAPTER_CONFIG_FILE, ADAPTER_MODEL_FILE, parseConfigFile, TASK_FILE, taskFileSchema } from "./adapter-config";
import { readAdapterDescription, readAdapterTensors } from "./read-adapter";
import { isHeadTensor, modelChecksum, resolveCheckpointDir } from "./base-model";

/**
 * A classifier for training: the base checkpoint's weights (init "pretrained") or fresh ones with the same shape
 * (init "random", seeded), plus the head and method parameters.
 */
export function buildClassifier(base: LoadedCheckpoint, settings: PeftSettings, init: "pretrained" | "random", seed: number, opts: PeftClassifierOptions = {}): PeftClassifier {
  const model = BertModel.create(base.config, seed);
  if (init === "pretrained") importHfTensors(model, baseTensors(base.tensors));
  return PeftClassifier.create(model, settings, seed, opts);
}

/** A classifier ready to predict, with its tokenizer and task description. */
export interface LoadedClassifier {
  model: PeftClassifier;
  tokenizer: BertTokenizer;
  labels: string[];
  maxSeqLen: number;
}

/**
 * Loads a classifier: `modelDir` is a complete classifier checkpoint (has task.json), or, with `adapterDir`, the base
 * checkpoint the adapter was trained on. Either may be a run directory (its newest verified checkpoint is used).
 * Refuses an adapter whose recorded base checksum differs from the base's, naming both.
 */
export async function loadClassifier(modelDir: string, adapterDir?: string): Promise<LoadedClassifier> {
  const baseDir = await resolveCheckpointDir(modelDir, "--model");
  if (isAdapterDir(baseDir)) {
    throw new Error(`--model ${modelDir}: ${baseDir} is an adapter (${ADAPTER_CONFIG_FILE}), not a model; give the base model with --model and this directory with --adapter`);
  }
  const base = await loadCheckpoint(baseDir);
  if (adapterDir === undefined) {
    const manifest = await readManifest(baseDir);
    if (!Object.prototype.hasOwnProperty.call(manifest.files, TASK_FILE)) {
      throw new Error(`--model ${modelDir}: ${baseDir} is not a classifier checkpoint (no ${TASK_FILE}); give the fine-tuned adapter with --adapter DIR`);
    }
    const task = parseConfigFile(taskFileSchema, (await readVerifiedFile(baseDir, manifest, TASK_FILE)).toString("utf8"), path.join(baseDir, TASK_FILE));
    const settings = peftSettingsOf(finetuneSchema.parse({ base_model: baseDir, method: "full", classifier_dropout: task.classifier_dropout, pooling: task.pooling }), task.labels.length);
    const model = PeftClassifier.create(buildBase(base), settings, 0);
    assignNamed(model, new Map([...base.tensors].filter(([k]) => isHeadTensor(k))), path.join(baseDir, "model.safetensors"));
    return { model, tokenizer: new BertTokenizer(new Vocab(base.vocab), { lowerCase: task.lowercase }), labels: task.labels, maxSeqLen: task.max_seq_len };
  }
  const adapter = await resolveCheckpointDir(adapterDir, "--adapter");
  const manifest = await readManifest(adapter);
  const desc = await readAdapterDescription(adapter, manifest, `--adapter ${adapterDir}`);
  const cfg = desc.config;
  const actual = await modelChecksum(baseDir);
  if (actual !== cfg.base_model.sha256) {
    throw new Error(
      `adapter ${adapter} was trained on base model ${cfg.base_model.path} (model.safetensors sha256 ${cfg.base_model.sha256}), ` +
        `but --model ${baseDir} has sha256 ${actual}: refusing to load it onto a different base model` +
        (await sameBaseInRun(modelDir, baseDir, cfg.base_model.sha256)),
    );
  }
  const tensors = await readAdapterTensors(adapter, manifest, desc, base.config);
  const model = PeftClassifier.create(buildBase(base), desc.settings, 0);
  assignNamed(model, tensors, path.join(adapter, ADAPTER_MODEL_FILE));
  return { model, tokenizer: new BertTokenizer(new Vocab(base.vocab), { lowerCase: cfg.lowercase }), labels: cfg.labels, maxSeqLen: cfg.max_seq_len };
}

/**
 * When --model named a run directory whose newest checkpoint is not the adapter's base (the base run trained on after
 * the fine-tune), the advice to give the earlier checkpoint of that run which is; "" when there is none.
 */
async function sameBaseInRun(modelDir: string, resolved: string, sha256: string): Promise<string> {
  if (path.resolve(modelDir) === path.resolve(resolved)) return "";
  for (const c of (await listCheckpoints(modelDir).catch(() => [])).reverse()) {
    const matches = await modelChecksum(c.dir).then((sum) => sum === sha256, () => false);
    if (matches) return `; ${modelDir} uses its newest checkpoint, but its ${path.basename(c.dir)} is that base model: give --model ${c.dir}`;
  }
  return "";
}

function baseTensors(tensors: ReadonlyMap<string, HostTensor>): Map<string, HostTensor> {
  return new Map([...tensors].filter(([k]) => !isHeadTensor(k)));
}

function buildBase(ckpt: LoadedCheckpoint): BertModel {
  const model = BertModel.create(ckpt.config, 0);
  importHfTensors(model, baseTensors(ckpt.tensors));
  return model;
}

/**
 * Assigns HF-layout tensors by name to the classifier's head/method parameters or, for base names (freeze, bitfit,
 * adapter LayerNorms), to the base model's. Every head and method parameter must be present; shapes must match.
 */
function assignNamed(model: PeftClassifier, tensors: ReadonlyMap<string, HostTensor>, file: string): void {
  const problems: string[] = [];
  const specs = new Map<string, { shape: number[]; linear: boolean }>([...model.base.specs, ...model.extraSpecs].map((s) => [s.name, s]));
  for (const s of model.extraSpecs) if (!tensors.has(s.name)) problems.push(`missing tensor '${s.name}'`);
  for (const [name, t] of tensors) {
    const s = specs.get(name);
    if (s === undefined) {
      problems.push(`unexpected tensor '${name}'`);
      continue;
    }
    const want = s.linear ? [s.shape[1], s.shape[0]] : s.shape;
    if (t.shape.join() !== want.join()) problems.push(`'${name}' has shape [${t.shape}], expected [${want}]`);
  }
  if (problems.length > 0) throw new Error(`${file}: cannot load into the classifier:\n  ${problems.join("\n  ")}`);
  for (const [name, t] of tensors) {
    const s = specs.get(name)!;
    const data = s.linear ? transpose2d(t.data, s.shape[1], s.shape[0]) : t.data;
    const v = model.extras.get(name) ?? model.base.param(name);
    assignValues(v, data, s.shape);
  }
}

/** True when `dir` looks like an adapter directory (for CLI messages). */
export function isAdapterDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE));
}
