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
  /**
   * Start pretraining from this checkpoint's weights (a checkpoint directory, or a run directory: its newest
   * verified checkpoint) instead of random ones: continued or domain-adaptive pretraining. The optimizer starts
   * fresh; the vocabulary is the checkpoint's; the shape fields above must match it.
   */
  init_from: z.string().min(1).optional(),
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
  /**
   * Text files/folders, .jsonl, .csv or .tsv files, each optionally gzipped (x.jsonl.gz) (corpus: files): the
   * training data (HF data_files["train"]); a folder's files are read by their extensions.
   */
  paths: z.array(z.string()).default([]),
  /**
   * Files/folders that are exactly the validation split (HF data_files["validation"]), read like `paths`
   * (corpus: files). When given, no validation split is drawn from `paths`: validation_fraction is not used.
   * Classification: a validation label that does not occur in the training data is reported and its examples left out.
   */
  validation_paths: z.array(z.string()).min(1).optional(),
  /**
   * Classification only: files/folders that are exactly the test split (HF data_files["test"]), read like `paths`.
   * When given, finetune.test_fraction is not used and no test split is drawn from `paths`. A test label that does
   * not occur in the training data is reported and its examples left out.
   */
  test_paths: z.array(z.string()).min(1).optional(),
  /** JSONL key / CSV header column of the text (HF run_glue's --text_column_name). */
  text_field: z.string().min(1).default("text"),
  /** JSONL key / CSV header column of the optional second text of a pair (classification). */
  text_pair_field: z.string().min(1).default("text_pair"),
  /** JSONL key / CSV header column of the class label (classification; with data.holdout, pretraining too). */
  label_field: z.string().min(1).default("label"),
  max_seq_len: positiveInt.default(128),
  /**
   * Share of the documents drawn as the validation split; not used when validation_paths is given. A pretraining
   * corpus too small for that by whole documents (one text file) is first cut into blocks of consecutive lines.
   */
  validation_fraction: z.number().min(0).max(0.5).default(0.05),
  /** Where tokenised, packed sequences are cached between runs. */
  cache_dir: z.string().default(".cache/ringtrain"),
  mlm_probability: z.number().gt(0).lt(1).default(0.15),
  whole_word_mask: z.boolean().default(false),
  /** Batches prepared ahead of the step, off the training thread. */
  prefetch_batches: nonNegativeInt.default(2),
  /**
   * Pretraining only: leave out the documents a classification run on the same corpus with this `split_seed` and
   * `test_fraction` holds out as its test split, so that pretraining on a labelled corpus's text (domain-adaptive
   * pretraining) never sees the messages that are later scored.
   */
  holdout: z.object({
    split_seed: nonNegativeInt.default(1234),
    test_fraction: z.number().gt(0).lt(0.9).default(0.2),
  }).strict().optional(),
}).strict();

export const batchSchema = z.object({
  /** Sequences per optimizer step, summed over all workers and accumulation micro-steps. */
  global_batch_size: positiveInt,
  /** Sequences per forward/backward on one worker. */
  micro_batch_size: positiveInt,
  /**
   * How the global batch is divided between workers. `even`: global_batch_size / workers each (as DDP).
   * `adaptive`: the coordinator gives faster workers more of the same global batch (from each worker's measured
   * compute time per sequence), so a synchronous step does not wait for the slowest one. The loss and gradient
   * are the same either way (sums over the whole global batch divided by its target count; dropout masks follow
   * the sequence, not the worker); only the float summation order differs.
   */
  balance: z.enum(["even", "adaptive"]).default("even"),
}).strict();

/**
 * AdamW (torch.optim.AdamW semantics; no decay on biases and LayerNorm weights, as HF Trainer groups them). The
 * defaults are BERT's pretraining recipe: HF TrainingArguments defaults to eps 1e-8 and weight_decay 0.
 */
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
  /** Progress lines on a pipe or log file every N steps (and at evaluations and the end); metrics.jsonl keeps every step. */
  log_interval_steps: positiveInt.default(1),
  /** Per-rank Chrome trace-event timeline in RUN_DIR/timeline/ and RUN_DIR/timeline.json (also `launch --timeline`). */
  timeline: z.boolean().default(false),
  /**
   * V8's --initial-old-space-size for each worker process, MiB: how far the old generation may grow before V8
   * starts full (mark-compact) collections. With node's default (0: the flag is not passed) a worker runs one almost
   * every step, and its concurrent-marking threads take CPU that the other workers on the node need.
   */
  worker_initial_old_space_mb: nonNegativeInt.default(256),
}).strict();

/** Names of the gradient compression methods (config `communication.gradient_compression.method`). */
export const GRADIENT_COMPRESSION_METHODS = ["none", "topk", "powersgd"] as const;

/**
 * Gradient compression with error feedback (worker/compression): what each rank contributes to the all-reduce.
 * `topk` sends the topk_ratio share of largest-magnitude entries of every large tensor as (index, value) pairs;
 * `powersgd` sends rank-`powersgd_rank` factors P and Q of every large 2-D weight (Vogels et al. 2019). The
 * counters (target counts, loss sums) and small tensors always travel uncompressed, so normalisation stays exact.
 * A PowerSGD factor pair costs (rows + cols) x rank floats against rows x cols. The error-feedback residuals and
 * PowerSGD's warm-start Q are per-rank memory, not checkpointed: a resumed or restarted run starts them afresh.
 */
export const gradientCompressionSchema = z.object({
  method: z.enum(GRADIENT_COMPRESSION_METHODS).default("none"),
  /** Share of each compressed tensor's entries that top-k sends, in (0, 1]. */
  topk_ratio: z.number().gt(0, "must be > 0").max(1, "must be <= 1").default(0.01),
  /** Rank of PowerSGD's low-rank approximation. */
  powersgd_rank: positiveInt.default(4),
  /** Keep what was not sent (per rank) and add it to the next step's gradient. */
  error_feedback: z.boolean().default(true),
  /** Steps (0-based) of plain all-reduce before compression starts (PyTorch's start_powerSGD_iter). */
  start_step: nonNegativeInt.default(0),
  /** Tensors with fewer elements (and, for powersgd, 1-D tensors) travel uncompressed. */
  min_compress_elements: nonNegativeInt.default(1024),
}).strict();

export const communicationSchema = z.object({
  /** Gradient fusion buffer size (DDP's default is 25 MB). */
  bucket_bytes: byteSize.default(25_000_000),
  /** Size of one pipelined wire message of the ring. */
  chunk_bytes: byteSize.default(4 * 1024 * 1024),
  compression: z.enum(["none", "fp16", "bf16"]).default("none"),
  /**
   * Overlap the all-reduce with the backward pass (as DDP does): the ring runs in its own thread and each bucket
   * starts as soon as its gradients exist, in reverse layer order. Use a bucket_bytes smaller than the gradients
   * for it to help. Off by default: on CPU workers that already use every core (one wasm thread per core) it
   * measured no gain (docs/PERFORMANCE.md, "Overlap"); turn it on where workers have cores to spare or compute
   * on a GPU. false: the ring runs on the training thread after the backward pass.
   */
  overlap: z.boolean().default(false),
  /** Deadline of one collective (all-reduce of one step). */
  timeout_ms: positiveInt.default(60_000),
  /** How long the coordinator waits for every worker to join. */
  join_timeout_ms: positiveInt.default(120_000),
  heartbeat_interval_ms: positiveInt.default(1_000),
  /** A worker silent for this long is reported dead. */
  heartbeat_timeout_ms: positiveInt.default(10_000),
  /**
   * A worker that keeps sending heartbeats (they come from their own thread) but stays in the same step and
   * phase this long is reported as stalled. Must exceed the longest step, evaluation or checkpoint.
   */
  stall_timeout_ms: positiveInt.default(300_000),
  /**
   * Mutual TLS for every coordinator and peer connection (clusters on untrusted networks): PEM files of the CA
   * and of this node's certificate and key; peers must present certificates signed by the same CA.
   */
  tls: z.object({ ca_file: z.string(), cert_file: z.string(), key_file: z.string() }).strict().optional(),
  gradient_compression: gradientCompressionSchema.default(gradientCompressionSchema.parse({})),
  /**
   * How ring peers move bytes; every choice speaks the same gRPC wire (proto/peer.proto). `auto`: http2-socket
   * (with or without TLS). `http2-raw`: gRPC on node:http2, the receiving side reading HTTP/2 straight off the socket into
   * one reused buffer; `http2-socket`: as http2-raw, and the sending side on raw sockets too (large zero-copy DATA
   * frames; supports TLS); `http2`: node:http2 on both sides; `grpc`: grpc-js (supports TLS).
   */
  transport: z.enum(["auto", "http2-raw", "http2-socket", "http2", "grpc"]).default("auto"),
  /**
   * Ring neighbours on the same machine (the same network namespace) exchange the same gRPC stream over a Unix
   * socket instead of loopback TCP: less kernel work per byte (docs/PERFORMANCE.md). Linux, http2-socket without
   * TLS; peers on other machines always use TCP. false: TCP everywhere.
   */
  unix_sockets: z.boolean().default(true),
}).strict().superRefine((c, ctx) => {
  if (c.tls !== undefined && (c.transport === "http2" || c.transport === "http2-raw")) {
    ctx.addIssue({ code: "custom", path: ["transport"], message: `${c.transport} does not support tls; use auto (http2-socket) or grpc` });
  }
  if (c.gradient_compression.method === "topk" && c.compression !== "none") {
    ctx.addIssue({ code: "custom", path: ["gradient_compression", "method"], message: `topk sends float32 indices, which ${c.compression} wire compression would corrupt; set communication.compression: none` });
  }
});

/**
 * Recovery after a worker failure (with `launch --max-restarts K`): every worker restarts from the last
 * complete checkpoint. With min_workers below the launched count the world may shrink: each restart drops the
 * failed workers' slots, down to min_workers. The global batch and the learning-rate schedule (per step) are
 * kept; accumulation steps grow so that micro_batch_size x accumulation x workers stays the global batch.
 */
export const elasticSchema = z.object({
  /** Smallest world a restart may continue with; 0 = the launched world size (no shrinking). */
  min_workers: nonNegativeInt.default(0),
  /** Largest world (documentation and validation: launch --workers may not exceed it); 0 = no limit. */
  max_workers: nonNegativeInt.default(0),
  /**
   * In-memory snapshots (Horovod's state.commit()): every this many steps rank 0 writes a full checkpoint to a
   * RAM-backed folder (snapshot_dir, default /dev/shm), so a restart loses at most these steps instead of
   * everything since the last disk checkpoint. 0 = off.
   */
  snapshot_interval_steps: nonNegativeInt.default(0),
  /** Where snapshots go; default /dev/shm/ringtrain-snapshots/<name>-<hash of output_dir> (tmpdir without /dev/shm). */
  snapshot_dir: z.string().optional(),
}).strict();

/** Names of the fine-tuning methods (config `finetune.method`). */
export const FINETUNE_METHODS = ["full", "freeze", "lora", "adapter", "prefix", "prompt", "bitfit"] as const;

/** Linear modules of an encoder layer LoRA may wrap, matched as HF PEFT does: a module matches when its path equals or ends with ".<name>". */
export const LORA_MODULE_NAMES = ["query", "key", "value", "dense", "attention.output.dense", "intermediate.dense", "output.dense"] as const;

export const loraSchema = z.object({
  /** Rank of the update A·B. */
  r: positiveInt.default(8),
  /** Scale of the update is alpha / r. */
  alpha: z.number().positive().default(16),
  /** Dropout on the input of the low-rank branch. */
  dropout: z.number().min(0).lt(1).default(0),
  target_modules: z.array(z.enum(LORA_MODULE_NAMES)).min(1).default(["query", "value"]),
  /** Fold A·B into the base weights when exporting: the run saves a complete checkpoint instead of an adapter. */
  merge: z.boolean().default(false),
}).strict();

export const adapterSchema = z.object({
  /** Bottleneck width of each adapter (hidden -> size -> hidden). */
  size: positiveInt.default(16),
  /** Also train the LayerNorms of the encoder (Houlsby et al. do). */
  train_layer_norm: z.boolean().default(true),
  /**
   * Bottleneck width of one more adapter on the embedding output, before layer 0 (0 = none, plain Houlsby). It
   * adapts token-level representations, which the sublayer adapters cannot reach (as MAD-X's invertible adapters).
   */
  embedding_size: z.number().int().min(0).default(0),
}).strict();

export const prefixSchema = z.object({
  /** Virtual tokens prepended to the keys and values of every layer. */
  num_virtual_tokens: positiveInt.default(10),
  /** During training, compute the prefixes with a small MLP from an embedding (Li & Liang 2021); only the result is saved. */
  reparameterize: z.boolean().default(true),
  /** Hidden width of that MLP. */
  hidden_size: positiveInt.default(64),
}).strict();

export const promptSchema = z.object({
  /** Soft-prompt embeddings inserted after [CLS]. */
  num_virtual_tokens: positiveInt.default(10),
  /** Initialise the prompt from the word embeddings of this text (repeated to length); random when absent. */
  init_text: z.string().min(1).optional(),
}).strict();

export const freezeSchema = z.object({
  /** Train only the top K encoder layers (plus pooler and head). */
  trainable_layers: nonNegativeInt.default(1),
}).strict();

/** Fine-tuning a pretrained checkpoint on a labelled task (task: classification). */
export const finetuneSchema = z.object({
  /** Checkpoint directory (or run directory: its latest good checkpoint) of the pretrained model. */
  base_model: z.string().min(1),
  /** pretrained: start from the base model's weights; random: same architecture and vocabulary, fresh weights (baseline). */
  init: z.enum(["pretrained", "random"]).default("pretrained"),
  method: z.enum(FINETUNE_METHODS).default("full"),
  /** Share of the training labels kept (0 < f <= 1), or a count when > 1 (an integer). Same subset for the same seed. */
  label_fraction: z.number().positive().default(1),
  /** Seed of the stratified train/validation/test split (kept apart from `seed`, so runs with different seeds share a test set). */
  split_seed: nonNegativeInt.default(1234),
  /** Share of the labelled documents held out as the test split (stratified); not used when data.test_paths is given. */
  test_fraction: z.number().gt(0).lt(0.9).default(0.2),
  /** Dropout before the classifier (HF classifier_dropout). */
  classifier_dropout: probability.default(0.1),
  /**
   * What the pooler (dense + tanh) reads: `cls`, the [CLS] position (HF BertForSequenceClassification), or `mean`,
   * the mean of the text's own positions (padding and soft-prompt rows excluded; sentence-transformers' pooling).
   * An encoder pretrained with MLM alone never trains its [CLS] output, and its mean is a better start with few labels.
   */
  pooling: z.enum(["cls", "mean"]).default("cls"),
  lora: loraSchema.default(loraSchema.parse({})),
  adapter: adapterSchema.default(adapterSchema.parse({})),
  prefix: prefixSchema.default(prefixSchema.parse({})),
  prompt: promptSchema.default(promptSchema.parse({})),
  freeze: freezeSchema.default(freezeSchema.parse({})),
}).strict();

const runConfigObject = z.object({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, "use letters, digits, '.', '_' and '-'").default("run"),
  output_dir: z.string().default("runs/run"),
  seed: nonNegativeInt.default(42),
  backend: z.enum(["auto", "wasm", "cpu", "tensorflow"]).default("auto"),
  objective: z.enum(["mlm", "mlm+nsp", "causal"]).default("mlm"),
  /** pretrain: masked-language modelling on `data`; classification: fine-tune `finetune.base_model` on labelled `data`. */
  task: z.enum(["pretrain", "classification"]).default("pretrain"),
  /** The encoder shape; required for pretraining (classification takes it from finetune.base_model). */
  model: modelSchema.optional(),
  finetune: finetuneSchema.optional(),
  tokenizer: tokenizerSchema.default(tokenizerSchema.parse({})),
  data: dataSchema.default(dataSchema.parse({})),
  batch: batchSchema,
  optimizer: optimizerSchema.default(optimizerSchema.parse({})),
  schedule: scheduleSchema.default(scheduleSchema.parse({})),
  training: trainingSchema,
  communication: communicationSchema.default(communicationSchema.parse({})),
  elastic: elasticSchema.default(elasticSchema.parse({})),
}).strict();

/** The whole run configuration, with the checks that span sections. */
export const runConfigSchema = runConfigObject.superRefine((cfg, ctx) => {
  checkTask(cfg, ctx);
  const m = cfg.model;
  if (m !== undefined) {
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
  }
  if (cfg.batch.global_batch_size % cfg.batch.micro_batch_size !== 0) {
    ctx.addIssue({ code: "custom", path: ["batch", "global_batch_size"], message: `global_batch_size ${cfg.batch.global_batch_size} is not divisible by micro_batch_size ${cfg.batch.micro_batch_size}` });
  }
  if (cfg.data.corpus === "files" && cfg.data.paths.length === 0) {
    ctx.addIssue({ code: "custom", path: ["data", "paths"], message: "corpus 'files' needs at least one path" });
  }
  for (const field of ["validation_paths", "test_paths"] as const) {
    if (cfg.data[field] !== undefined && cfg.data.corpus !== "files") {
      ctx.addIssue({ code: "custom", path: ["data", field], message: `needs corpus: files (the built-in corpus ${cfg.data.corpus} is split by its own rules)` });
    }
  }
  const { text_field: text, text_pair_field: pair, label_field: label } = cfg.data;
  if (text === pair || text === label || pair === label) {
    ctx.addIssue({ code: "custom", path: ["data", text === pair ? "text_pair_field" : "label_field"], message: `text_field, text_pair_field and label_field must differ (${text}, ${pair}, ${label})` });
  }
  if (cfg.data.test_paths !== undefined && cfg.task !== "classification") {
    ctx.addIssue({ code: "custom", path: ["data", "test_paths"], message: "only used with task: classification (pretraining has no test split)" });
  }
});

/** Fields that must agree with `task`: pretraining needs `model`, classification needs `finetune` and labels. */
function checkTask(cfg: z.output<typeof runConfigObject>, ctx: z.RefinementCtx): void {
  if (cfg.task === "pretrain") {
    if (cfg.model === undefined) ctx.addIssue({ code: "custom", path: ["model"], message: "required field is missing (task: pretrain needs the model shape)" });
    if (cfg.finetune !== undefined) ctx.addIssue({ code: "custom", path: ["finetune"], message: "only used with task: classification" });
    if (cfg.model?.init_from !== undefined && cfg.tokenizer.vocab_file !== undefined) {
      ctx.addIssue({ code: "custom", path: ["tokenizer", "vocab_file"], message: "model.init_from takes the vocabulary of its checkpoint; remove tokenizer.vocab_file" });
    }
    return;
  }
  const f = cfg.finetune;
  if (f === undefined) {
    ctx.addIssue({ code: "custom", path: ["finetune"], message: "required field is missing (task: classification needs finetune.base_model)" });
    return;
  }
  if (cfg.model !== undefined) ctx.addIssue({ code: "custom", path: ["model"], message: "task: classification takes the model shape from finetune.base_model; remove `model`" });
  // The vocabulary is the base model's (its vocab.txt); these would be ignored, however they differ from it.
  const tokenizerDefaults = tokenizerSchema.parse({});
  if (cfg.tokenizer.vocab_file !== undefined) {
    ctx.addIssue({ code: "custom", path: ["tokenizer", "vocab_file"], message: "task: classification uses the vocabulary of finetune.base_model (its vocab.txt); remove tokenizer.vocab_file" });
  }
  for (const key of ["vocab_size", "min_frequency"] as const) {
    if (cfg.tokenizer[key] !== tokenizerDefaults[key]) {
      ctx.addIssue({ code: "custom", path: ["tokenizer", key], message: `task: classification trains no vocabulary (it uses finetune.base_model's); remove tokenizer.${key}` });
    }
  }
  if (cfg.data.holdout !== undefined) ctx.addIssue({ code: "custom", path: ["data", "holdout"], message: "only used with task: pretrain (classification holds out finetune.test_fraction itself)" });
  if (f.label_fraction > 1 && !Number.isInteger(f.label_fraction)) {
    ctx.addIssue({ code: "custom", path: ["finetune", "label_fraction"], message: `expected a fraction in (0, 1] or a whole number of labels, got ${f.label_fraction}` });
  }
  // Given validation or test files take no share of data.paths, so the shares only add up when both are drawn.
  if (cfg.data.test_paths === undefined && cfg.data.validation_paths === undefined && f.test_fraction + cfg.data.validation_fraction >= 0.9) {
    ctx.addIssue({ code: "custom", path: ["finetune", "test_fraction"], message: `test_fraction ${f.test_fraction} + data.validation_fraction ${cfg.data.validation_fraction} leaves too little to train on` });
  }
  if (f.init === "random" && f.method !== "full") {
    ctx.addIssue({ code: "custom", path: ["finetune", "init"], message: `init: random trains from scratch, which needs method: full (got ${f.method})` });
  }
  if (cfg.objective !== "mlm") ctx.addIssue({ code: "custom", path: ["objective"], message: "task: classification has its own objective; leave `objective` unset" });
}

/** A validated run configuration (defaults filled in). */
export type RunConfig = z.output<typeof runConfigSchema>;
/** A run configuration as a user may write it (defaults optional). */
export type RunConfigInput = z.input<typeof runConfigSchema>;
