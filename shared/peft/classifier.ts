/**
 * A BERT sequence classifier (HF BertForSequenceClassification: pooled [CLS] -> dropout -> classifier; with
 * finetune.pooling: mean the pooler reads the mean of the text's positions instead) over a base BertModel, with the
 * parameters of a fine-tuning method beside it. The base model's variables stay where they are; the method's live
 * here and reach the encoder through its hooks (LoRA, adapters, prefixes, soft prompt).
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../rng";
import { BertModel, encode, meanPooledOutput, pooledOutput, type EncoderHooks, type EncoderInput, type ForwardOptions } from "../model/bert";
import { dropout, type DropoutKey } from "../model/ops/dropout";
import { gelu } from "../model/ops/gelu";
import { readParam } from "../model/gradient-tap";
import type { TrainableParam } from "../train/trainable";
import { baseTrainable, EMBEDDING_ADAPTER, extraParamSpecs, LAYER_LINEARS, loraTargets, type ExtraSpec } from "./specs";
import type { PeftSettings } from "./settings";

/** Dropout sites of the head and the PEFT branches, apart from the encoder's (8 * layer + k). */
const SITE_CLASSIFIER = 0x7000_0000;
const SITE_LORA = 0x7100_0000;

/** Options of PeftClassifier.create. */
export interface PeftClassifierOptions {
  /** Token ids whose word embeddings initialise the soft prompt (repeated to its length); random init when absent. */
  promptInitIds?: readonly number[];
}

let nextClassifierId = 0;

/** A classifier: base model, head and method parameters, and the list of what trains. */
export class PeftClassifier {
  readonly base: BertModel;
  readonly settings: PeftSettings;
  readonly extraSpecs: readonly ExtraSpec[];
  /** Head and method parameters by name, in extraSpecs order. */
  readonly extras = new Map<string, tf.Variable>();
  /** What trains, in a fixed order: base parameters in registration order, then the extras. */
  readonly trainable: readonly TrainableParam[];
  /** True while LoRA updates are folded into the base weights (the LoRA branch is then skipped). */
  private merged = false;

  private constructor(base: BertModel, settings: PeftSettings, extraSpecs: ExtraSpec[], values: Float32Array[]) {
    this.base = base;
    this.settings = settings;
    this.extraSpecs = extraSpecs;
    const prefix = `peft${nextClassifierId++}/`;
    extraSpecs.forEach((s, i) => {
      const t = tf.tensor(values[i], s.shape, "float32");
      this.extras.set(s.name, tf.variable(t, true, prefix + s.name));
      t.dispose();
    });
    const trainable: TrainableParam[] = [];
    for (const s of base.specs) {
      if (baseTrainable(s.name, base.config, settings)) trainable.push({ name: s.name, variable: base.param(s.name), shape: s.shape, decay: s.decay });
    }
    for (const s of extraSpecs) trainable.push({ name: s.name, variable: this.param(s.name), shape: s.shape, decay: s.decay });
    this.trainable = trainable;
  }

  /**
   * Adds a head and the method's parameters to `base`. Each extra parameter draws from its own stream
   * Rng(seed, 0xf17e, index), so every rank with the same seed builds the same classifier.
   */
  static create(base: BertModel, settings: PeftSettings, seed: number, opts: PeftClassifierOptions = {}): PeftClassifier {
    const specs = extraParamSpecs(base.config, settings);
    const values = specs.map((s, i) => initialValues(s, new Rng(seed, 0xf17e, i)));
    if (settings.method === "prompt" && opts.promptInitIds !== undefined) {
      const ids = opts.promptInitIds;
      if (ids.length === 0) throw new Error("prompt.init_text encodes to no tokens");
      const table = base.param("bert.embeddings.word_embeddings.weight").dataSync() as Float32Array;
      const H = base.config.hiddenSize;
      const k = specs.findIndex((s) => s.name === "prompt.embedding.weight");
      for (let j = 0; j < specs[k].shape[0]; j++) values[k].set(table.subarray(ids[j % ids.length] * H, (ids[j % ids.length] + 1) * H), j * H);
    }
    return new PeftClassifier(base, settings, specs, values);
  }

  /** A head or method parameter; throws naming it when absent. */
  param(name: string): tf.Variable {
    const v = this.extras.get(name);
    if (v === undefined) throw new Error(`classifier has no parameter '${name}'`);
    return v;
  }

  /** A head or method parameter as read by a forward pass (through the active gradient tap, see gradient-tap.ts). */
  use(name: string): tf.Tensor {
    return readParam(this.param(name));
  }

  /** Class logits [batch, numLabels]. */
  logits(input: EncoderInput, fwd: ForwardOptions = { training: false }): tf.Tensor2D {
    const hidden = encode(this.base, input, { ...fwd, hooks: this.hooks(fwd, input.batchSize) });
    const seqLen = hidden.shape[0] / input.batchSize;
    let pooled =
      this.settings.pooling === "mean"
        ? meanPooledOutput(this.base, hidden, input.attentionMask, input.batchSize, seqLen)
        : pooledOutput(this.base, hidden, input.batchSize, seqLen);
    const rate = fwd.training ? (fwd.dropoutRate ?? this.settings.classifierDropout) : 0;
    pooled = dropout(pooled, rate, this.dropoutKey(fwd, SITE_CLASSIFIER), input.batchSize) as tf.Tensor2D;
    return tf.fused.matMul({ a: pooled, b: this.use("classifier.weight") as tf.Tensor2D, bias: this.use("classifier.bias") }) as tf.Tensor2D;
  }

  /** Folds the LoRA updates into the base weights: W += (alpha / r) A·B. The LoRA branch is then skipped. */
  merge(): void {
    this.foldLora(+1);
    this.merged = true;
  }

  /** Undoes merge(): W -= (alpha / r) A·B. */
  unmerge(): void {
    this.foldLora(-1);
    this.merged = false;
  }

  /** Whether LoRA is currently folded into the base weights. */
  get isMerged(): boolean {
    return this.merged;
  }

  /**
   * The prefixes as saved: [n, 2 * layers * hidden] (keys then values of each layer per virtual token). With the
   * reparameterising MLP, its output; otherwise the trained table itself.
   */
  prefixTable(): tf.Tensor2D {
    if (this.extras.has("prefix.past_key_values")) return tf.clone(this.use("prefix.past_key_values")) as tf.Tensor2D;
    return tf.tidy(() => {
      const h = tf.tanh(tf.fused.matMul({ a: this.use("prefix.embedding.weight") as tf.Tensor2D, b: this.use("prefix.mlp.0.weight") as tf.Tensor2D, bias: this.use("prefix.mlp.0.bias") }));
      return tf.fused.matMul({ a: h as tf.Tensor2D, b: this.use("prefix.mlp.2.weight") as tf.Tensor2D, bias: this.use("prefix.mlp.2.bias") }) as tf.Tensor2D;
    });
  }

  /** Frees the head and method parameters and the base model. */
  dispose(): void {
    for (const v of this.extras.values()) v.dispose();
    this.base.dispose();
  }

  private dropoutKey(fwd: ForwardOptions, site: number): DropoutKey {
    return { seed: fwd.dropoutSeed ?? 0, step: fwd.step ?? 0, site, rowOffset: fwd.rowOffset ?? 0 };
  }

  /** The encoder hooks of the method for one forward pass (undefined for methods that need none). */
  hooks(fwd: ForwardOptions, batchSize: number): EncoderHooks | undefined {
    const s = this.settings;
    const H = this.base.config.hiddenSize;
    switch (s.method) {
      case "lora": {
        if (this.merged) return undefined;
        const scale = s.lora.alpha / s.lora.r;
        const rate = fwd.training ? s.lora.dropout : 0;
        let site = 0;
        const sites = new Map<string, number>();
        return {
          linear: (prefix, x, out) => {
            if (!this.extras.has(`${prefix}.lora_A.weight`)) return out;
            const a = this.use(`${prefix}.lora_A.weight`);
            let id = sites.get(prefix);
            if (id === undefined) sites.set(prefix, (id = site++));
            const xd = dropout(x, rate, this.dropoutKey(fwd, SITE_LORA + id), batchSize) as tf.Tensor2D;
            const branch = tf.matMul(tf.matMul(xd, a as tf.Tensor2D), this.use(`${prefix}.lora_B.weight`) as tf.Tensor2D);
            return tf.add(out, tf.mul(branch, scale)) as tf.Tensor2D;
          },
        };
      }
      case "adapter": {
        // x + up(gelu(down(x))): a residual bottleneck, the identity while `up` is zero.
        const bottleneck = (p: string, x: tf.Tensor2D): tf.Tensor2D => {
          const down = gelu(tf.fused.matMul({ a: x, b: this.use(`${p}.down.weight`) as tf.Tensor2D, bias: this.use(`${p}.down.bias`) })) as tf.Tensor2D;
          return tf.add(x, tf.fused.matMul({ a: down, b: this.use(`${p}.up.weight`) as tf.Tensor2D, bias: this.use(`${p}.up.bias`) })) as tf.Tensor2D;
        };
        return {
          ...(s.adapter.embedding_size > 0 ? { embeddings: (x: tf.Tensor2D) => bottleneck(EMBEDDING_ADAPTER, x) } : {}),
          sublayer: (layer, which, x) => bottleneck(`bert.encoder.layer.${layer}.adapter.${which}`, x),
        };
      }
      case "prefix": {
        let table: tf.Tensor2D | undefined;
        return {
          prefix: (layer) => {
            table ??= this.prefixTable();
            const n = table.shape[0];
            return {
              keys: tf.slice(table, [0, 2 * layer * H], [n, H]) as tf.Tensor2D,
              values: tf.slice(table, [0, (2 * layer + 1) * H], [n, H]) as tf.Tensor2D,
            };
          },
        };
      }
      case "prompt":
        return { prompt: () => this.use("prompt.embedding.weight") as tf.Tensor2D };
      case "full":
      case "freeze":
      case "bitfit":
        return undefined;
    }
  }

  /** The LoRA-wrapped base weights with their updates folded in (model layout [in, out]), computed on copies. */
  mergedWeights(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    if (this.merged) throw new Error("LoRA is already merged into the weights");
    for (const [name, next] of this.foldedLora(+1)) {
      out.set(name, Float32Array.from(next.dataSync() as Float32Array));
      next.dispose();
    }
    return out;
  }

  private foldLora(sign: 1 | -1): void {
    if ((sign > 0) === this.merged) throw new Error(this.merged ? "LoRA is already merged" : "LoRA is not merged");
    for (const [name, next] of this.foldedLora(sign)) {
      this.base.param(name).assign(next);
      next.dispose();
    }
  }

  /** W + sign * (alpha / r) A·B for every LoRA-wrapped weight W, as new tensors (the caller disposes them). */
  private foldedLora(sign: 1 | -1): [string, tf.Tensor][] {
    const s = this.settings;
    if (s.method !== "lora") throw new Error(`merging applies to LoRA only (method is ${s.method})`);
    const scale = (sign * s.lora.alpha) / s.lora.r;
    const out: [string, tf.Tensor][] = [];
    for (let l = 0; l < this.base.config.numHiddenLayers; l++) {
      for (const module of LAYER_LINEARS) {
        if (!loraTargets(module, s.lora.target_modules)) continue;
        const p = `bert.encoder.layer.${l}.${module}`;
        const w = this.base.param(`${p}.weight`);
        out.push([`${p}.weight`, tf.tidy(() => tf.add(w, tf.mul(tf.matMul(this.param(`${p}.lora_A.weight`) as tf.Tensor2D, this.param(`${p}.lora_B.weight`) as tf.Tensor2D), scale)))]);
      }
    }
    return out;
  }
}

function initialValues(s: ExtraSpec, rng: Rng): Float32Array {
  const n = s.shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  if (s.init === "ones") v.fill(1);
  else if (s.init === "normal") {
    if (s.bound !== undefined) for (let j = 0; j < n; j++) v[j] = (2 * rng.next() - 1) * s.bound;
    else for (let j = 0; j < n; j++) v[j] = rng.normal() * (s.std ?? 0.02);
  }
  return v;
}
