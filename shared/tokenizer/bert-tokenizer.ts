import { createHash } from "node:crypto";
import { basicTokenize, type NormalizerOptions } from "./basic";
import { SPECIAL_TOKENS, Vocab, type SpecialIds } from "./vocab";
import { CONTINUATION, MAX_CHARS_PER_WORD, wordpiece } from "./wordpiece";

/** Options of a BertTokenizer: the normaliser's, plus the WordPiece word-length limit. */
export interface BertTokenizerOptions extends NormalizerOptions {
  /** Words longer than this (code points) become [UNK]. Default 100. */
  maxCharsPerWord?: number;
}

/** Options of encode(). */
export interface EncodeOptions {
  /** Add [CLS] A [SEP] (B [SEP]). Default true. */
  addSpecialTokens?: boolean;
  /** Truncate (HF "longest_first": trim the longer of A and B from the end) so the result fits. */
  maxLength?: number;
}

/** Result of encode(): token ids and segment ids (0 for A and its specials, 1 for B and its [SEP]). */
export interface Encoding {
  ids: number[];
  tokenTypeIds: number[];
}

/** Options of decode(); defaults are HF's. */
export interface DecodeOptions {
  /** Drop [PAD] [UNK] [CLS] [SEP] [MASK]. Default false. */
  skipSpecialTokens?: boolean;
  /** HF's clean_up_tokenization: " ." -> "." , " n't" -> "n't" and so on. Default true. */
  cleanUpTokenizationSpaces?: boolean;
}

const SPECIAL_SPLIT = new RegExp(`(${SPECIAL_TOKENS.map((t) => t.replace(/[[\]]/g, "\\$&")).join("|")})`);
const WORD_CACHE_LIMIT = 200_000;

/**
 * BERT's tokenizer (HF BertTokenizer semantics): special-token strings in the text are kept whole, the
 * rest goes through the BasicTokenizer (basicTokenize) and then greedy WordPiece per word.
 */
export class BertTokenizer {
  readonly vocab: Vocab;
  readonly options: Readonly<Required<Omit<BertTokenizerOptions, "stripAccents">> & { stripAccents: boolean }>;
  private readonly unkToken: string;
  private readonly unkId: number;
  private readonly wordCache = new Map<string, readonly number[]>();
  private continuation: Uint8Array | undefined;
  private specials: SpecialIds | undefined;

  /** A tokenizer over a vocabulary; uncased (lower-case + strip accents) unless told otherwise. */
  constructor(vocab: Vocab, opts: BertTokenizerOptions = {}) {
    this.vocab = vocab;
    const lowerCase = opts.lowerCase ?? true;
    this.options = {
      lowerCase,
      stripAccents: opts.stripAccents ?? lowerCase,
      splitCjk: opts.splitCjk ?? true,
      maxCharsPerWord: opts.maxCharsPerWord ?? MAX_CHARS_PER_WORD,
    };
    const unk = vocab.id("[UNK]");
    if (unk === undefined) throw new Error("vocabulary lacks the [UNK] token");
    this.unkToken = "[UNK]";
    this.unkId = unk;
  }

  /** Loads vocab.txt. */
  static fromFile(file: string, opts: BertTokenizerOptions = {}): BertTokenizer {
    return new BertTokenizer(Vocab.load(file), opts);
  }

  /** Ids of the five special tokens (throws if the vocabulary lacks one). */
  get specialIds(): SpecialIds {
    this.specials ??= this.vocab.specialIds();
    return this.specials;
  }

  /** Number of token ids. */
  get vocabSize(): number {
    return this.vocab.size;
  }

  /** Hash of vocabulary and normaliser options: the same identity means the same ids for any text. */
  get identity(): string {
    // "nfc": text is NFC-normalised as HF does; data packed by earlier versions (cased text kept decomposed) differs.
    return createHash("sha256").update(this.vocab.hash).update(JSON.stringify(this.options)).update("nfc").digest("hex");
  }

  /** Token strings of a text (HF BertTokenizer.tokenize). */
  tokenize(text: string): string[] {
    return this.tokenizeToIds(text).map((id) => this.vocab.token(id));
  }

  /** Token ids of a text without added specials; per-word results are cached, which makes bulk encoding fast. */
  tokenizeToIds(text: string): number[] {
    const out: number[] = [];
    for (const part of text.split(SPECIAL_SPLIT)) {
      if (part.length === 0) continue;
      if (SPECIAL_TOKENS.includes(part as (typeof SPECIAL_TOKENS)[number])) {
        out.push(this.vocab.id(part) ?? this.unkId);
        continue;
      }
      for (const word of basicTokenize(part, this.options)) {
        for (const id of this.wordIds(word)) out.push(id);
      }
    }
    return out;
  }

  /** WordPiece ids of one already-normalised word. */
  wordIds(word: string): readonly number[] {
    let ids = this.wordCache.get(word);
    if (ids === undefined) {
      const pieces = wordpiece(word, (p) => this.vocab.has(p), this.unkToken, this.options.maxCharsPerWord);
      ids = pieces.map((p) => this.vocab.id(p) as number);
      if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
      this.wordCache.set(word, ids);
    }
    return ids;
  }

  /** Encodes a text or a text pair as BERT input: [CLS] A [SEP] (B [SEP]), with token type ids. */
  encode(text: string, pair?: string, opts: EncodeOptions = {}): Encoding {
    const addSpecial = opts.addSpecialTokens ?? true;
    let a = this.tokenizeToIds(text);
    let b = pair === undefined ? undefined : this.tokenizeToIds(pair);
    if (opts.maxLength !== undefined) {
      const reserved = addSpecial ? (b === undefined ? 2 : 3) : 0;
      const budget = opts.maxLength - reserved;
      if (!Number.isInteger(opts.maxLength) || budget < 0) {
        throw new Error(`maxLength ${opts.maxLength} cannot hold the ${reserved} special tokens`);
      }
      [a, b] = truncateLongestFirst(a, b, budget);
    }
    const ids: number[] = [];
    const types: number[] = [];
    const sp = addSpecial ? this.specialIds : undefined;
    if (sp) ids.push(sp.cls);
    ids.push(...a);
    if (sp) ids.push(sp.sep);
    while (types.length < ids.length) types.push(0);
    if (b !== undefined) {
      ids.push(...b);
      if (sp) ids.push(sp.sep);
      while (types.length < ids.length) types.push(1);
    }
    return { ids, tokenTypeIds: types };
  }

  /** Token strings of ids. */
  convertIdsToTokens(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id) => this.vocab.token(id));
  }

  /** True when the id is a "##" continuation piece (used for whole-word masking). */
  isContinuation(id: number): boolean {
    if (this.continuation === undefined) {
      this.continuation = new Uint8Array(this.vocab.size);
      this.vocab.tokens.forEach((t, i) => {
        if (t.startsWith(CONTINUATION)) (this.continuation as Uint8Array)[i] = 1;
      });
    }
    return this.continuation[id] === 1;
  }

  /** Text of ids (HF decode: join with spaces, glue "##" pieces, optionally clean up spaces). */
  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    let tokens = this.convertIdsToTokens(ids);
    if (opts.skipSpecialTokens ?? false) {
      const specials = new Set<string>(SPECIAL_TOKENS);
      tokens = tokens.filter((t) => !specials.has(t));
    }
    let text = tokens.join(" ").split(" " + CONTINUATION).join("").trim();
    if (opts.cleanUpTokenizationSpaces ?? true) text = cleanUpTokenization(text);
    return text;
  }
}

/** HF's clean_up_tokenization: removes the spaces a space-joined decode leaves before punctuation and clitics. */
export function cleanUpTokenization(text: string): string {
  const rules: [string, string][] = [
    [" .", "."], [" ?", "?"], [" !", "!"], [" ,", ","], [" ' ", "'"],
    [" n't", "n't"], [" 'm", "'m"], [" 's", "'s"], [" 've", "'ve"], [" 're", "'re"],
  ];
  for (const [from, to] of rules) text = text.split(from).join(to);
  return text;
}

/**
 * HF's "longest_first" truncation to `budget` tokens in all: repeatedly drop the last token of the longer
 * sequence (of B on a tie).
 */
export function truncateLongestFirst(a: number[], b: number[] | undefined, budget: number): [number[], number[] | undefined] {
  const total = a.length + (b?.length ?? 0);
  const remove = Math.max(0, total - budget);
  if (remove === 0) return [a, b];
  if (b === undefined) return [a.slice(0, a.length - remove), b];
  const first = Math.min(Math.abs(b.length - a.length), remove);
  const second = remove - first;
  let dropA: number;
  let dropB: number;
  if (a.length > b.length) {
    dropA = first + Math.floor(second / 2);
    dropB = second - Math.floor(second / 2);
  } else {
    dropA = Math.floor(second / 2);
    dropB = first + second - Math.floor(second / 2);
  }
  return [a.slice(0, a.length - dropA), b.slice(0, b.length - dropB)];
}
