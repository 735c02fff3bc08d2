/**
 * Hugging Face PEFT's on-disk format for a LoRA sequence classifier, so that
 * `PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(base), adapter_dir)` loads what ringtrain
 * saves. Established by reading PEFT's source (huggingface/peft; the commit where the code index named one, else the
 * function, as stored there):
 *
 * - Tensor names: src/peft/utils/save_and_load.py (commit 000b5847), get_peft_model_state_dict keeps the keys of the
 *   PeftModel's state dict that contain "lora_" and removes the adapter name ("...query.lora_A.default.weight" ->
 *   "...query.lora_A.weight"); a PeftModel holds a LoraModel as `base_model`, which holds the transformers model as
 *   `model`, hence the "base_model.model." prefix. set_peft_model_state_dict inserts the adapter name back.
 * - Layout: src/peft/tuners/lora/layer.py (commit b28a09c4), LoraLayer.update_layer: lora_A = nn.Linear(in_features,
 *   r, bias=False) and lora_B = nn.Linear(r, out_features, bias=False), so A is [r, in] and B is [out, r];
 *   scaling = lora_alpha / r (lora_alpha / sqrt(r) only with use_rslora); the branch is lora_B(lora_A(dropout(x))).
 * - modules_to_save: ModulesToSaveWrapper.adapter_state_dict (src/peft/utils/other.py) saves the wrapped module's own
 *   state dict under the module's name, so a wrapped `bert.pooler` saves "base_model.model.bert.pooler.dense.weight".
 *   PeftModelForSequenceClassification.__init__ (src/peft/peft_model.py) adds "classifier" and "score" to
 *   modules_to_save for task_type SEQ_CLS; _set_trainable (other.py) wraps every module whose name ends with an
 *   entry. ringtrain also trains the pooler (part of its head), so "pooler" is listed as well.
 * - Target matching: check_target_module_exists (src/peft/tuners/tuners_utils.py): a module is wrapped when its
 *   name is in target_modules or ends with "." + an entry.
 * - Config: src/peft/config.py (commit fd21ef80), PeftConfigMixin.from_peft_type builds the config class of
 *   `peft_type` from every key of adapter_config.json. Unknown keys raise TypeError in PEFT before 0.13 and give a
 *   warning after (#2038), so adapter_config.json holds PEFT's keys only and ringtrain's own fields live in
 *   ringtrain_adapter.json.
 *
 * Only LoRA with [CLS] pooling maps exactly. PEFT's prompt tuning prepends the soft prompt before [CLS] (the pooler
 * then reads a virtual token; peft_model.py, PeftModelForSequenceClassification.forward) where ringtrain inserts it
 * after [CLS]; PEFT's prefix tuning passes past_key_values to BERT, whose embeddings then shift the positions of the
 * text by the prefix length (huggingface/transformers src/transformers/models/bert/modeling_bert.py, commit
 * 8ec58104, BertEmbeddings.forward: position_ids[past_key_values_length : seq_length + past_key_values_length]), which
 * ringtrain does not; PEFT has no Houlsby adapter, BitFit or top-K freezing; and BertForSequenceClassification pools
 * [CLS] only. Those keep ringtrain's own format.
 */
import { z } from "zod";
import type { BertConfig } from "../model/config";
import type { PeftSettings } from "../peft/settings";
import { LAYER_LINEARS, loraTargets } from "../peft/specs";

/** Prefix of every tensor name PEFT saves for a non-prompt-learning method (PeftModel.base_model.model.). */
export const PEFT_KEY_PREFIX = "base_model.model.";

/** Modules saved whole (PEFT's modules_to_save): the classification head and the pooler, both trained here. */
export const PEFT_MODULES_TO_SAVE = ["classifier", "pooler"] as const;

/** True when the classifier's adapter has an exact HF PEFT equivalent (LoRA, CLS pooling) and is saved in its format. */
export function peftExportable(s: PeftSettings): boolean {
  return s.method === "lora" && s.pooling === "cls";
}

/** A ringtrain tensor name (HF BertForSequenceClassification's) as PEFT saves it. */
export function toPeftKey(name: string): string {
  return PEFT_KEY_PREFIX + name;
}

/** The ringtrain name of a PEFT tensor name; throws naming the key when it lacks PEFT's prefix. */
export function fromPeftKey(key: string, file: string): string {
  if (!key.startsWith(PEFT_KEY_PREFIX)) throw new Error(`${file}: tensor '${key}' does not start with HF PEFT's '${PEFT_KEY_PREFIX}'`);
  return key.slice(PEFT_KEY_PREFIX.length);
}

/** PEFT's rule (check_target_module_exists): `key` is wrapped when listed or when it ends with "." + an entry. */
export function peftTargets(key: string, targetModules: readonly string[]): boolean {
  return targetModules.some((t) => key === t || key.endsWith(`.${t}`));
}

/** Names of every nn.Linear in HF's BertForSequenceClassification of this shape (what PEFT's matching sees). */
export function hfClassifierLinears(cfg: BertConfig): string[] {
  const out: string[] = [];
  for (let l = 0; l < cfg.numHiddenLayers; l++) for (const m of LAYER_LINEARS) out.push(`bert.encoder.layer.${l}.${m}`);
  out.push("bert.pooler.dense", "classifier");
  return out;
}

/**
 * target_modules for PEFT that wrap exactly the linears ringtrain's `targets` wrap: the attention projections by
 * their own names (query, key, value), the dense layers by their path inside a layer (attention.output.dense,
 * intermediate.dense, output.dense), so that ringtrain's "dense" does not also reach bert.pooler.dense in PEFT.
 * Checked against PEFT's rule over every linear of the model; throws if they ever disagree.
 */
export function peftTargetModules(cfg: BertConfig, targets: readonly string[]): string[] {
  const wrapped = LAYER_LINEARS.filter((m) => loraTargets(m, targets));
  const names = wrapped.map((m) => (m.startsWith("attention.self.") ? m.slice("attention.self.".length) : m));
  const full = new Set(Array.from({ length: cfg.numHiddenLayers }, (_, l) => wrapped.map((m) => `bert.encoder.layer.${l}.${m}`)).flat());
  const want = hfClassifierLinears(cfg).filter((k) => full.has(k));
  const got = hfClassifierLinears(cfg).filter((k) => peftTargets(k, names));
  if (want.join() !== got.join()) throw new Error(`PEFT target_modules [${names}] would wrap [${got}], ringtrain wraps [${want}]`);
  return names;
}

/**
 * adapter_config.json of a LoRA classifier as HF PEFT reads it: LoraConfig fields only, and only ones PEFT has had
 * since 0.7 (use_rslora; use_dora and later fields are left at PEFT's defaults, so older versions accept the file).
 */
export const peftLoraConfigSchema = z.object({
  peft_type: z.literal("LORA"),
  task_type: z.literal("SEQ_CLS"),
  base_model_name_or_path: z.string().nullable(),
  revision: z.string().nullable(),
  inference_mode: z.boolean(),
  r: z.number().int().positive(),
  lora_alpha: z.number().positive(),
  lora_dropout: z.number().min(0).lt(1),
  target_modules: z.array(z.string()).min(1),
  modules_to_save: z.array(z.string()),
  bias: z.literal("none"),
  fan_in_fan_out: z.literal(false),
  use_rslora: z.literal(false),
  init_lora_weights: z.boolean(),
  layers_to_transform: z.null(),
  layers_pattern: z.null(),
}).strict();

/** Parsed PEFT adapter_config.json. */
export type PeftLoraConfig = z.infer<typeof peftLoraConfigSchema>;

/** The PEFT LoraConfig of a LoRA classifier on the base checkpoint `baseDir` (absolute path, HF-loadable). */
export function peftLoraConfig(cfg: BertConfig, s: PeftSettings, baseDir: string): PeftLoraConfig {
  if (!peftExportable(s)) throw new Error(`method ${s.method} with ${s.pooling} pooling has no exact HF PEFT equivalent`);
  return {
    peft_type: "LORA",
    task_type: "SEQ_CLS",
    base_model_name_or_path: baseDir,
    revision: null,
    inference_mode: true,
    r: s.lora.r,
    lora_alpha: s.lora.alpha,
    lora_dropout: s.lora.dropout,
    target_modules: peftTargetModules(cfg, s.lora.target_modules),
    modules_to_save: [...PEFT_MODULES_TO_SAVE],
    bias: "none",
    fan_in_fan_out: false,
    use_rslora: false,
    init_lora_weights: true,
    layers_to_transform: null,
    layers_pattern: null,
  };
}

/**
 * Differences between a PEFT adapter_config.json and the settings ringtrain_adapter.json records (both written
 * together; a hand-edited one would load other weights in PEFT than here). Empty when they agree.
 */
export function peftConfigMismatches(cfg: BertConfig, peft: PeftLoraConfig, s: PeftSettings): string[] {
  const want = peftLoraConfig(cfg, s, peft.base_model_name_or_path ?? "");
  const out: string[] = [];
  for (const k of ["r", "lora_alpha", "lora_dropout"] as const) if (peft[k] !== want[k]) out.push(`${k} ${peft[k]} (settings say ${want[k]})`);
  const sorted = (a: readonly string[]): string => [...new Set(a)].sort().join(",");
  if (sorted(peft.target_modules) !== sorted(want.target_modules)) out.push(`target_modules [${peft.target_modules}] (settings say [${want.target_modules}])`);
  const missing = want.modules_to_save.filter((m) => !peft.modules_to_save.includes(m));
  if (missing.length > 0) out.push(`modules_to_save [${peft.modules_to_save}] lacks ${missing.join(", ")}`);
  return out;
}
