/**
 * The labelled data of a classification run: documents -> labels -> stratified train / validation / test split ->
 * the kept share of training labels -> encoded sequences. Deterministic: launch and every worker compute the same.
 */
import type { RunConfig } from "../config/schema";
import type { Document } from "../data/document";
import { stratifiedSplit } from "../data/split";
import { testSplit } from "../data/test-split";
import { genrePassages } from "../data/passages";
import { labelSubset } from "../data/label-subset";
import { encodeLabelled, type LabelledSequences } from "../data/labelled";
import { loadRunDocuments } from "../pipeline/prepare";
import { permutation } from "../rng";
import type { BertTokenizer } from "../tokenizer/bert-tokenizer";

/** The three encoded splits and the class names (index = class id). */
export interface ClassificationData {
  labels: string[];
  train: LabelledSequences;
  validation: LabelledSequences;
  test: LabelledSequences;
  /** Training examples before the label fraction was applied. */
  trainAvailable: number;
}

/**
 * Labelled documents of a run: SpamAssassin (label ham/spam) and files carry labels; Brown is split by text first
 * and then cut into passages labelled with their text's genre, so no text has passages on both sides of a split.
 */
export function prepareClassificationData(cfg: RunConfig, tokenizer: BertTokenizer): ClassificationData {
  const f = cfg.finetune;
  if (f === undefined) throw new Error("the run config has no finetune section");
  const docs = loadRunDocuments(cfg);
  const brown = cfg.data.corpus === "brown";
  const by = brown ? "genre" : "label";
  docs.forEach((d, i) => {
    if (d[by] === undefined) throw new Error(`data: document ${i + 1} (${d.id}) has no ${by}; classification needs a label on every document`);
  });
  const valShare = cfg.data.validation_fraction / (1 - f.test_fraction);
  const outer = testSplit(docs, { by, splitSeed: f.split_seed, testFraction: f.test_fraction });
  const inner = stratifiedSplit(outer.train, { validationFraction: valShare, seed: f.split_seed ^ 0x5a5a5a, by });
  const toExamples = (part: Document[]): Document[] => (brown ? genrePassages(part, cfg.data.max_seq_len) : part);
  // Validation and test examples in a seeded random order, so the first N (training.eval_sequences) are a fair sample.
  const shuffled = (part: Document[], key: number): Document[] => Array.from(permutation(part.length, f.split_seed, key), (i) => part[i]);
  const train = toExamples(inner.train);
  const validation = shuffled(toExamples(inner.validation), 0x7a1);
  const test = shuffled(toExamples(outer.validation), 0x7e57);
  const labels = orderLabels(new Set([...train, ...validation, ...test].map((d) => d.label as string)));
  if (labels.length < 2) throw new Error(`data: classification needs at least 2 distinct labels, found ${labels.length} (${labels.join(", ")})`);
  const index = new Map(labels.map((l, i) => [l, i]));
  const kept = labelSubset(train, f.label_fraction, cfg.seed);
  const seqLen = cfg.data.max_seq_len;
  return {
    labels,
    train: encodeLabelled(kept, tokenizer, seqLen, index),
    validation: encodeLabelled(validation, tokenizer, seqLen, index),
    test: encodeLabelled(test, tokenizer, seqLen, index),
    trainAvailable: train.length,
  };
}

/**
 * Class ids follow the labels' order: numeric labels (0, 1, …, 10, 11) by value, so that class i is label i as a
 * Hugging Face user expects; any others as sorted strings.
 */
export function orderLabels(labels: Iterable<string>): string[] {
  const all = [...labels];
  const numeric = all.length > 0 && all.every((l) => /^-?\d+(\.\d+)?$/.test(l));
  return numeric ? all.sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0)) : all.sort();
}
