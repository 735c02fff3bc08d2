/**
 * A checkpoint directory that is both a resumable training snapshot and a Hugging Face model directory:
 *
 *   model.safetensors           weights under HF BERT names/layouts (F32), metadata {"format": "pt"} as HF requires
 *   config.json                 HF BertConfig (snake_case)
 *   vocab.txt                   one token per line
 *   training_state.safetensors  optional: optimizer moments etc. as tensors, resume metadata as JSON in __metadata__
 *   checkpoint.json             manifest (sizes + SHA-256 of the above), written last
 *
 * Every file is written atomically and the manifest last, so a crash mid-save leaves a directory that load refuses
 * as incomplete rather than a silently half-old, half-new checkpoint.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import type { BertConfig } from "../model/config";
import { atomicWriteFile, fsyncDir, TEMP_MARKER, type WrittenFile } from "../io/atomic-write";
import { bertConfigFromHf, hfConfigFromBert } from "./hf-config";
import { CheckpointError, MANIFEST_FILE, readManifest, readVerifiedFile, writeManifest, type CheckpointManifest } from "./manifest";
import { decodeSafetensors, encodeSafetensors, readSafetensorsMetadata, tensorToFloat32, type SafetensorsTensor } from "./safetensors";

export const MODEL_FILE = "model.safetensors";
export const CONFIG_FILE = "config.json";
export const VOCAB_FILE = "vocab.txt";
export const TRAINING_STATE_FILE = "training_state.safetensors";
/** HF's tokenizer settings file: records whether the vocabulary is cased (do_lower_case). */
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";
const TRAINING_META_KEY = "ringtrain.training_state";

/** A float32 tensor with its shape (row-major). */
export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

/** What resume needs beyond the weights: tensors (e.g. Adam moments) and JSON-safe metadata (step, RNG state, ...). */
export interface TrainingState {
  tensors: Map<string, FloatTensor>;
  meta: Record<string, unknown>;
}

/** Contents to save. `padTokenId` goes to config.json (default 0); `step` is recorded in the manifest. */
export interface CheckpointData {
  config: BertConfig;
  tensors: ReadonlyMap<string, FloatTensor>;
  vocab: readonly string[];
  padTokenId?: number;
  step?: number;
  trainingState?: TrainingState;
  /** More HF config.json fields (e.g. a classifier's architectures, id2label, label2id), written as given. */
  hfConfigExtra?: Readonly<Record<string, unknown>>;
  /** Whether the tokenizer lower-cases (and strips accents); recorded in tokenizer_config.json when given. */
  lowercase?: boolean;
}

/** A loaded checkpoint; `trainingState` is present only when asked for. */
export interface LoadedCheckpoint {
  config: BertConfig;
  padTokenId: number;
  tensors: Map<string, FloatTensor>;
  vocab: string[];
  step: number | null;
  /** do_lower_case of tokenizer_config.json; undefined for checkpoints saved without one (read as uncased). */
  lowercase?: boolean;
  trainingState?: TrainingState;
}

/**
 * Saves a checkpoint into `dir` (created if needed). An existing manifest is removed first so that a save
 * interrupted while overwriting leaves the directory marked incomplete. Returns the manifest written.
 */
export async function saveCheckpoint(dir: string, data: CheckpointData): Promise<CheckpointManifest> {
  if (data.step !== undefined && (!Number.isSafeInteger(data.step) || data.step < 0)) {
    throw new Error(`saveCheckpoint ${dir}: step ${data.step} is not a non-negative integer`);
  }
  const hfConfig = { ...hfConfigFromBert(data.config, data.padTokenId ?? 0), ...data.hfConfigExtra };
  const vocabText = vocabToText(data.vocab, data.config.vocabSize, path.join(dir, VOCAB_FILE));
  // Encode (and so validate) everything before touching the directory.
  const modelChunks = encodeSafetensors(asF32Map(data.tensors), { format: "pt" }, path.join(dir, MODEL_FILE));
  const stateChunks = data.trainingState === undefined ? undefined : encodeTrainingState(dir, data.trainingState);

  await fs.mkdir(dir, { recursive: true });
  await fs.rm(path.join(dir, MANIFEST_FILE), { force: true });
  await removeStaleTempFiles(dir);
  await fsyncDir(dir);

  const written: Record<string, WrittenFile> = {};
  written[MODEL_FILE] = await atomicWriteFile(path.join(dir, MODEL_FILE), writeChunks(modelChunks));
  written[CONFIG_FILE] = await atomicWriteFile(path.join(dir, CONFIG_FILE), JSON.stringify(hfConfig, null, 2) + "\n");
  written[VOCAB_FILE] = await atomicWriteFile(path.join(dir, VOCAB_FILE), vocabText);
  if (data.lowercase !== undefined) {
    written[TOKENIZER_CONFIG_FILE] = await atomicWriteFile(path.join(dir, TOKENIZER_CONFIG_FILE), JSON.stringify(tokenizerConfig(data.lowercase, data.config), null, 2) + "\n");
  }
  const state = await writeTrainingStateChunks(dir, stateChunks);
  if (state !== undefined) written[TRAINING_STATE_FILE] = state;
  return writeManifest(dir, written, data.step ?? null);
}

/**
 * Loads a checkpoint, verifying each file against the manifest (size and SHA-256) before parsing it.
 * Refuses, naming the file, a directory without manifest (incomplete save), a corrupt or truncated file, or a
 * missing training state when `withTrainingState` is set.
 */
export async function loadCheckpoint(dir: string, opts: { withTrainingState?: boolean } = {}): Promise<LoadedCheckpoint> {
  const manifest = await readManifest(dir);

  const configFile = path.join(dir, CONFIG_FILE);
  const configBytes = await readVerifiedFile(dir, manifest, CONFIG_FILE);
  let configJson: unknown;
  try {
    configJson = JSON.parse(configBytes.toString("utf8"));
  } catch (e) {
    throw new CheckpointError(configFile, `not valid JSON: ${(e as Error).message}`);
  }
  const { config, padTokenId } = bertConfigFromHf(configJson, configFile);

  const vocabFile = path.join(dir, VOCAB_FILE);
  const vocab = textToVocab((await readVerifiedFile(dir, manifest, VOCAB_FILE)).toString("utf8"), config.vocabSize, vocabFile);

  const modelFile = path.join(dir, MODEL_FILE);
  const model = decodeSafetensors(await readVerifiedFile(dir, manifest, MODEL_FILE), modelFile);
  const tensors = toFloatMap(model.tensors, modelFile);

  const out: LoadedCheckpoint = { config, padTokenId, tensors, vocab, step: manifest.step };
  if (Object.prototype.hasOwnProperty.call(manifest.files, TOKENIZER_CONFIG_FILE)) {
    out.lowercase = parseTokenizerConfig((await readVerifiedFile(dir, manifest, TOKENIZER_CONFIG_FILE)).toString("utf8"), path.join(dir, TOKENIZER_CONFIG_FILE));
  }
  if (opts.withTrainingState) out.trainingState = await readTrainingState(dir, manifest);
  return out;
}

/** Whether a checkpoint's manifest lists a training state (what resuming needs beyond the weights). */
export function hasTrainingState(manifest: CheckpointManifest): boolean {
  return Object.prototype.hasOwnProperty.call(manifest.files, TRAINING_STATE_FILE);
}

/**
 * Writes `state` as training_state.safetensors into `dir`, or, without one, removes a stale file an earlier save
 * left there. For checkpoints that are not model directories (a fine-tune's adapter): the caller lists the returned
 * file in its manifest. Validates (JSON-safe metadata, tensor sizes) before writing anything.
 */
export async function writeTrainingState(dir: string, state: TrainingState | undefined): Promise<WrittenFile | undefined> {
  return writeTrainingStateChunks(dir, state === undefined ? undefined : encodeTrainingState(dir, state));
}

/**
 * Reads and verifies (against the manifest's size and SHA-256) the training state of the checkpoint in `dir`.
 * Throws a CheckpointError naming the file when the checkpoint has none, or when it is malformed.
 */
export async function readTrainingState(dir: string, manifest: CheckpointManifest): Promise<TrainingState> {
  const stateFile = path.join(dir, TRAINING_STATE_FILE);
  if (!hasTrainingState(manifest)) {
    throw new CheckpointError(stateFile, "checkpoint has no training state (saved for export only?), cannot resume from it");
  }
  const state = decodeSafetensors(await readVerifiedFile(dir, manifest, TRAINING_STATE_FILE), stateFile);
  return { tensors: toFloatMap(state.tensors, stateFile), meta: parseTrainingMeta(state.metadata, stateFile) };
}

/** The training state's metadata object from a safetensors header's __metadata__. */
function parseTrainingMeta(metadata: Record<string, string> | undefined, stateFile: string): Record<string, unknown> {
  const metaText = metadata?.[TRAINING_META_KEY];
  if (metaText === undefined) throw new CheckpointError(stateFile, `__metadata__ lacks ${TRAINING_META_KEY}`);
  let meta: unknown;
  try {
    meta = JSON.parse(metaText);
  } catch (e) {
    throw new CheckpointError(stateFile, `${TRAINING_META_KEY} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    throw new CheckpointError(stateFile, `${TRAINING_META_KEY} is not a JSON object`);
  }
  return meta as Record<string, unknown>;
}

/**
 * The metadata of a checkpoint's training state, read from the safetensors header alone (the moments can be twice
 * the model's size): what launch checks before a resume starts any process. Throws, naming the file, when unreadable.
 */
export async function readTrainingMeta(dir: string): Promise<Record<string, unknown>> {
  const stateFile = path.join(dir, TRAINING_STATE_FILE);
  return parseTrainingMeta(await readSafetensorsMetadata(stateFile), stateFile);
}

/** Encodes (and so validates) a training state before anything in `dir` is touched. */
function encodeTrainingState(dir: string, state: TrainingState): Uint8Array[] {
  const stateFile = path.join(dir, TRAINING_STATE_FILE);
  assertJsonSafe(state.meta, `${stateFile}: training state meta`);
  return encodeSafetensors(asF32Map(state.tensors), { [TRAINING_META_KEY]: JSON.stringify(state.meta) }, stateFile);
}

async function writeTrainingStateChunks(dir: string, chunks: Uint8Array[] | undefined): Promise<WrittenFile | undefined> {
  if (chunks !== undefined) return atomicWriteFile(path.join(dir, TRAINING_STATE_FILE), writeChunks(chunks));
  await fs.rm(path.join(dir, TRAINING_STATE_FILE), { force: true }); // stale from an earlier save
  return undefined;
}

function writeChunks(chunks: Uint8Array[]): (sink: { write(c: Uint8Array): Promise<void> }) => Promise<void> {
  return async (sink) => {
    for (const c of chunks) await sink.write(c);
  };
}

function asF32Map(tensors: ReadonlyMap<string, FloatTensor>): Map<string, SafetensorsTensor> {
  const out = new Map<string, SafetensorsTensor>();
  for (const [name, t] of tensors) out.set(name, { dtype: "F32", shape: t.shape, data: t.data });
  return out;
}

function toFloatMap(tensors: Map<string, SafetensorsTensor>, file: string): Map<string, FloatTensor> {
  const out = new Map<string, FloatTensor>();
  for (const [name, t] of tensors) out.set(name, { shape: t.shape, data: tensorToFloat32(t, `${file}: tensor ${JSON.stringify(name)}`) });
  return out;
}

/**
 * tokenizer_config.json as HF's BertTokenizer reads it: do_lower_case decides casing, and strip_accents null
 * follows it (uncased strips accents), which is what ringtrain's tokenizer does.
 */
function tokenizerConfig(lowercase: boolean, config: BertConfig): Record<string, unknown> {
  return {
    tokenizer_class: "BertTokenizer", do_lower_case: lowercase, strip_accents: null, tokenize_chinese_chars: true,
    model_max_length: config.maxPositionEmbeddings,
    unk_token: "[UNK]", sep_token: "[SEP]", pad_token: "[PAD]", cls_token: "[CLS]", mask_token: "[MASK]",
  };
}

/** do_lower_case of a tokenizer_config.json (HF's default, true, when the field is absent). */
function parseTokenizerConfig(text: string, file: string): boolean {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(file, `not valid JSON: ${(e as Error).message}`);
  }
  const lower = typeof json === "object" && json !== null ? (json as Record<string, unknown>).do_lower_case : undefined;
  if (lower !== undefined && typeof lower !== "boolean") throw new CheckpointError(file, `field do_lower_case must be true or false, got ${JSON.stringify(lower)}`);
  return lower ?? true;
}

function vocabToText(vocab: readonly string[], vocabSize: number, file: string): string {
  if (vocab.length > vocabSize) throw new Error(`${file}: vocabulary has ${vocab.length} tokens, more than config vocabSize ${vocabSize}`);
  vocab.forEach((tok, i) => {
    if (typeof tok !== "string" || tok.length === 0 || /[\r\n]/.test(tok)) {
      throw new Error(`${file}: token ${i} (${JSON.stringify(tok)}) is empty or contains a line break, cannot be stored one per line`);
    }
  });
  return vocab.length === 0 ? "" : vocab.join("\n") + "\n";
}

function textToVocab(text: string, vocabSize: number, file: string): string[] {
  if (text.length > 0 && !text.endsWith("\n")) throw new CheckpointError(file, "does not end with a newline");
  const vocab = text.length === 0 ? [] : text.slice(0, -1).split("\n");
  if (vocab.length > vocabSize) throw new CheckpointError(file, `has ${vocab.length} tokens, more than config vocab_size ${vocabSize}`);
  const empty = vocab.findIndex((t) => t.length === 0 || t.includes("\r"));
  if (empty >= 0) throw new CheckpointError(file, `line ${empty + 1} is empty or has a carriage return`);
  return vocab;
}

async function removeStaleTempFiles(dir: string): Promise<void> {
  for (const name of await fs.readdir(dir)) {
    if (name.startsWith(".") && name.includes(TEMP_MARKER)) await fs.rm(path.join(dir, name), { force: true });
  }
}

/** Throws naming the path if `v` would not survive JSON.stringify/parse unchanged (NaN, Infinity, undefined, bigint, ...). */
function assertJsonSafe(v: unknown, where: string): void {
  if (v === null || typeof v === "string" || typeof v === "boolean") return;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`${where}: ${v} is not representable in JSON`);
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => assertJsonSafe(x, `${where}[${i}]`));
    return;
  }
  if (typeof v === "object" && [Object.prototype, null].includes(Object.getPrototypeOf(v))) {
    for (const [k, x] of Object.entries(v)) assertJsonSafe(x, `${where}.${k}`);
    return;
  }
  throw new Error(`${where}: value of type ${typeof v === "object" ? v.constructor?.name ?? "object" : typeof v} is not plain JSON data`);
}
