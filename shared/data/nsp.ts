import { Rng } from "../rng";
import type { BertTokenizer } from "../tokenizer/bert-tokenizer";
import { truncateLongestFirst } from "../tokenizer/bert-tokenizer";
import { allocBatch, type Batch } from "./batch";
import type { Document } from "./document";
import { maskRow, specialLookup, type MlmOptions, epochOfRow } from "./masking";

/**
 * Documents cut into segments (runs of whole sentences) for next-sentence prediction. Segment s is
 * tokens[segStart[s], segStart[s + 1]) of document segDoc[s]; anchors are the segments followed by another
 * of the same document, and sample k of an epoch pairs anchors[k] with its successor or a random segment.
 */
export interface NspCorpus {
  seqLen: number;
  count: number;
  tokens: Int32Array;
  wordStarts: Uint8Array;
  segStart: Int32Array;
  segDoc: Int32Array;
  anchors: Int32Array;
  clsId: number;
  sepId: number;
}

/**
 * Tokenises documents sentence by sentence (a sentence ends at a line break or after . ! ? and a space) and
 * groups consecutive sentences into segments of at most (seqLen - 3) / 2 tokens, so that two segments fit one
 * [CLS] A [SEP] B [SEP] row; a longer sentence is a segment of its own and truncated when used.
 */
export function buildNspCorpus(docs: readonly Document[], tokenizer: BertTokenizer, seqLen: number): NspCorpus {
  if (!Number.isInteger(seqLen) || seqLen < 5) throw new Error(`NSP needs maxSeqLen >= 5, got ${seqLen}`);
  const target = Math.floor((seqLen - 3) / 2);
  const tokens: number[] = [];
  const segStart: number[] = [];
  const segDoc: number[] = [];
  const anchors: number[] = [];
  const docsUsed = new Set<number>();
  docs.forEach((doc, d) => {
    let open = false; // a segment of this document is being filled
    let openLen = 0;
    for (const sentence of doc.text.split(/\n+|(?<=[.!?]["')\]]?)\s+/)) {
      const ids = tokenizer.tokenizeToIds(sentence);
      if (ids.length === 0) continue;
      if (!open || openLen + ids.length > target) {
        if (open) anchors.push(segStart.length - 1); // the open segment gets a successor in this document
        segStart.push(tokens.length);
        segDoc.push(d);
        open = true;
        openLen = 0;
        docsUsed.add(d);
      }
      for (const id of ids) tokens.push(id);
      openLen += ids.length;
    }
  });
  if (docsUsed.size < 2) throw new Error("NSP needs at least two non-empty documents (random next segments come from other documents)");
  if (anchors.length === 0) throw new Error("NSP: no document has two segments; use longer documents or a smaller maxSeqLen");
  segStart.push(tokens.length);
  const tok = Int32Array.from(tokens);
  const sp = tokenizer.specialIds;
  return {
    seqLen,
    count: anchors.length,
    tokens: tok,
    wordStarts: Uint8Array.from(tok, (id) => (tokenizer.isContinuation(id) ? 0 : 1)),
    segStart: Int32Array.from(segStart),
    segDoc: Int32Array.from(segDoc),
    anchors: Int32Array.from(anchors),
    clsId: sp.cls,
    sepId: sp.sep,
  };
}

/**
 * Builds a BERT pre-training batch: per sample k, with `new Rng(seed, epoch, k)`, B is the real next segment
 * (nspLabel 0, IsNext) or, with probability 1/2, a random segment of another document (1, NotNext); the row is
 * [CLS] A [SEP] B [SEP] truncated longest-first, tokenTypeIds 0 then 1, and MLM masking as makeMlmBatch.
 */
export function makeNspBatch(corpus: NspCorpus, indices: ArrayLike<number>, opts: MlmOptions): Batch {
  const S = corpus.seqLen;
  const batch = allocBatch(indices.length, S, true);
  const nspLabels = batch.nspLabels as Int32Array;
  const special = specialLookup(opts);
  const segments = corpus.segDoc.length;
  for (let b = 0; b < indices.length; b++) {
    const k = indices[b];
    if (!Number.isInteger(k) || k < 0 || k >= corpus.count) throw new Error(`NSP sample ${k} is outside the corpus (count ${corpus.count})`);
    const rng = new Rng(opts.seed, epochOfRow(opts.epoch, b), k);
    const a = corpus.anchors[k];
    let next = a + 1;
    let label = 0;
    if (rng.next() < 0.5) {
      label = 1;
      do next = rng.int(segments);
      while (corpus.segDoc[next] === corpus.segDoc[a]);
    }
    const [ta, tb] = truncateLongestFirst(segmentIds(corpus, a), segmentIds(corpus, next), S - 3);
    const row = [corpus.clsId, ...ta, corpus.sepId, ...(tb as number[]), corpus.sepId];
    const o = b * S;
    batch.inputIds.set(row, o);
    batch.attentionMask.fill(1, o, o + row.length);
    batch.tokenTypeIds.fill(1, o + ta.length + 2, o + row.length);
    const starts = new Uint8Array(S);
    starts.set([1, ...wordStartsOf(corpus, a, ta.length), 1, ...wordStartsOf(corpus, next, (tb as number[]).length), 1]);
    nspLabels[b] = label;
    maskRow(batch.inputIds.subarray(o, o + S), batch.mlmLabels.subarray(o, o + S), row.length, starts, rng, opts, special);
  }
  return batch;
}

function segmentIds(c: NspCorpus, s: number): number[] {
  return Array.from(c.tokens.subarray(c.segStart[s], c.segStart[s + 1]));
}

function wordStartsOf(c: NspCorpus, s: number, n: number): Uint8Array {
  return c.wordStarts.subarray(c.segStart[s], c.segStart[s] + n);
}
