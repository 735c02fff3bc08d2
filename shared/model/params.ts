/**
 * The parameter list of a BERT model: HF parameter names, in HF's registration order, with the layout used here.
 *
 * Linear weights are stored [in, out] (so the forward product is a plain x @ W, XNNPACK's fast case); HF stores them
 * [out, in]. `linear: true` marks the weights whose HF layout is the transpose (see hf.ts).
 */
import type { BertConfig } from "./config";

export interface ParamSpec {
  /** HF parameter name, e.g. bert.encoder.layer.0.attention.self.query.weight */
  name: string;
  /** Shape as stored here. */
  shape: number[];
  init: "normal" | "ones" | "zeros";
  /** A linear weight stored [in, out]; HF's layout is [out, in]. */
  linear: boolean;
  /** Receives decoupled weight decay (HF's convention: not biases, not LayerNorm weights). */
  decay: boolean;
}

/** Which optional heads a model carries. */
export interface HeadOptions {
  /** Pooler ([CLS] dense + tanh), needed by classifiers and NSP. Default true. */
  pooler?: boolean;
  /** Next-sentence-prediction head (cls.seq_relationship). Default false. */
  nsp?: boolean;
}

/** Parameter specs in HF BertForPreTraining order (without the tied cls.predictions.decoder.weight). */
export function bertParamSpecs(cfg: BertConfig, heads: HeadOptions = {}): ParamSpec[] {
  const pooler = heads.pooler ?? true;
  const nsp = heads.nsp ?? false;
  if (nsp && !pooler) throw new Error("the NSP head needs the pooler (heads.pooler must not be false)");
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const specs: ParamSpec[] = [];
  const linear = (prefix: string, inDim: number, outDim: number): void => {
    specs.push({ name: `${prefix}.weight`, shape: [inDim, outDim], init: "normal", linear: true, decay: true });
    specs.push({ name: `${prefix}.bias`, shape: [outDim], init: "zeros", linear: false, decay: false });
  };
  const norm = (prefix: string): void => {
    specs.push({ name: `${prefix}.weight`, shape: [H], init: "ones", linear: false, decay: false });
    specs.push({ name: `${prefix}.bias`, shape: [H], init: "zeros", linear: false, decay: false });
  };
  const table = (name: string, rows: number): void => {
    specs.push({ name, shape: [rows, H], init: "normal", linear: false, decay: true });
  };
  table("bert.embeddings.word_embeddings.weight", cfg.vocabSize);
  table("bert.embeddings.position_embeddings.weight", cfg.maxPositionEmbeddings);
  table("bert.embeddings.token_type_embeddings.weight", cfg.typeVocabSize);
  norm("bert.embeddings.LayerNorm");
  for (let l = 0; l < cfg.numHiddenLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    linear(`${p}.attention.self.query`, H, H);
    linear(`${p}.attention.self.key`, H, H);
    linear(`${p}.attention.self.value`, H, H);
    linear(`${p}.attention.output.dense`, H, H);
    norm(`${p}.attention.output.LayerNorm`);
    linear(`${p}.intermediate.dense`, H, I);
    linear(`${p}.output.dense`, I, H);
    norm(`${p}.output.LayerNorm`);
  }
  if (pooler) linear("bert.pooler.dense", H, H);
  specs.push({ name: "cls.predictions.bias", shape: [cfg.vocabSize], init: "zeros", linear: false, decay: false });
  linear("cls.predictions.transform.dense", H, H);
  specs.push({ name: "cls.predictions.transform.LayerNorm.weight", shape: [H], init: "ones", linear: false, decay: false });
  specs.push({ name: "cls.predictions.transform.LayerNorm.bias", shape: [H], init: "zeros", linear: false, decay: false });
  if (nsp) linear("cls.seq_relationship", H, 2);
  return specs;
}

/** Number of scalars in a spec list. */
export function countParams(specs: readonly ParamSpec[]): number {
  let n = 0;
  for (const s of specs) n += s.shape.reduce((a, b) => a * b, 1);
  return n;
}
