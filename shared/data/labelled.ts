/**
 * Labelled sequences for classification: each document (or text pair) encoded once as [CLS] A [SEP] (B [SEP]),
 * truncated to seqLen and padded, with its class index. Row-major [count, seqLen].
 */
import type { BertTokenizer } from "../tokenizer/bert-tokenizer";
import type { Document } from "./document";

/** Encoded labelled examples. */
export interface LabelledSequences {
  seqLen: number;
  count: number;
  tokens: Int32Array;
  tokenTypes: Int32Array;
  lengths: Int32Array;
  /** Class index of each example (index into the label list). */
  labels: Int32Array;
  /** Document id of each example, for predictions and debugging. */
  ids: string[];
}

/** A classification micro-batch: encoder inputs [batchSize, seqLen] and one class index per sequence. */
export interface ClassificationBatch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
}

/**
 * Cuts a text to its first `words` whitespace-separated words before tokenising: every word yields at least one
 * token, so keeping 2 x maxLength words never changes the truncated encoding of an ordinary text, and a long e-mail
 * costs no more than a short one.
 */
export function headWords(text: string, words: number): string {
  const re = /\S+/g;
  let m: RegExpExecArray | null;
  let n = 0;
  while ((m = re.exec(text)) !== null) {
    if (++n > words) return text.slice(0, m.index);
  }
  return text;
}

/** Encodes labelled documents; `labelIndex` maps a label to its class index (throws naming the document if unknown). */
export function encodeLabelled(docs: readonly Document[], tokenizer: BertTokenizer, seqLen: number, labelIndex: ReadonlyMap<string, number>): LabelledSequences {
  const n = docs.length;
  const out: LabelledSequences = {
    seqLen, count: n,
    tokens: new Int32Array(n * seqLen).fill(tokenizer.specialIds.pad), tokenTypes: new Int32Array(n * seqLen),
    lengths: new Int32Array(n), labels: new Int32Array(n), ids: [],
  };
  docs.forEach((d, i) => {
    const enc = encodeText(tokenizer, d.text, d.textPair, seqLen);
    out.tokens.set(enc.ids, i * seqLen);
    out.tokenTypes.set(enc.tokenTypeIds, i * seqLen);
    out.lengths[i] = enc.ids.length;
    if (d.label === undefined) throw new Error(`document ${d.id} has no label`);
    const y = labelIndex.get(d.label);
    if (y === undefined) throw new Error(`document ${d.id}: label ${JSON.stringify(d.label)} is not one of ${[...labelIndex.keys()].join(", ")}`);
    out.labels[i] = y;
    out.ids.push(d.id);
  });
  return out;
}

/** [CLS] A [SEP] (B [SEP]) of at most seqLen tokens (HF longest-first truncation). */
export function encodeText(tokenizer: BertTokenizer, text: string, pair: string | undefined, seqLen: number): { ids: number[]; tokenTypeIds: number[] } {
  return tokenizer.encode(headWords(text, 2 * seqLen), pair === undefined ? undefined : headWords(pair, 2 * seqLen), { maxLength: seqLen });
}

/** The batch of examples `indices` (padding positions masked out). */
export function makeClassificationBatch(data: LabelledSequences, indices: ArrayLike<number>): ClassificationBatch {
  const B = indices.length;
  const S = data.seqLen;
  const batch: ClassificationBatch = {
    batchSize: B, seqLen: S,
    inputIds: new Int32Array(B * S), tokenTypeIds: new Int32Array(B * S), attentionMask: new Int32Array(B * S), labels: new Int32Array(B),
  };
  for (let r = 0; r < B; r++) {
    const i = indices[r];
    if (!(i >= 0 && i < data.count)) throw new Error(`example index ${i} outside [0, ${data.count})`);
    batch.inputIds.set(data.tokens.subarray(i * S, (i + 1) * S), r * S);
    batch.tokenTypeIds.set(data.tokenTypes.subarray(i * S, (i + 1) * S), r * S);
    batch.attentionMask.fill(1, r * S, r * S + data.lengths[i]);
    batch.labels[r] = data.labels[i];
  }
  return batch;
}
