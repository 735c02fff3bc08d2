/**
 * Which parameters a fine-tuning method adds and trains. Pure (no tensors), so launch can print parameter counts
 * before any worker starts, and the model, the trainer and the adapter file all agree on one list.
 */
import type { BertConfig } from "../model/config";
import { bertParamSpecs, type ParamSpec } from "../model/params";
import type { PeftSettings } from "./settings";

/** Name prefix of the optional adapter on the embedding output (adapter.embedding_size > 0). */
export const EMBEDDING_ADAPTER = "bert.embeddings.adapter";

/** The encoder-layer linear modules, as paths inside a layer (LoRA targets match their suffixes). */
export const LAYER_LINEARS = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"] as const;

/** A parameter added by fine-tuning (head or PEFT), with how it is initialised. */
export interface ExtraSpec extends ParamSpec {
  /** Initial values: normal(0, std), uniform(-bound, bound), or constants (zeros/ones as in ParamSpec.init). */
  std?: number;
  bound?: number;
  /** Trained, but saved in another form (prefix MLP: the prefixes it computes are saved instead). */
  transient?: boolean;
}

/** True when LoRA target `target` names the layer module `module` (equal, or a suffix after a dot; HF PEFT's rule). */
export function loraTargets(module: string, targets: readonly string[]): boolean {
  return targets.some((t) => module === t || module.endsWith(`.${t}`));
}

/** Input and output sizes of a layer linear module. */
export function linearShape(cfg: BertConfig, module: string): [number, number] {
  const H = cfg.hiddenSize;
  if (module === "intermediate.dense") return [H, cfg.intermediateSize];
  if (module === "output.dense") return [cfg.intermediateSize, H];
  return [H, H];
}

/**
 * Parameters fine-tuning adds, in a fixed order: the classification head (classifier.weight [H, labels], stored
 * [in, out] like every linear here), then the method's own (LoRA A/B per target, adapter down/up per sublayer,
 * prefix tables or their MLP, soft prompt).
 */
export function extraParamSpecs(cfg: BertConfig, s: PeftSettings): ExtraSpec[] {
  const H = cfg.hiddenSize;
  const L = cfg.numHiddenLayers;
  const out: ExtraSpec[] = [
    { name: "classifier.weight", shape: [H, s.numLabels], init: "normal", std: cfg.initializerRange, linear: true, decay: true },
    { name: "classifier.bias", shape: [s.numLabels], init: "zeros", linear: false, decay: false },
  ];
  if (s.method === "lora") {
    const r = s.lora.r;
    for (let l = 0; l < L; l++) {
      for (const module of LAYER_LINEARS) {
        if (!loraTargets(module, s.lora.target_modules)) continue;
        const [inDim, outDim] = linearShape(cfg, module);
        const p = `bert.encoder.layer.${l}.${module}`;
        // A: kaiming-uniform as HF (bound 1/sqrt(in)); B: zeros, so the model starts exactly as the base.
        out.push({ name: `${p}.lora_A.weight`, shape: [inDim, r], init: "normal", bound: 1 / Math.sqrt(inDim), linear: true, decay: true });
        out.push({ name: `${p}.lora_B.weight`, shape: [r, outDim], init: "zeros", linear: true, decay: true });
      }
    }
  } else if (s.method === "adapter") {
    // Up-projection zero: each adapter starts as the identity (near-identity training start, Houlsby et al.).
    const bottleneck = (p: string, m: number): void => {
      out.push({ name: `${p}.down.weight`, shape: [H, m], init: "normal", std: cfg.initializerRange, linear: true, decay: true });
      out.push({ name: `${p}.down.bias`, shape: [m], init: "zeros", linear: false, decay: false });
      out.push({ name: `${p}.up.weight`, shape: [m, H], init: "zeros", linear: true, decay: true });
      out.push({ name: `${p}.up.bias`, shape: [H], init: "zeros", linear: false, decay: false });
    };
    if (s.adapter.embedding_size > 0) bottleneck(EMBEDDING_ADAPTER, s.adapter.embedding_size);
    for (let l = 0; l < L; l++) {
      for (const where of ["attention", "ffn"] as const) bottleneck(`bert.encoder.layer.${l}.adapter.${where}`, s.adapter.size);
    }
  } else if (s.method === "prefix") {
    const n = s.prefix.num_virtual_tokens;
    if (s.prefix.reparameterize) {
      const hid = s.prefix.hidden_size;
      out.push({ name: "prefix.embedding.weight", shape: [n, H], init: "normal", std: 1, linear: false, decay: false, transient: true });
      out.push({ name: "prefix.mlp.0.weight", shape: [H, hid], init: "normal", std: cfg.initializerRange, linear: true, decay: true, transient: true });
      out.push({ name: "prefix.mlp.0.bias", shape: [hid], init: "zeros", linear: false, decay: false, transient: true });
      out.push({ name: "prefix.mlp.2.weight", shape: [hid, 2 * L * H], init: "normal", std: cfg.initializerRange, linear: true, decay: true, transient: true });
      out.push({ name: "prefix.mlp.2.bias", shape: [2 * L * H], init: "zeros", linear: false, decay: false, transient: true });
    } else {
      out.push(prefixTableSpec(cfg, n));
    }
  } else if (s.method === "prompt") {
    out.push({ name: "prompt.embedding.weight", shape: [s.prompt.num_virtual_tokens, H], init: "normal", std: cfg.initializerRange, linear: false, decay: false });
  }
  return out;
}

/** The saved form of the prefixes: [n, 2 * layers * hidden], per virtual token the keys then values of layer 0, 1, ... */
export function prefixTableSpec(cfg: BertConfig, n: number): ExtraSpec {
  return { name: "prefix.past_key_values", shape: [n, 2 * cfg.numHiddenLayers * cfg.hiddenSize], init: "normal", std: cfg.initializerRange, linear: false, decay: false };
}

/** Whether a base-model parameter trains under the method (the pooler always does: it is part of the head here). */
export function baseTrainable(name: string, cfg: BertConfig, s: PeftSettings): boolean {
  if (!name.startsWith("bert.")) return false; // the MLM head (cls.*) plays no part in classification
  if (name.startsWith("bert.pooler.")) return true;
  switch (s.method) {
    case "full":
      return true;
    case "freeze": {
      const m = /^bert\.encoder\.layer\.(\d+)\./.exec(name);
      return m !== null && Number(m[1]) >= cfg.numHiddenLayers - s.freeze.trainable_layers;
    }
    case "bitfit":
      return name.endsWith(".bias");
    case "adapter":
      return s.adapter.train_layer_norm && /LayerNorm\.(weight|bias)$/.test(name) && name.startsWith("bert.encoder.");
    case "lora":
    case "prefix":
    case "prompt":
      return false;
  }
}

/** Parameter counts of a classifier: trainable, all (encoder + head + method; the unused MLM head excluded). */
export interface ParamCounts {
  trainable: number;
  all: number;
  /** trainable / all, in percent. */
  percent: number;
}

/** Counts the parameters a method trains, without building the model. */
export function countClassifierParams(cfg: BertConfig, s: PeftSettings): ParamCounts {
  const size = (p: ParamSpec): number => p.shape.reduce((a, b) => a * b, 1);
  let trainable = 0;
  let all = 0;
  for (const p of bertParamSpecs(cfg)) {
    if (!p.name.startsWith("bert.")) continue;
    all += size(p);
    if (baseTrainable(p.name, cfg, s)) trainable += size(p);
  }
  for (const p of extraParamSpecs(cfg, s)) {
    all += size(p);
    trainable += size(p);
  }
  return { trainable, all, percent: (100 * trainable) / all };
}

/** The log line HF PEFT prints: "trainable params: N || all params: M || trainable%: P". */
export function formatParamCounts(c: ParamCounts): string {
  return `trainable params: ${c.trainable.toLocaleString("en-US")} || all params: ${c.all.toLocaleString("en-US")} || trainable%: ${c.percent.toFixed(4)}`;
}
