import { z } from "zod";
import { BERT_PRESETS } from "../model/config";

/**
 * The run configuration: one YAML file describes a run. Field names are snake_case as written in YAML.
 * Every object is strict, so a misspelt field is an error rather than silently ignored.
 */

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();
const probability = z.number().min(0).max(1);

/** Byte sizes may be given as numbers or strings like "25MB", "4MiB". */
const byteSize = z.union([positiveInt, z.string().regex(/^\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i, "expected a size like 25MB or 4MiB")])
  .transform((v) => (typeof v === "number" ? v : parseByteSize(v)));

/** Parses "25MB" (decimal) or "4MiB" (binary) into bytes. */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(text);
  if (!m) throw new Error(`not a byte size: '${text}'`);
  const units: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };
  return Math.round(Number(m[1]) * units[(m[2] ?? "b").toLowerCase()]);
}

const presetNames = Object.keys(BERT_PRESETS) as [keyof typeof BERT_PRESETS, ...(keyof typeof BERT_PRESETS)[]];

export const modelSchema = z.object({
  /** A preset shape (Turc et al. 2019), or omit and give the shape fields. */
  preset: z.enum(presetNames).optional(),
  hidden_size: positiveInt.optional(),
  num_layers: positiveInt.optional(),
  num_heads: positiveInt.optional(),
  intermediate_size: positiveInt.optional(),
  max_position_embeddings: positiveInt.default(512),
  hidden_dropout: probability.default(0.1),
  attention_dropout: probability.default(0.1),
}).strict();

export const tokenizerSchema = z.object({
  /** Use this vocab.txt instead of training one. */
  vocab_file: z.string().optional(),
  vocab_size: positiveInt.default(8192),
  min_frequency: positiveInt.default(2),
  lowercase: z.boolean().default(true),
}).strict();

export const dataSchema = z.object({
  /** A built-in corpus, or "files" to read `paths`. */
  corpus: z.enum(["brown", "spam-assassin", "files"]).default("brown"),
  /** Text files/folders, .jsonl or .csv files (corpus: files). */
  paths: z.array(z.string()).default([]),
  max_seq_len: positiveInt.default(128),
  validation_fraction: z.number().min(0).max(0.5).default(0.05),
  /** Where tokenised, packed sequences are cached between runs. */
  cache_dir: z.string().default(".cache/ringtrain"),
  mlm_probability: z.number().gt(0).lt(1).default(0.15),
  whole_word_mask: z.boolean().default(false),
  /** Batches prepared ahead of the step, off the training thread. */
  prefetch_batches: nonNegativeInt.default(2),
}).strict();

export const batchSchema = z.object({
  /** Sequences per optimizer step, summed over all workers and accumulation micro-steps. */
  global_batch_size: positiveInt,
  /** Sequences per forward/backward on one worker. */
  micro_batch_size: positiveInt,
}).strict();

export const optimizerSchema = z.object({
  lr: z.number().positive().default(5e-4),
  weight_decay: z.number().min(0).default(0.01),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  eps: z.number().positive().default(1e-6),
  /** Global-norm gradient clipping; 0 turns it off. */
  grad_clip_norm: z.number().min(0).default(1.0),
}).strict();

export const scheduleSchema = z.object({
  warmup_steps: nonNegativeInt.default(0),
  decay: z.enum(["linear", "cosine", "constant"]).default("linear"),
  /** Final learning rate as a fraction of `lr`. */
  min_lr_ratio: z.number().min(0).max(1).default(0),
}).strict();

export const trainingSchema = z.object({
  max_steps: positiveInt,
  eval_interval_steps: nonNegativeInt.default(0),
  /** Validation sequences per evaluation (0 = the whole validation split). */
  eval_sequences: nonNegativeInt.default(256),
  checkpoint_interval_steps: nonNegativeInt.default(0),
  keep_checkpoints: positiveInt.default(3),
  log_interval_steps: positiveInt.default(1),
}).strict();

export const communicationSchema = z.object({
  /** Gradient fusion buffer size (DDP's default is 25 MB). */
  bucket_bytes: byteSize.default(25_000_000),
  /** Size of one pipelined wire message of the ring. */
  chunk_bytes: byteSize.default(4 * 1024 * 1024),
  compression: z.enum(["none", "fp16", "bf16"]).default("none"),
  /** Deadline of one collective (all-reduce of one step). */
  timeout_ms: positiveInt.default(60_000),
  /** How long the coordinator waits for every worker to join. */
  join_timeout_ms: positiveInt.default(120_000),
  heartbeat_interval_ms: positiveInt.default(1_000),
  /** A worker silent for this long is reported dead. */
  heartbeat_timeout_ms: positiveInt.default(10_000),
}).strict();

export const runConfigSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' and '-'").default("run"),
  output_dir: z.string().default("runs/run"),
  seed: nonNegativeInt.default(42),
  backend: z.enum(["auto", "wasm", "cpu", "tensorflow"]).default("auto"),
  objective: z.enum(["mlm", "mlm+nsp", "causal"]).default("mlm"),
  model: modelSchema,
  tokenizer: tokenizerSchema.default(tokenizerSchema.parse({})),
  data: dataSchema.default(dataSchema.parse({})),
  batch: batchSchema,
  optimizer: optimizerSchema.default(optimizerSchema.parse({})),
  schedule: scheduleSchema.default(scheduleSchema.parse({})),
  training: trainingSchema,
  communication: communicationSchema.default(communicationSchema.parse({})),
}).strict().superRefine((cfg, ctx) => {
  const m = cfg.model;
  if (m.preset === undefined && (m.hidden_size === undefined || m.num_layers === undefined || m.num_heads === undefined)) {
    ctx.addIssue({ code: "custom", path: ["model"], message: "give either `preset` or all of hidden_size, num_layers, num_heads" });
  }
  const hidden = m.hidden_size ?? (m.preset ? BERT_PRESETS[m.preset].hiddenSize : undefined);
  const heads = m.num_heads ?? (m.preset ? BERT_PRESETS[m.preset].numAttentionHeads : undefined);
  if (hidden !== undefined && heads !== undefined && hidden % heads !== 0) {
    ctx.addIssue({ code: "custom", path: ["model", "num_heads"], message: `hidden_size ${hidden} is not divisible by num_heads ${heads}` });
  }
  if (cfg.data.max_seq_len > m.max_position_embeddings) {
    ctx.addIssue({ code: "custom", path: ["data", "max_seq_len"], message: `max_seq_len ${cfg.data.max_seq_len} exceeds model.max_position_embeddings ${m.max_position_embeddings}` });
  }
  if (cfg.batch.global_batch_size % cfg.batch.micro_batch_size !== 0) {
    ctx.addIssue({ code: "custom", path: ["batch", "global_batch_size"], message: `global_batch_size ${cfg.batch.global_batch_size} is not divisible by micro_batch_size ${cfg.batch.micro_batch_size}` });
  }
  if (cfg.data.corpus === "files" && cfg.data.paths.length === 0) {
    ctx.addIssue({ code: "custom", path: ["data", "paths"], message: "corpus 'files' needs at least one path" });
  }
  if (cfg.schedule.warmup_steps > cfg.training.max_steps) {
    ctx.addIssue({ code: "custom", path: ["schedule", "warmup_steps"], message: `warmup_steps ${cfg.schedule.warmup_steps} exceeds training.max_steps ${cfg.training.max_steps}` });
  }
});

/** A validated run configuration (defaults filled in). */
export type RunConfig = z.output<typeof runConfigSchema>;
/** A run configuration as a user may write it (defaults optional). */
export type RunConfigInput = z.input<typeof runConfigSchema>;
