import { BertTokenizer } from "./bert-tokenizer";
import type { NormalizerOptions } from "./basic";
import { trainWordPiece, type TrainOptions, type TrainResult } from "./trainer";
import { countWords } from "./word-count";

/** Options of trainTokenizer: the normaliser, the trainer and the counting threads. */
export interface TrainTokenizerOptions extends TrainOptions, NormalizerOptions {
  /** Counting threads (see countWords). */
  threads?: number;
}

/**
 * Trains a WordPiece vocabulary on texts and returns a tokenizer using it with the same normaliser: count
 * the BasicTokenizer words (in worker threads for large inputs), then run the incremental merge trainer.
 */
export async function trainTokenizer(
  texts: readonly string[],
  opts: TrainTokenizerOptions,
): Promise<{ tokenizer: BertTokenizer; result: TrainResult }> {
  const normalizer: NormalizerOptions = { lowerCase: opts.lowerCase, stripAccents: opts.stripAccents, splitCjk: opts.splitCjk };
  const counts = await countWords(texts, { ...normalizer, threads: opts.threads });
  const result = trainWordPiece(counts, opts);
  return { tokenizer: new BertTokenizer(result.vocab, normalizer), result };
}
