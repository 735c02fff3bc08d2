/** The tokenizer's public surface: BERT normaliser, WordPiece vocabulary, tokenizer and trainer. */
export { basicTokenize, type NormalizerOptions } from "./basic";
export { Vocab, SPECIAL_TOKENS, type SpecialIds } from "./vocab";
export { wordpiece, MAX_CHARS_PER_WORD, CONTINUATION } from "./wordpiece";
export {
  BertTokenizer,
  cleanUpTokenization,
  truncateLongestFirst,
  type BertTokenizerOptions,
  type DecodeOptions,
  type EncodeOptions,
  type Encoding,
} from "./bert-tokenizer";
export { countWords, type WordCounts, type CountOptions } from "./word-count";
export { trainWordPiece, type TrainOptions, type TrainResult } from "./trainer";
export { trainTokenizer, type TrainTokenizerOptions } from "./train";
