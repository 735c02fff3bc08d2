/**
 * Blocks of consecutive lines, for validation splits of corpora with too few documents.
 *
 * The split keeps documents whole, so one text file (one document) gives no validation split, and two give half of
 * the data to it. HF's run_mlm.py splits a text file by lines (validation_split_percentage); here the documents are
 * cut into blocks of consecutive lines first, so held-out text is still contiguous and never shares a line with
 * training text.
 */
import type { Document } from "./document";

/** Blocks aimed for over the whole corpus: enough for a 1 % split to hold out one block. */
const TARGET_BLOCKS = 100;
/** Smallest block worth cutting (characters): a few packed sequences of text. */
const MIN_BLOCK_CHARS = 2000;

/**
 * Whether a split of `documents` whole documents by `fraction` cannot hold out about `fraction` of them: it holds
 * out nothing (fewer than 2 documents) or at least twice the asked share (one document is already too much).
 */
export function tooFewDocumentsToSplit(documents: number, fraction: number): boolean {
  if (fraction <= 0) return false;
  if (documents < 2) return true;
  const held = Math.min(documents - 1, Math.max(1, Math.round(documents * fraction)));
  return held / documents > 2 * fraction;
}

/**
 * Cuts each document into blocks of whole consecutive lines of about max(2,000, total / 100) characters (ids
 * "<id>#<k>", other fields kept); a document shorter than that, or of one line, stays whole. Deterministic.
 */
export function cutIntoLineBlocks(docs: readonly Document[]): Document[] {
  const total = docs.reduce((s, d) => s + d.text.length, 0);
  const blockChars = Math.max(MIN_BLOCK_CHARS, Math.ceil(total / TARGET_BLOCKS));
  const out: Document[] = [];
  for (const d of docs) {
    if (d.text.length <= blockChars) {
      out.push(d);
      continue;
    }
    const lines = d.text.split("\n");
    let block: string[] = [];
    let chars = 0;
    let k = 0;
    const emit = (): void => {
      const text = block.join("\n");
      if (text.trim() !== "") out.push({ ...d, id: `${d.id}#${k++}`, text });
      block = [];
      chars = 0;
    };
    for (const line of lines) {
      block.push(line);
      chars += line.length + 1;
      if (chars >= blockChars) emit();
    }
    if (block.length > 0) emit();
  }
  return out;
}
