import * as fs from "node:fs";
import * as path from "node:path";
import type { RunConfig } from "../config/schema";
import { buildNspCorpus, corpusHash, loadCorpus, parseCorpusSpec, preparePackedData, splitDocuments, type Document, type NspCorpus, type RecordFields, type PreparedData } from "../data";
import { BertTokenizer, MAX_CHARS_PER_WORD, trainTokenizer, Vocab } from "../tokenizer";
import { atomicWriteFile } from "../io/atomic-write";
import { testSplit } from "../data/test-split";
import { cutIntoLineBlocks, tooFewDocumentsToSplit } from "../data/line-blocks";
import { createHash } from "node:crypto";
import { makeConfiguredDirs } from "../io/make-dirs";

/** Loads the documents a run config names (a built-in corpus, or every file in data.paths). */
export function loadRunDocuments(cfg: RunConfig): Document[] {
  if (cfg.data.corpus !== "files") return loadCorpus({ kind: cfg.data.corpus });
  const docs = loadPathGroups(cfg.data.paths, recordFields(cfg)).flatMap((g) => g.docs);
  if (docs.length === 0) throw new Error(`data.paths (${cfg.data.paths.join(", ")}) hold no documents`);
  return docs;
}

/** The documents of each of `paths` (files or folders, read by extension as data.paths are), path by path. */
export function loadPathGroups(paths: readonly string[], fields: RecordFields): { path: string; docs: Document[] }[] {
  return paths.map((p) => ({ path: p, docs: loadCorpus(parseCorpusSpec(p), fields) }));
}

/** The JSONL keys / CSV columns of text, text pair and label a run config names (data.text_field etc.). */
export function recordFields(cfg: RunConfig): RecordFields {
  return { text: cfg.data.text_field, textPair: cfg.data.text_pair_field, label: cfg.data.label_field };
}

/** The documents of data.validation_paths, or undefined when the validation split is drawn from data.paths. */
export function givenValidationDocuments(cfg: RunConfig): Document[] | undefined {
  const paths = cfg.data.validation_paths;
  return paths === undefined ? undefined : loadPathGroups(paths, recordFields(cfg)).flatMap((g) => g.docs);
}

/**
 * The documents a pretraining run trains and validates on: the run's documents, less the classification test split
 * that `data.holdout` names (by genre for Brown, by label otherwise, as classification runs split them). Documents
 * too few for the validation split by whole documents (one text file, say) are cut into blocks of consecutive lines.
 */
export function pretrainingDocuments(cfg: RunConfig): Document[] {
  return pretrainingCorpus(cfg).docs;
}

/** pretrainingDocuments, with a note for the log when the documents were cut into line blocks. */
export function pretrainingCorpus(cfg: RunConfig): { docs: Document[]; note?: string } {
  const docs = loadRunDocuments(cfg);
  const h = cfg.data.holdout;
  const kept = h === undefined ? docs : testSplit(docs, { by: cfg.data.corpus === "brown" ? "genre" : "label", splitSeed: h.split_seed, testFraction: h.test_fraction }).train;
  if (kept.length === 0) throw new Error("data.holdout leaves no documents to pretrain on");
  const fraction = cfg.data.validation_fraction;
  if (cfg.data.validation_paths !== undefined || !tooFewDocumentsToSplit(kept.length, fraction)) return { docs: kept };
  const blocks = cutIntoLineBlocks(kept);
  if (blocks.length === kept.length) return { docs: kept };
  return {
    docs: blocks,
    note: `${kept.length} document(s) are too few for a ${+(fraction * 100).toFixed(2)}% validation split by whole documents: cut into ${blocks.length} blocks of consecutive lines, split by block`,
  };
}

/** Tokenizer options of a run config (uncased unless tokenizer.lowercase is false). */
function normalizer(cfg: RunConfig): { lowerCase: boolean } {
  return { lowerCase: cfg.tokenizer.lowercase };
}

/**
 * The run's tokenizer: tokenizer.vocab_file when given, else a WordPiece vocabulary trained on the training
 * documents, cached in data.cache_dir under a key of the corpus and the trainer settings.
 */
export async function prepareTokenizer(cfg: RunConfig, docs: readonly Document[], log: (line: string) => void = () => {}): Promise<BertTokenizer> {
  if (cfg.tokenizer.vocab_file !== undefined) return BertTokenizer.fromFile(cfg.tokenizer.vocab_file, normalizer(cfg));
  const key = createHash("sha256")
    // maxChars: vocabularies cached before over-long words were skipped differ, so they are not reused.
    .update(JSON.stringify({ corpus: corpusHash(docs), vocab: cfg.tokenizer.vocab_size, min: cfg.tokenizer.min_frequency, lower: cfg.tokenizer.lowercase, maxChars: MAX_CHARS_PER_WORD }))
    .digest("hex")
    .slice(0, 24);
  const cached = path.join(cfg.data.cache_dir, `vocab-${key}.txt`);
  if (fs.existsSync(cached)) return BertTokenizer.fromFile(cached, normalizer(cfg));
  const t0 = Date.now();
  const { tokenizer } = await trainTokenizer(docs.map((d) => d.text), {
    vocabSize: cfg.tokenizer.vocab_size,
    minFrequency: cfg.tokenizer.min_frequency,
    ...normalizer(cfg),
  });
  makeConfiguredDirs("cache_dir", cfg.data.cache_dir);
  await atomicWriteFile(cached, tokenizer.vocab.tokens.join("\n") + "\n");
  log(`trained a WordPiece vocabulary of ${tokenizer.vocabSize} tokens on ${docs.length} documents in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return tokenizer;
}

/** A tokenizer from a vocabulary list (as the coordinator hands it to workers). */
export function tokenizerFromTokens(tokens: readonly string[], cfg: RunConfig): BertTokenizer {
  return new BertTokenizer(new Vocab(tokens), normalizer(cfg));
}

/**
 * Tokenised, packed train/validation sequences of the run (cached in data.cache_dir): `docs` split by
 * validation_fraction, or, with data.validation_paths, `docs` all train and those files the validation split.
 */
export function preparePretrainingData(cfg: RunConfig, docs: readonly Document[], tokenizer: BertTokenizer): PreparedData {
  return preparePackedData(docs, {
    tokenizer,
    maxSeqLen: cfg.data.max_seq_len,
    validationFraction: cfg.data.validation_fraction,
    seed: cfg.seed,
    cacheDir: cfg.data.cache_dir,
    validationDocs: givenValidationDocuments(cfg),
  });
}

/**
 * Sentence-pair data for BERT's next-sentence prediction (objective mlm+nsp): documents are split into train and
 * validation as for MLM (or validation is data.validation_paths), then cut into sentence segments; sample k pairs anchor k with its successor or a random
 * segment (decided per epoch by the masking seed).
 */
export function prepareNspData(cfg: RunConfig, docs: readonly Document[], tokenizer: BertTokenizer): { train: NspCorpus; validation: NspCorpus } {
  const given = givenValidationDocuments(cfg);
  const split = given !== undefined ? { train: [...docs], validation: given } : splitDocuments(docs, { validationFraction: cfg.data.validation_fraction, seed: cfg.seed });
  const train = buildNspCorpus(split.train, tokenizer, cfg.data.max_seq_len);
  // NSP pairs need two documents; a validation split of zero or one document (validation_fraction 0, a small
  // corpus) has no pairs to evaluate: it is empty, as an MLM validation split of no sequences is
  const validation = split.validation.length < 2 ? emptyNspCorpus(train) : buildNspCorpus(split.validation, tokenizer, cfg.data.max_seq_len);
  return { train, validation };
}

/** An NSP corpus with no samples, shaped like `like`. */
function emptyNspCorpus(like: NspCorpus): NspCorpus {
  return { ...like, count: 0, tokens: new Int32Array(0), wordStarts: new Uint8Array(0), segStart: Int32Array.of(0), segDoc: new Int32Array(0), anchors: new Int32Array(0) };
}
