/**
 * What node 0 prepares before starting the coordinator: the vocabulary every worker uses and the sizes of the data
 * splits the coordinator shards. Pretraining trains (or reuses) a WordPiece vocabulary and packs the corpus;
 * classification takes the base checkpoint's vocabulary and encodes the labelled splits.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { RunConfig } from "../shared/config/schema";
import { ConfigError } from "../shared/config/load";
import { ADAPTER_CONFIG_FILE } from "../shared/finetune/adapter-config";
import { pretrainingCorpus, prepareNspData, preparePretrainingData, prepareTokenizer } from "../shared/pipeline/prepare";
import { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { Vocab } from "../shared/tokenizer/vocab";
import { loadBaseModel, resolveCheckpointDir } from "../shared/finetune/base-model";
import { prepareClassificationData } from "../shared/finetune/prepare";
import { peftSettingsOf } from "../shared/peft/settings";
import { modelConfigOf } from "../shared/config/derived";
import { countClassifierParams, formatParamCounts } from "../shared/peft/specs";
import { loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { formatClassificationReport, type ClassificationMetrics } from "../shared/train/classification-metrics";
import { CLASSIFICATION_METRICS_FILE } from "../coordinator/classification";

/** The vocabulary and split sizes of a job (plus the class names of a classification job). */
export interface JobData {
  vocab: string[];
  numTrain: number;
  numValidation: number;
  numTest?: number;
  labels?: string[];
}

/**
 * Checks a classification config against its base model before anything starts: finetune.base_model (resolved
 * against the working directory, like output_dir) must hold a complete checkpoint, and the sequence length (with a
 * soft prompt's tokens) must fit its position table. Rewrites base_model to the checkpoint directory it resolved to.
 */
export async function checkFinetuneConfig(cfg: RunConfig, source: string): Promise<void> {
  const f = cfg.finetune;
  if (cfg.task !== "classification" || f === undefined) return;
  const wanted = path.resolve(f.base_model);
  if (!fs.existsSync(wanted)) throw new ConfigError(`${source}: field finetune.base_model: not found: ${wanted}`);
  let dir: string;
  try {
    dir = await resolveCheckpointDir(wanted, "");
  } catch (e) {
    throw new ConfigError(`${source}: field finetune.base_model: ${(e as Error).message}`);
  }
  if (fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE))) {
    throw new ConfigError(`${source}: field finetune.base_model: ${wanted} is an adapter run (${ADAPTER_CONFIG_FILE}), not a model; give the model it was trained from`);
  }
  refuseInsideOutput(cfg, source, "finetune.base_model", dir);
  const ckpt = await loadCheckpoint(dir).catch((e: Error) => {
    throw new ConfigError(`${source}: field finetune.base_model: ${e.message}`);
  });
  const extra = f.method === "prompt" ? f.prompt.num_virtual_tokens : 0;
  if (cfg.data.max_seq_len + extra > ckpt.config.maxPositionEmbeddings) {
    throw new ConfigError(`${source}: field data.max_seq_len: ${cfg.data.max_seq_len}${extra ? ` + ${extra} prompt tokens` : ""} exceeds the base model's max_position_embeddings ${ckpt.config.maxPositionEmbeddings}`);
  }
  if (ckpt.config.isDecoder === true) refuseOnDecoder(f, source, dir);
  if (f.method === "freeze" && f.freeze.trainable_layers > ckpt.config.numHiddenLayers) {
    throw new ConfigError(`${source}: field finetune.freeze.trainable_layers: ${f.freeze.trainable_layers} exceeds the base model's ${ckpt.config.numHiddenLayers} layers`);
  }
  followCheckpointCasing(cfg, ckpt.lowercase, dir);
  f.base_model = dir;
}

/**
 * A decoder base (objective causal, is_decoder) attends only backwards: its [CLS] output, at position 0, sees only
 * [CLS] and is the same for every text, so CLS pooling would learn nothing; the model has no prefix or prompt path
 * (the workers would fail at their first step). Both are refused before anything starts.
 */
function refuseOnDecoder(f: NonNullable<RunConfig["finetune"]>, source: string, dir: string): void {
  if (f.method === "prefix" || f.method === "prompt") {
    throw new ConfigError(`${source}: field finetune.method: ${f.method} tuning is not supported on a decoder base model (${dir} was trained with objective causal, is_decoder); use lora, adapter, bitfit, freeze or full`);
  }
  if (f.pooling === "cls") {
    throw new ConfigError(
      `${source}: field finetune.pooling: cls reads the [CLS] position, which in a decoder base model (${dir}, objective causal) attends only to itself ` +
        `and is the same for every text; set finetune.pooling: mean`,
    );
  }
}

/**
 * A checkpoint's vocabulary only fits text cased the way it was trained: tokenizer.lowercase follows the
 * checkpoint's tokenizer_config.json (as HF's AutoTokenizer does), with a note when the config said otherwise.
 */
function followCheckpointCasing(cfg: RunConfig, lowercase: boolean | undefined, dir: string): void {
  if (lowercase === undefined || lowercase === cfg.tokenizer.lowercase) return;
  process.stderr.write(`launch: note: tokenizer.lowercase is ${lowercase}, as ${dir} was trained (its tokenizer_config.json), not ${cfg.tokenizer.lowercase}\n`);
  cfg.tokenizer.lowercase = lowercase;
}

/** The shape fields of a BERT config that a checkpoint must share with the model it initialises. */
const SHAPE_FIELDS = ["vocabSize", "hiddenSize", "numHiddenLayers", "numAttentionHeads", "intermediateSize", "maxPositionEmbeddings", "typeVocabSize"] as const;

/**
 * Checks a pretraining config's model.init_from before anything starts: it must hold a complete checkpoint whose
 * shape matches the model section (the vocabulary size is the checkpoint's own). Rewrites init_from to the
 * checkpoint directory it resolved to, so every worker (and a later resume) reads the same one.
 */
export async function checkInitFrom(cfg: RunConfig, source: string): Promise<void> {
  const m = cfg.model;
  if (cfg.task !== "pretrain" || m?.init_from === undefined) return;
  const field = `${source}: field model.init_from`;
  const wanted = path.resolve(m.init_from);
  if (!fs.existsSync(wanted)) throw new ConfigError(`${field}: not found: ${wanted}`);
  let dir: string;
  try {
    dir = await resolveCheckpointDir(wanted, "");
  } catch (e) {
    throw new ConfigError(`${field}: ${(e as Error).message}`);
  }
  refuseInsideOutput(cfg, source, "model.init_from", dir);
  const ckpt = await loadCheckpoint(dir).catch((e: Error) => {
    throw new ConfigError(`${field}: ${e.message}`);
  });
  const want = modelConfigOf(cfg, ckpt.vocab.length);
  const have = ckpt.config;
  const differ = SHAPE_FIELDS.filter((k) => want[k] !== have[k]).map((k) => `${k} ${have[k]} in the checkpoint, ${want[k]} in the config`);
  if ((want.isDecoder ?? false) !== (have.isDecoder ?? false)) differ.push(`is_decoder ${have.isDecoder ?? false} in the checkpoint, ${want.isDecoder ?? false} for objective ${cfg.objective}`);
  if (differ.length > 0) throw new ConfigError(`${field}: ${dir} does not fit the model section: ${differ.join("; ")}`);
  followCheckpointCasing(cfg, ckpt.lowercase, dir);
  m.init_from = dir;
}

/** Prepares the job's vocabulary and data on node 0 (`resumeVocab`: the vocabulary of the checkpoint resumed). */
export async function prepareJobData(cfg: RunConfig, resumeVocab: Vocab | undefined, log: (line: string) => void): Promise<JobData> {
  if (cfg.task === "classification" && cfg.finetune !== undefined) {
    const base = await loadBaseModel(cfg.finetune.base_model);
    const tokenizer = new BertTokenizer(new Vocab(base.checkpoint.vocab), { lowerCase: cfg.tokenizer.lowercase });
    const data = prepareClassificationData(cfg, tokenizer);
    for (const w of data.warnings) process.stderr.write(`launch: warning: ${w}\n`);
    const counts = countClassifierParams(base.checkpoint.config, peftSettingsOf(cfg.finetune, data.labels.length));
    if (cfg.finetune.label_fraction > 1 && cfg.finetune.label_fraction > data.trainAvailable) {
      process.stderr.write(`launch: warning: finetune.label_fraction asks for ${cfg.finetune.label_fraction} labels; the training split has ${data.trainAvailable}: all are used\n`);
    }
    // HF users give train (and validation) files and expect all of train to be trained on: say where the test split came from
    const drawnTest = cfg.data.corpus === "files" && cfg.data.test_paths === undefined ? ` (the test split is finetune.test_fraction ${cfg.finetune.test_fraction} of data.paths; data.test_paths names a test file instead)` : "";
    log(`data: ${data.labels.length} classes; ${data.train.count} of ${data.trainAvailable} training labels kept, ${data.validation.count} validation, ${data.test.count} test examples of ${cfg.data.max_seq_len} tokens${drawnTest}`);
    const what = cfg.finetune.init === "random" ? `${cfg.finetune.method} training from random weights, in the shape and vocabulary of ${base.dir}` : `${cfg.finetune.method} fine-tuning of ${base.dir}`;
    log(`${what}: ${formatParamCounts(counts)}; all-reduced per step: ${4 * counts.trainable + 16} bytes`);
    return { vocab: [...base.checkpoint.vocab], numTrain: data.train.count, numValidation: data.validation.count, numTest: data.test.count, labels: data.labels };
  }
  const { docs, note } = pretrainingCorpus(cfg);
  if (note !== undefined) log(`data: ${note}`);
  const initFrom = cfg.model?.init_from;
  const fixedVocab = resumeVocab ?? (initFrom !== undefined ? new Vocab((await loadCheckpoint(initFrom)).vocab) : undefined);
  if (initFrom !== undefined && resumeVocab === undefined) log(`model.init_from: starting from the weights and vocabulary of ${initFrom}`);
  const tokenizer = fixedVocab ? new BertTokenizer(fixedVocab, { lowerCase: cfg.tokenizer.lowercase }) : await prepareTokenizer(cfg, docs, log);
  if (cfg.objective === "mlm+nsp") {
    const nsp = prepareNspData(cfg, docs, tokenizer);
    log(`data: ${docs.length} documents -> ${nsp.train.count} train / ${nsp.validation.count} validation sentence-pair samples of ${cfg.data.max_seq_len} tokens`);
    warnNoValidation(cfg, docs.length, nsp.validation.count);
    return { vocab: [...tokenizer.vocab.tokens], numTrain: nsp.train.count, numValidation: nsp.validation.count };
  }
  const data = preparePretrainingData(cfg, docs, tokenizer);
  log(`data: ${docs.length} documents -> ${data.train.count} train / ${data.validation.count} validation sequences of ${cfg.data.max_seq_len} tokens${data.fromCache ? " (cached)" : ""}`);
  warnNoValidation(cfg, docs.length, data.validation.count);
  return { vocab: [...tokenizer.vocab.tokens], numTrain: data.train.count, numValidation: data.validation.count };
}

/**
 * The split is by whole documents (a text file is one document, a JSONL/CSV row one; too few documents are cut into
 * blocks of lines first), so a tiny corpus, or one long line, can still end with no validation split although
 * validation_fraction asks for one: say so rather than never evaluate.
 */
function warnNoValidation(cfg: RunConfig, documents: number, validation: number): void {
  if (validation > 0 || cfg.data.validation_fraction === 0 || cfg.training.eval_interval_steps === 0) return;
  process.stderr.write(
    `launch: warning: data: no validation split from ${documents} document(s) (the split keeps documents, or blocks of lines, whole; the held-out part was too short for one sequence): ` +
      `training.eval_interval_steps will evaluate nothing; give more text, or data.validation_paths\n`,
  );
}

/**
 * The test (and last validation) report of a finished classification run, from its run directory. `validationTotal`
 * (the size of the validation split) lets it say when training.eval_sequences evaluated only part of it.
 */
export function classificationReport(runDir: string, validationTotal?: number): string | undefined {
  const file = path.join(runDir, CLASSIFICATION_METRICS_FILE);
  if (!fs.existsSync(file)) return undefined;
  const m = JSON.parse(fs.readFileSync(file, "utf8")) as { validation?: ClassificationMetrics & { step: number }; test?: ClassificationMetrics & { step: number } };
  const parts: string[] = [];
  if (m.validation) {
    parts.push(formatClassificationReport(m.validation, `validation (step ${m.validation.step})`));
    // an HF user compares these with the whole validation set: say that only a sample was evaluated, and why
    if (validationTotal !== undefined && m.validation.examples < validationTotal) {
      parts.push(`  (a sample: ${m.validation.examples} of the ${validationTotal} validation examples, as training.eval_sequences says; 0 evaluates them all)`);
    }
  }
  if (m.test) parts.push(formatClassificationReport(m.test, `test (step ${m.test.step})`));
  return parts.length > 0 ? parts.join("\n") + `\n(metrics in ${file})\n` : undefined;
}

/**
 * A run's output_dir must not hold the checkpoint it starts from: its own checkpoints, config.yaml and metrics would
 * be written over the model it reads (and --overwrite would delete it).
 */
function refuseInsideOutput(cfg: RunConfig, source: string, field: string, checkpointDir: string): void {
  const out = path.resolve(cfg.output_dir);
  const rel = path.relative(out, path.resolve(checkpointDir));
  if (rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))) {
    throw new ConfigError(`${source}: field output_dir: ${out} holds ${field} (${checkpointDir}); writing this run there would overwrite the model it starts from: choose another output_dir (--output)`);
  }
}
