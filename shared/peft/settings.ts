/** The fine-tuning settings the model side needs, taken from a run config's `finetune` section. */
import type { RunConfig } from "../config/schema";

/** A validated `finetune` section (defaults filled in). */
export type FinetuneConfig = NonNullable<RunConfig["finetune"]>;

/** One of full | freeze | lora | adapter | prefix | prompt | bitfit. */
export type FinetuneMethod = FinetuneConfig["method"];

/** What builds a classifier: the method and its settings, the classes, and the head's dropout. */
export interface PeftSettings {
  method: FinetuneMethod;
  numLabels: number;
  classifierDropout: number;
  /** cls: the pooler reads [CLS]; mean: the mean of the text's own positions. */
  pooling: FinetuneConfig["pooling"];
  lora: FinetuneConfig["lora"];
  adapter: FinetuneConfig["adapter"];
  prefix: FinetuneConfig["prefix"];
  prompt: FinetuneConfig["prompt"];
  freeze: FinetuneConfig["freeze"];
}

/** The PeftSettings of a `finetune` section for a task with `numLabels` classes. */
export function peftSettingsOf(f: FinetuneConfig, numLabels: number): PeftSettings {
  if (!Number.isInteger(numLabels) || numLabels < 2) throw new Error(`a classifier needs at least 2 classes, got ${numLabels}`);
  return { method: f.method, numLabels, classifierDropout: f.classifier_dropout, pooling: f.pooling, lora: f.lora, adapter: f.adapter, prefix: f.prefix, prompt: f.prompt, freeze: f.freeze };
}

/** The settings that matter for the method (what adapter_config.json records). */
export function methodSettings(s: PeftSettings): Record<string, unknown> {
  switch (s.method) {
    case "lora":
      return { ...s.lora };
    case "adapter":
      return { ...s.adapter };
    case "prefix":
      return { ...s.prefix };
    case "prompt":
      return { ...s.prompt };
    case "freeze":
      return { ...s.freeze };
    case "full":
    case "bitfit":
      return {};
  }
}
