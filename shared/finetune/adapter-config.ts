/**
 * What a saved classifier needs beside its tensors: task.json (full classifier checkpoints) and, for PEFT runs,
 * ringtrain's adapter description. LoRA adapters with [CLS] pooling are saved in HF PEFT's format
 * (peft-format.ts): adapter_config.json is then PEFT's LoraConfig and ringtrain's fields are in ringtrain_adapter.json
 * (version 2). Every other method, and every adapter written before, has ringtrain's fields in adapter_config.json
 * (version 1). Validated with zod on read; errors name the file and the field.
 */
import { z } from "zod";
import { FINETUNE_METHODS, finetuneSchema } from "../config/schema";
import { peftSettingsOf, type PeftSettings } from "../peft/settings";

export const ADAPTER_MODEL_FILE = "adapter_model.safetensors";
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** ringtrain's fields of an adapter saved in HF PEFT's format (its adapter_config.json is PEFT's). */
export const RINGTRAIN_ADAPTER_FILE = "ringtrain_adapter.json";
export const TASK_FILE = "task.json";

const taskFields = {
  /** Class names, index = class id. */
  labels: z.array(z.string()).min(2),
  /** Sequence length the classifier was trained with (inputs are truncated to it). */
  max_seq_len: z.number().int().positive(),
  /** Whether the tokenizer lower-cases (tokenizer.lowercase of the run). */
  lowercase: z.boolean(),
  classifier_dropout: z.number().min(0).max(1),
  /** What the pooler read (finetune.pooling); files written before the field existed pooled [CLS]. */
  pooling: z.enum(["cls", "mean"]).default("cls"),
};

/** task.json of a complete classifier checkpoint (full fine-tuning, or LoRA merged into the weights). */
export const taskFileSchema = z.object({
  format: z.literal("ringtrain-classifier"),
  version: z.literal(1),
  /** How it was trained (informational: the weights are complete). */
  method: z.enum(FINETUNE_METHODS),
  ...taskFields,
}).strict();

const adapterFields = {
  format: z.literal("ringtrain-adapter"),
  method: z.enum(FINETUNE_METHODS),
  /** The method's settings as in the run config (e.g. lora: r, alpha, dropout, target_modules). */
  settings: z.record(z.string(), z.unknown()),
  base_model: z.object({
    /** Checkpoint directory the adapter was trained on (informational; the checksum decides). */
    path: z.string(),
    /** SHA-256 of its model.safetensors. */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }).strict(),
  /** Tensors in adapter_model.safetensors, under their names there (HF layouts: linear weights [out, in]). */
  tensors: z.array(z.string()).min(1),
  ...taskFields,
};

/** adapter_config.json of a PEFT run in ringtrain's format: method, its settings, and the base model it belongs to. */
export const adapterConfigSchema = z.object({ version: z.literal(1), ...adapterFields }).strict();

/**
 * ringtrain_adapter.json beside an HF PEFT adapter_config.json: the same fields, version 2; the tensor names carry
 * PEFT's "base_model.model." prefix.
 */
export const ringtrainAdapterSchema = z.object({ version: z.literal(2), ...adapterFields }).strict();

/** Parsed task.json. */
export type TaskFile = z.infer<typeof taskFileSchema>;
/** Parsed ringtrain adapter description: adapter_config.json (version 1) or ringtrain_adapter.json (version 2). */
export type AdapterConfig = z.infer<typeof adapterConfigSchema> | z.infer<typeof ringtrainAdapterSchema>;

/** Parses and validates JSON text against a schema; errors name the file and field. */
export function parseConfigFile<T>(schema: z.ZodType<T>, text: string, file: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new Error(`${file}: ${r.error.issues.map((i) => `field ${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
  return r.data;
}

/**
 * The PeftSettings a saved adapter describes. A prefix adapter always loads as the plain prefix table
 * (reparameterize: false): only the MLP's output was saved.
 */
export function settingsOfAdapter(cfg: AdapterConfig, file: string): PeftSettings {
  const section: Record<string, unknown> = { base_model: cfg.base_model.path, method: cfg.method, classifier_dropout: cfg.classifier_dropout, pooling: cfg.pooling };
  if (cfg.method !== "full" && cfg.method !== "bitfit") section[cfg.method] = cfg.settings;
  const r = finetuneSchema.safeParse(section);
  if (!r.success) throw new Error(`${file}: field settings: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const f = r.data;
  if (f.method === "prefix") f.prefix = { ...f.prefix, reparameterize: false };
  return peftSettingsOf(f, cfg.labels.length);
}
