/**
 * BERT encoder with MLM / pooler / NSP heads in tfjs core ops.
 *
 * Hidden states are kept 2-D [batch * seq, hidden] so every linear layer is one plain matmul. The MLM head runs only
 * on the positions that carry a label (gathered first): the vocabulary projection is the largest matmul of a small
 * model and only ~15% of positions need it.
 */
import * as tf from "@tensorflow/tfjs";
import { Rng } from "../rng";
import type { BertConfig } from "./config";
import { bertParamSpecs, type HeadOptions, type ParamSpec } from "./params";
import { layerNorm } from "./ops/layer-norm";
import { gelu } from "./ops/gelu";
import { dropout, type DropoutKey } from "./ops/dropout";
import { readParam } from "./gradient-tap";

/** Token inputs of a forward pass, row-major [batchSize, seqLen]. */
export interface EncoderInput {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Int32Array;
}

/** Dropout control for one forward pass. Omit (or training: false) for evaluation. */
export interface ForwardOptions {
  training: boolean;
  /** Seed of the dropout masks; masks are a function of (seed, step, site, global sequence index). */
  dropoutSeed?: number;
  step?: number;
  /** Global index of this micro-batch's first sequence (rank-independent masks). Default 0. */
  rowOffset?: number;
  /** Overrides both dropout probabilities of the config (e.g. 0 to switch dropout off). */
  dropoutRate?: number;
  /** Extension points for parameter-efficient fine-tuning (LoRA, adapters, prefixes, soft prompts). */
  hooks?: EncoderHooks;
}

/**
 * Extension points of the encoder, used by parameter-efficient fine-tuning (shared/peft). Every hook is optional;
 * without hooks the encoder is plain BERT.
 */
export interface EncoderHooks {
  /** Output of the encoder-layer linear `prefix` (e.g. bert.encoder.layer.0.attention.self.query) for input x, given its plain output x·W + b. */
  linear?(prefix: string, x: tf.Tensor2D, out: tf.Tensor2D): tf.Tensor2D;
  /** The embedding output (after its LayerNorm and dropout), before layer 0 (an embedding adapter). */
  embeddings?(x: tf.Tensor2D): tf.Tensor2D;
  /** A sublayer's output after its projection and dropout, before the residual add and LayerNorm (adapters). */
  sublayer?(layer: number, which: "attention" | "ffn", x: tf.Tensor2D): tf.Tensor2D;
  /** Key and value prefixes of one layer, each [P, hidden], attended by every position (prefix tuning). */
  prefix?(layer: number): { keys: tf.Tensor2D; values: tf.Tensor2D } | undefined;
  /** Embeddings [n, hidden] inserted after the first token ([CLS]) of every sequence (prompt tuning). */
  prompt?(): tf.Tensor2D | undefined;
}

let nextModelId = 0;

/** A BERT model: config, parameter specs and one tf.Variable per parameter (ordered as the specs). */
export class BertModel {
  readonly config: BertConfig;
  readonly specs: readonly ParamSpec[];
  /** HF name -> variable, in registration order. */
  readonly params: Map<string, tf.Variable>;
  readonly hasPooler: boolean;
  readonly hasNsp: boolean;

  private constructor(config: BertConfig, specs: ParamSpec[], values: Float32Array[]) {
    this.config = config;
    this.specs = specs;
    this.hasPooler = specs.some((s) => s.name === "bert.pooler.dense.weight");
    this.hasNsp = specs.some((s) => s.name === "cls.seq_relationship.weight");
    this.params = new Map();
    // tfjs variable names are global to the engine; a per-model prefix lets several models live in one process.
    const prefix = `m${nextModelId++}/`;
    specs.forEach((s, i) => {
      const init = tf.tensor(values[i], s.shape, "float32");
      this.params.set(s.name, tf.variable(init, true, prefix + s.name));
      init.dispose(); // the variable holds its own reference to the data
    });
  }

  /**
   * A model initialised as HF does (normal(0, initializerRange) for weights and tables, LayerNorm 1/0, biases 0).
   * Each parameter draws from its own stream Rng(seed, index), so every rank with the same seed gets the same weights.
   */
  static create(config: BertConfig, seed: number, heads: HeadOptions = {}): BertModel {
    const specs = bertParamSpecs(config, heads);
    const values = specs.map((s, i) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      if (s.init === "ones") v.fill(1);
      else if (s.init === "normal") {
        const rng = new Rng(seed, 0x1a17, i);
        for (let j = 0; j < n; j++) v[j] = rng.normal() * config.initializerRange;
      }
      return v;
    });
    return new BertModel(config, specs, values);
  }

  /** The variable for an HF parameter name; throws naming the parameter when absent. */
  param(name: string): tf.Variable {
    const v = this.params.get(name);
    if (v === undefined) throw new Error(`model has no parameter '${name}'`);
    return v;
  }

  /** The parameter as read by a forward pass (through the active gradient tap, see gradient-tap.ts). */
  use(name: string): tf.Tensor {
    return readParam(this.param(name));
  }

  /** Variables in registration order. */
  variables(): tf.Variable[] {
    return [...this.params.values()];
  }

  /** Frees the variables. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
  }
}

/** x @ W + b with W stored [in, out]; the bias add is fused into the product (XNNPACK applies it for free on wasm). */
function linear(m: BertModel, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  return tf.fused.matMul({ a: x, b: m.use(`${prefix}.weight`) as tf.Tensor2D, bias: m.use(`${prefix}.bias`) }) as tf.Tensor2D;
}

function norm(m: BertModel, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  return layerNorm(x, m.use(`${prefix}.weight`) as tf.Tensor1D, m.use(`${prefix}.bias`) as tf.Tensor1D, m.config.layerNormEps);
}

function checkInput(cfg: BertConfig, input: EncoderInput): void {
  const n = input.batchSize * input.seqLen;
  for (const k of ["inputIds", "tokenTypeIds", "attentionMask"] as const) {
    if (input[k].length !== n) throw new Error(`${k} has ${input[k].length} entries, expected batchSize*seqLen = ${n}`);
  }
  if (input.seqLen > cfg.maxPositionEmbeddings) {
    throw new Error(`seqLen ${input.seqLen} exceeds maxPositionEmbeddings ${cfg.maxPositionEmbeddings}`);
  }
  for (let i = 0; i < n; i++) {
    const id = input.inputIds[i];
    if (id < 0 || id >= cfg.vocabSize) throw new Error(`inputIds[${i}] = ${id} is outside the vocabulary [0, ${cfg.vocabSize})`);
    const tt = input.tokenTypeIds[i];
    if (tt < 0 || tt >= cfg.typeVocabSize) throw new Error(`tokenTypeIds[${i}] = ${tt} is outside [0, ${cfg.typeVocabSize})`);
  }
}

/**
 * Final hidden states [batch * seq, hidden] of the encoder. With a soft prompt (hooks.prompt) each sequence is
 * longer by the prompt's length: rows are [batch * (seq + n), hidden], [CLS] still first.
 */
export function encode(m: BertModel, input: EncoderInput, opts: ForwardOptions = { training: false }): tf.Tensor2D {
  const cfg = m.config;
  checkInput(cfg, input);
  const B = input.batchSize;
  const T = input.seqLen;
  const H = cfg.hiddenSize;
  const NH = cfg.numAttentionHeads;
  const DH = H / NH;
  const hidP = opts.training ? (opts.dropoutRate ?? cfg.hiddenDropoutProb) : 0;
  const attP = opts.training ? (opts.dropoutRate ?? cfg.attentionProbsDropoutProb) : 0;
  const key = (site: number): DropoutKey => ({ seed: opts.dropoutSeed ?? 0, step: opts.step ?? 0, site, rowOffset: opts.rowOffset ?? 0 });

  const hooks = opts.hooks;
  const ids = tf.tensor1d(input.inputIds, "int32");
  const types = tf.tensor1d(input.tokenTypeIds, "int32");
  const words = tf.gather(m.use("bert.embeddings.word_embeddings.weight"), ids);
  const tok = tf.gather(m.use("bert.embeddings.token_type_embeddings.weight"), types);
  let wordsAndTypes = tf.reshape(tf.add(words, tok), [B, T, H]) as tf.Tensor3D;
  // Soft prompt: n rows (plus the segment-0 embedding) inserted after [CLS]; the sequence grows to T + n.
  const prompt = hooks?.prompt?.();
  let attention = input.attentionMask;
  let TT = T;
  if (prompt !== undefined) {
    const n = prompt.shape[0];
    TT = T + n;
    if (TT > cfg.maxPositionEmbeddings) throw new Error(`seqLen ${T} + ${n} prompt tokens exceeds maxPositionEmbeddings ${cfg.maxPositionEmbeddings}`);
    const segment0 = tf.slice(m.use("bert.embeddings.token_type_embeddings.weight"), [0, 0], [1, H]);
    const rows = tf.tile(tf.reshape(tf.add(prompt, segment0), [1, n, H]), [B, 1, 1]);
    wordsAndTypes = tf.concat([tf.slice(wordsAndTypes, [0, 0, 0], [B, 1, H]), rows, tf.slice(wordsAndTypes, [0, 1, 0], [B, T - 1, H])], 1) as tf.Tensor3D;
    attention = new Int32Array(B * TT);
    for (let b = 0; b < B; b++) {
      attention[b * TT] = input.attentionMask[b * T];
      for (let j = 1; j <= n; j++) attention[b * TT + j] = 1;
      for (let j = 1; j < T; j++) attention[b * TT + n + j] = input.attentionMask[b * T + j];
    }
  }
  const pos = tf.slice(m.use("bert.embeddings.position_embeddings.weight"), [0, 0], [TT, H]);
  const emb = tf.reshape(tf.add(wordsAndTypes, pos), [B * TT, H]) as tf.Tensor2D;
  let h = dropout(norm(m, "bert.embeddings.LayerNorm", emb), hidP, key(0), B) as tf.Tensor2D;
  if (hooks?.embeddings) h = hooks.embeddings(h);

  // Additive key mask: 0 where attended, -1e9 on padding; [B, 1, 1, T], or [B, 1, T, T] for a decoder, whose
  // query i also must not see keys after i (causal attention).
  let mask: tf.Tensor4D;
  if (cfg.isDecoder === true) {
    if (hooks?.prefix !== undefined || prompt !== undefined) throw new Error("prefix and prompt tuning are not supported on a decoder (is_decoder) model");
    const causal = new Float32Array(B * TT * TT);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < TT; i++) {
        for (let j = 0; j < TT; j++) causal[(b * TT + i) * TT + j] = j <= i && attention[b * TT + j] ? 0 : -1e9;
      }
    }
    mask = tf.tensor4d(causal, [B, 1, TT, TT]);
  } else {
    const maskAdd = new Float32Array(B * TT);
    for (let i = 0; i < B * TT; i++) maskAdd[i] = attention[i] ? 0 : -1e9;
    mask = tf.tensor4d(maskAdd, [B, 1, 1, TT]);
  }
  const scale = 1 / Math.sqrt(DH);
  const heads = (x: tf.Tensor2D, rows: number, batch: number): tf.Tensor4D => tf.transpose(tf.reshape(x, [batch, rows, NH, DH]), [0, 2, 1, 3]);
  const lin = (prefix: string, x: tf.Tensor2D): tf.Tensor2D => {
    const out = linear(m, prefix, x);
    return hooks?.linear ? hooks.linear(prefix, x, out) : out;
  };
  let prefixMask: tf.Tensor4D | undefined;

  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    const q = heads(lin(`${p}.attention.self.query`, h), TT, B);
    let k = heads(lin(`${p}.attention.self.key`, h), TT, B);
    let v = heads(lin(`${p}.attention.self.value`, h), TT, B);
    let layerMask = mask;
    const pre = hooks?.prefix?.(l);
    if (pre !== undefined) {
      // Prefix keys/values [P, H] -> [B, NH, P, DH], placed before the sequence's own; always attended.
      const P = pre.keys.shape[0];
      k = tf.concat([tf.tile(heads(pre.keys, P, 1), [B, 1, 1, 1]), k], 2);
      v = tf.concat([tf.tile(heads(pre.values, P, 1), [B, 1, 1, 1]), v], 2);
      prefixMask ??= tf.concat([tf.zeros([B, 1, 1, P]), mask], 3) as tf.Tensor4D;
      layerMask = prefixMask;
    }
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), layerMask);
    const probs = dropout(tf.softmax(scores), attP, key(8 * l + 1), B);
    const ctx = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [B * TT, H]) as tf.Tensor2D;
    let attnOut = dropout(lin(`${p}.attention.output.dense`, ctx), hidP, key(8 * l + 2), B) as tf.Tensor2D;
    if (hooks?.sublayer) attnOut = hooks.sublayer(l, "attention", attnOut);
    h = norm(m, `${p}.attention.output.LayerNorm`, tf.add(attnOut, h));
    const inter = gelu(lin(`${p}.intermediate.dense`, h)) as tf.Tensor2D;
    let ffn = dropout(lin(`${p}.output.dense`, inter), hidP, key(8 * l + 3), B) as tf.Tensor2D;
    if (hooks?.sublayer) ffn = hooks.sublayer(l, "ffn", ffn);
    h = norm(m, `${p}.output.LayerNorm`, tf.add(ffn, h));
  }
  return h;
}

/**
 * MLM logits [rows.length, vocab] for the given flat positions (row * seqLen + col) of the hidden states:
 * transform (dense + GELU + LayerNorm), then the decoder tied to the word embeddings, plus cls.predictions.bias.
 */
export function mlmLogits(m: BertModel, hidden: tf.Tensor2D, positions: Int32Array): tf.Tensor2D {
  const picked = tf.gather(hidden, tf.tensor1d(positions, "int32")) as tf.Tensor2D;
  const t = norm(m, "cls.predictions.transform.LayerNorm", gelu(linear(m, "cls.predictions.transform.dense", picked)) as tf.Tensor2D);
  return tf.add(tf.matMul(t, m.use("bert.embeddings.word_embeddings.weight"), false, true), m.use("cls.predictions.bias"));
}

/** Pooled output [batch, hidden]: tanh(dense(hidden state of [CLS], the first token of each sequence)). */
export function pooledOutput(m: BertModel, hidden: tf.Tensor2D, batchSize: number, seqLen: number): tf.Tensor2D {
  if (!m.hasPooler) throw new Error("model was built without the pooler (heads.pooler = false)");
  const cls = tf.reshape(tf.slice(tf.reshape(hidden, [batchSize, seqLen, -1]), [0, 0, 0], [batchSize, 1, -1]), [batchSize, -1]) as tf.Tensor2D;
  return tf.tanh(linear(m, "bert.pooler.dense", cls));
}

/**
 * Mean-pooled output [batch, hidden]: tanh(dense(mean of each sequence's hidden states over the positions whose
 * attentionMask is 1)). With a soft prompt (hidden has seqLen = input length + n rows per sequence), the n rows
 * after [CLS] are the prompt's and are left out: the mean is over the text's own positions.
 */
export function meanPooledOutput(m: BertModel, hidden: tf.Tensor2D, attentionMask: Int32Array, batchSize: number, seqLen: number): tf.Tensor2D {
  if (!m.hasPooler) throw new Error("model was built without the pooler (heads.pooler = false)");
  const T = attentionMask.length / batchSize;
  const inserted = seqLen - T;
  if (!Number.isInteger(T) || inserted < 0) throw new Error(`meanPooledOutput: ${attentionMask.length} mask entries do not fit ${batchSize} sequences of ${seqLen} rows`);
  const weights = new Float32Array(batchSize * seqLen);
  for (let b = 0; b < batchSize; b++) {
    let count = 0;
    for (let j = 0; j < T; j++) count += attentionMask[b * T + j] ? 1 : 0;
    if (count === 0) throw new Error(`meanPooledOutput: sequence ${b} has no attended position`);
    for (let j = 0; j < T; j++) {
      if (attentionMask[b * T + j]) weights[b * seqLen + (j === 0 ? 0 : j + inserted)] = 1 / count;
    }
  }
  // [B, 1, TT] x [B, TT, H]: one weighted sum per sequence
  const w = tf.tensor3d(weights, [batchSize, 1, seqLen]);
  const mean = tf.reshape(tf.matMul(w, tf.reshape(hidden, [batchSize, seqLen, -1])), [batchSize, -1]) as tf.Tensor2D;
  return tf.tanh(linear(m, "bert.pooler.dense", mean));
}

/** NSP logits [batch, 2] from the pooled output. */
export function nspLogits(m: BertModel, pooled: tf.Tensor2D): tf.Tensor2D {
  if (!m.hasNsp) throw new Error("model was built without the NSP head (heads.nsp = true to add it)");
  return linear(m, "cls.seq_relationship", pooled);
}

/** Flat positions (row * seqLen + col) whose MLM label is not -100, and those labels. */
export function maskedPositions(mlmLabels: Int32Array, vocabSize: number): { positions: Int32Array; labels: Int32Array } {
  let n = 0;
  for (let i = 0; i < mlmLabels.length; i++) if (mlmLabels[i] !== -100) n++;
  const positions = new Int32Array(n);
  const labels = new Int32Array(n);
  let j = 0;
  for (let i = 0; i < mlmLabels.length; i++) {
    const y = mlmLabels[i];
    if (y === -100) continue;
    if (y < 0 || y >= vocabSize) throw new Error(`mlmLabels[${i}] = ${y} is neither -100 nor a token id in [0, ${vocabSize})`);
    positions[j] = i;
    labels[j++] = y;
  }
  return { positions, labels };
}
