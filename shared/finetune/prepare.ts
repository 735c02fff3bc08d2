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
import { checkClassLabels } from "../data/label-check";
import { encodeLabelled, type LabelledSequences } from "../data/labelled";
import { loadPathGroups, loadRunDocuments, recordFields } from "../pipeline/prepare";
import { DEFAULT_FIELDS } from "../data/fields";
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
  /** Problems worth a warning that do not stop the run (launch prints them), e.g. a test label absent from training. */
  warnings: string[];
}

/**
 * Labelled documents of a run: SpamAssassin (label ham/spam) and files carry labels; Brown is split by text first
 * and then cut into passages labelled with their text's genre, so no text has passages on both sides of a split.
 * data.validation_paths / data.test_paths, when given, are those splits exactly (nothing is drawn from data.paths for
 * them); the classes are then the training data's, and given examples of any other label are left out with a warning.
 */
export function prepareClassificationData(cfg: RunConfig, tokenizer: BertTokenizer): ClassificationData {
  const f = cfg.finetune;
  if (f === undefined) throw new Error("the run config has no finetune section");
  const docs = loadRunDocuments(cfg);
  const brown = cfg.data.corpus === "brown";
  const by = brown ? "genre" : "label";
  const what = brown ? "genre" : `label (field ${JSON.stringify(cfg.data.label_field)}, data.label_field)`;
  const needLabels = (part: readonly Document[], field: string): void => {
    const unlabelled = part.findIndex((d) => d[by] === undefined);
    if (unlabelled < 0) return;
    const d = part[unlabelled];
    // "<file>:<line>" names the record; a record's own id is added, since it is what the user searches for
    const where = d.source === undefined ? `document ${unlabelled + 1} (${d.id})` : `${d.source} (id ${JSON.stringify(d.id)})`;
    // no record at all with the field: most likely data.label_field names a key/column the file does not have
    const none = !brown && part.every((x) => x.label === undefined) ? `; none of its ${part.length} documents has a ${JSON.stringify(cfg.data.label_field)} key/column: check data.label_field` : "";
    throw new Error(`${field}: ${where} has no ${what}; classification needs a label on every document${none}`);
  };
  needLabels(docs, "data.paths");
  // A text_pair_field the files do not have would train on single texts without a word (a misspelt second column).
  if (cfg.data.corpus === "files" && cfg.data.text_pair_field !== DEFAULT_FIELDS.textPair && !docs.some((d) => d.textPair !== undefined)) {
    throw new Error(
      `${sourceOf(cfg)}: none of the ${docs.length} documents has a ${JSON.stringify(cfg.data.text_pair_field)} key/column, which data.text_pair_field names; ` +
        `correct the name, or remove data.text_pair_field to classify single texts`,
    );
  }
  const givenTest = givenSplit(cfg.data.test_paths, "data.test_paths", cfg, needLabels);
  const givenValidation = givenSplit(cfg.data.validation_paths, "data.validation_paths", cfg, needLabels);
  if (!brown) {
    const all = [...docs, ...[...(givenTest ?? []), ...(givenValidation ?? [])].flatMap((g) => g.docs)];
    checkClassLabels(all, `${JSON.stringify(cfg.data.label_field)} (data.label_field)`);
  }
  const outer = givenTest === undefined ? testSplit(docs, { by, splitSeed: f.split_seed, testFraction: f.test_fraction }) : { train: docs, validation: [] };
  // validation_fraction is a share of all labelled documents; of what is left after the test split when that is drawn.
  const valShare = cfg.data.validation_fraction / (1 - (givenTest === undefined ? f.test_fraction : 0));
  const inner = givenValidation === undefined ? stratifiedSplit(outer.train, { validationFraction: valShare, seed: f.split_seed ^ 0x5a5a5a, by }) : { train: outer.train, validation: [] };
  const toExamples = (part: Document[]): Document[] => (brown ? genrePassages(part, cfg.data.max_seq_len) : part);
  // Validation and test examples in a seeded random order, so the first N (training.eval_sequences) are a fair sample.
  const shuffled = (part: Document[], key: number): Document[] => Array.from(permutation(part.length, f.split_seed, key), (i) => part[i]);
  const train = toExamples(inner.train);
  const warnings: string[] = [];
  let labels: string[];
  let validationDocs: Document[];
  let testDocs: Document[];
  if (givenTest === undefined && givenValidation === undefined) {
    validationDocs = toExamples(inner.validation);
    testDocs = toExamples(outer.validation);
    labels = orderLabels(new Set([...train, ...validationDocs, ...testDocs].map((d) => d.label as string)));
    if (labels.length < 2) throw new Error(`${sourceOf(cfg)}: classification needs at least 2 distinct labels, found ${labels.length} (${labels.join(", ")}) in ${labelKey(cfg)}`);
  } else {
    // With given splits the classes are the training data's (as HF run_glue takes them from the train split): a label
    // only in validation or test would be a class the model never saw trained, so it is reported, not added.
    labels = orderLabels(new Set(train.map((d) => d.label as string)));
    if (labels.length < 2) {
      throw new Error(`${sourceOf(cfg)}: classification needs at least 2 distinct labels in the training data (data.paths), found ${labels.length} (${labels.join(", ")}) in ${labelKey(cfg)}`);
    }
    const known = new Set(labels);
    const keepKnown = (groups: GivenGroup[] | undefined, field: string, drawn: Document[]): Document[] => {
      if (groups === undefined) return drawn;
      const kept = groups.flatMap((g) => knownOnly(g, field, known, warnings));
      // A given split with no example left would silently run without it (no validation, or no test results).
      if (kept.length === 0) throw new Error(noKnownLabel(groups, field, labels));
      return kept;
    };
    validationDocs = keepKnown(givenValidation, "data.validation_paths", toExamples(inner.validation));
    testDocs = keepKnown(givenTest, "data.test_paths", toExamples(outer.validation));
  }
  const validation = shuffled(validationDocs, 0x7a1);
  const test = shuffled(testDocs, 0x7e57);
  const index = new Map(labels.map((l, i) => [l, i]));
  const kept = labelSubset(train, f.label_fraction, cfg.seed);
  const seqLen = cfg.data.max_seq_len;
  return {
    labels,
    train: encodeLabelled(kept, tokenizer, seqLen, index),
    validation: encodeLabelled(validation, tokenizer, seqLen, index),
    test: encodeLabelled(test, tokenizer, seqLen, index),
    trainAvailable: train.length,
    warnings,
  };
}

/** Where a run's labelled documents come from, for errors: data.paths and its files, or the built-in corpus. */
function sourceOf(cfg: RunConfig): string {
  return cfg.data.corpus === "files" ? `data.paths (${cfg.data.paths.join(", ")})` : `data.corpus ${cfg.data.corpus}`;
}

/** The key/column the labels were read from, for errors (Brown's genre is its own). */
function labelKey(cfg: RunConfig): string {
  return cfg.data.corpus === "brown" ? "the genres" : `field ${JSON.stringify(cfg.data.label_field)} (data.label_field)`;
}

/** The documents of one given validation or test path. */
interface GivenGroup {
  path: string;
  docs: Document[];
}

/** Loads data.validation_paths or data.test_paths (undefined when not given), every document labelled. */
function givenSplit(paths: readonly string[] | undefined, field: string, cfg: RunConfig, needLabels: (part: readonly Document[], field: string) => void): GivenGroup[] | undefined {
  if (paths === undefined) return undefined;
  const groups = loadPathGroups(paths, recordFields(cfg));
  for (const g of groups) needLabels(g.docs, `${field} (${g.path})`);
  return groups;
}

/** The documents of `g` whose label is a training class; a warning per other label names it, its file and count. */
function knownOnly(g: GivenGroup, field: string, known: ReadonlySet<string>, warnings: string[]): Document[] {
  const unknown = new Map<string, number>();
  const out = g.docs.filter((d) => {
    const ok = known.has(d.label as string);
    if (!ok) unknown.set(d.label as string, (unknown.get(d.label as string) ?? 0) + 1);
    return ok;
  });
  for (const [label, n] of unknown) {
    warnings.push(`data: ${field}: ${g.path}: label ${JSON.stringify(label)} does not occur in the training data (data.paths); its ${n} example(s) are left out`);
  }
  return out;
}

/** Why a given validation/test split is left empty: its labels and the training labels side by side (e.g. 0/1 vs neg/pos). */
function noKnownLabel(groups: readonly GivenGroup[], field: string, labels: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const d of groups.flatMap((g) => g.docs)) counts.set(d.label as string, (counts.get(d.label as string) ?? 0) + 1);
  const list = (xs: readonly string[]): string => xs.slice(0, 8).map((l) => JSON.stringify(l)).join(", ") + (xs.length > 8 ? ", …" : "");
  const given = [...counts].map(([l, n]) => `${JSON.stringify(l)} (${n})`).slice(0, 8).join(", ") + (counts.size > 8 ? ", …" : "");
  return (
    `${field} (${groups.map((g) => g.path).join(", ")}): none of its ${[...counts.values()].reduce((a, b) => a + b, 0)} examples has a label of the training data ` +
    `(data.paths: ${list(labels)}); its labels: ${given}. Write the labels as the training files do`
  );
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
