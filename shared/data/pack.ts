import type { BertTokenizer } from "../tokenizer/bert-tokenizer";
import type { Document } from "./document";
import type { PackedSequences } from "./packed";

/** The special ids and word-boundary test packing needs. */
export interface PackIds {
  clsId: number;
  sepId: number;
  padId: number;
  /** True for "##" continuation pieces; every other token starts a word. */
  isContinuation: (id: number) => boolean;
}

/**
 * Tokenises documents and packs them RoBERTa FULL-SENTENCES style (see packTokenStreams). A document's
 * textPair, if any, follows its text within the same document.
 */
export function packDocuments(docs: readonly Document[], tokenizer: BertTokenizer, seqLen: number): PackedSequences {
  const sp = tokenizer.specialIds;
  const streams = docs.map((d) => {
    const ids = tokenizer.tokenizeToIds(d.text);
    if (d.textPair !== undefined) ids.push(...tokenizer.tokenizeToIds(d.textPair));
    return ids;
  });
  return packTokenStreams(streams, seqLen, {
    clsId: sp.cls,
    sepId: sp.sep,
    padId: sp.pad,
    isContinuation: (id) => tokenizer.isContinuation(id),
  });
}

/**
 * Packs token streams into rows of exactly seqLen: every row is [CLS] ... [SEP]; the documents follow one
 * another across rows with a [SEP] between consecutive documents, and a document may continue into the next
 * row. Only the last row is padded. A row's closing [SEP] doubles as the separator when a document ends right
 * before it (so the next row does not start with [CLS] [SEP]); a document ending one slot earlier gives
 * "[SEP] [SEP]" at the row's end, which is harmless. Empty documents are skipped.
 */
export function packTokenStreams(streams: readonly ArrayLike<number>[], seqLen: number, ids: PackIds): PackedSequences {
  if (!Number.isInteger(seqLen) || seqLen < 3) throw new Error(`maxSeqLen must be an integer >= 3, got ${seqLen}`);
  const total = streams.reduce((n, s) => n + s.length + 1, 0);
  const maxRows = Math.ceil(total / (seqLen - 2)) + 1;
  const tokens = new Int32Array(maxRows * seqLen).fill(ids.padId);
  const starts = new Uint8Array(maxRows * seqLen);
  const lengths = new Int32Array(maxRows);
  let row = 0;
  let p = 1; // next free position in the current row
  let base = 0;
  tokens[0] = ids.clsId;
  starts[0] = 1;
  const place = (t: number, wordStart: boolean): void => {
    tokens[base + p] = t;
    starts[base + p] = wordStart ? 1 : 0;
    p++;
    if (p === seqLen - 1) {
      tokens[base + p] = ids.sepId;
      starts[base + p] = 1;
      lengths[row] = seqLen;
      row++;
      base = row * seqLen;
      tokens[base] = ids.clsId;
      starts[base] = 1;
      p = 1;
    }
  };
  let first = true;
  for (const s of streams) {
    if (s.length === 0) continue;
    if (!first && p > 1) place(ids.sepId, true);
    first = false;
    for (let i = 0; i < s.length; i++) place(s[i], !ids.isContinuation(s[i]));
  }
  if (p > 1) {
    tokens[base + p] = ids.sepId;
    starts[base + p] = 1;
    lengths[row] = p + 1;
    row++;
  } else {
    tokens[base] = ids.padId; // the row opened after the last full one stays unused
    starts[base] = 0;
  }
  return {
    seqLen,
    count: row,
    tokens: tokens.slice(0, row * seqLen),
    lengths: lengths.slice(0, row),
    wordStarts: starts.slice(0, row * seqLen),
  };
}
