import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadRunConfig } from "../shared/config/load";
import { runConfigSchema, type RunConfigInput } from "../shared/config/schema";
import { prepareClassificationData } from "../shared/finetune/prepare";
import { prepareNspData, preparePretrainingData, pretrainingDocuments } from "../shared/pipeline/prepare";
import { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { SPECIAL_TOKENS, Vocab } from "../shared/tokenizer/vocab";

// Tiny labelled files and a tiny vocabulary: the classification data path runs in milliseconds.
const WORDS = ["good", "bad", "fine", "film", "plot", "the", "was", "."];
const tokenizer = new BertTokenizer(new Vocab([...SPECIAL_TOKENS, ...WORDS]));

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-ftdata-"));
}

/** Writes JSONL rows of [text, label] and returns the file. */
function jsonl(dir: string, name: string, rows: [string, string][]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, rows.map(([text, label]) => JSON.stringify({ text, label })).join("\n") + "\n");
  return file;
}

function classificationConfig(data: RunConfigInput["data"]): ReturnType<typeof runConfigSchema.parse> {
  return runConfigSchema.parse({
    task: "classification", finetune: { base_model: "unused" }, training: { max_steps: 1 }, batch: { global_batch_size: 2, micro_batch_size: 2 },
    data: { corpus: "files", max_seq_len: 16, ...data },
  });
}

const trainRows = (n: number): [string, string][] => Array.from({ length: n }, (_, i) => [i % 2 ? "the film was good" : "the plot was bad", i % 2 ? "pos" : "neg"]);

test("classification: validation_paths and test_paths are those splits exactly; data.paths is all training", () => {
  const dir = tempDir();
  try {
    const train = jsonl(dir, "train.jsonl", trainRows(10));
    const val = jsonl(dir, "val.jsonl", [["good film", "pos"], ["bad plot", "neg"], ["fine", "pos"]]);
    const testFile = jsonl(dir, "test.jsonl", [["good", "pos"], ["bad", "neg"]]);
    const data = prepareClassificationData(classificationConfig({ paths: [train], validation_paths: [val], test_paths: [testFile] }), tokenizer);
    assert.deepEqual(data.labels, ["neg", "pos"]);
    assert.equal(data.train.count, 10, "no share of data.paths is drawn for validation or test");
    assert.equal(data.validation.count, 3);
    assert.equal(data.test.count, 2);
    assert.deepEqual([...data.test.ids].sort(), [`${testFile}:1`, `${testFile}:2`]);
    assert.deepEqual(data.warnings, []);
    // Only one of them given: the other split is still drawn from data.paths.
    const onlyVal = prepareClassificationData(classificationConfig({ paths: [train], validation_paths: [val], validation_fraction: 0.1 }), tokenizer);
    assert.equal(onlyVal.validation.count, 3);
    assert.ok(onlyVal.test.count > 0 && onlyVal.test.count + onlyVal.train.count === 10, `test ${onlyVal.test.count} drawn from the 10 training rows`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: a label only in the given validation/test files is reported and left out, never made a class", () => {
  const dir = tempDir();
  try {
    const train = jsonl(dir, "train.jsonl", trainRows(6));
    const testFile = jsonl(dir, "test.jsonl", [["good", "pos"], ["fine", "neutral"], ["fine film", "neutral"]]);
    const data = prepareClassificationData(classificationConfig({ paths: [train], test_paths: [testFile] }), tokenizer);
    assert.deepEqual(data.labels, ["neg", "pos"]);
    assert.equal(data.test.count, 1);
    assert.equal(data.warnings.length, 1);
    assert.match(data.warnings[0], /data\.test_paths: .*test\.jsonl: label "neutral" does not occur in the training data \(data\.paths\); its 2 example\(s\) are left out/);
    // Training with a single class left is an error naming the field.
    const oneClass = jsonl(dir, "one.jsonl", [["good", "pos"], ["fine", "pos"]]);
    const valFile = jsonl(dir, "val.jsonl", [["bad", "neg"]]);
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [oneClass], validation_paths: [valFile] }), tokenizer),
      /at least 2 distinct labels in the training data \(data\.paths\), found 1 \(pos\)/,
    );
    // An unlabelled given document is named with its field and file.
    const unlabelled = path.join(dir, "unlabelled.jsonl");
    fs.writeFileSync(unlabelled, JSON.stringify({ text: "good" }) + "\n");
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [train], validation_paths: [unlabelled] }), tokenizer), /data\.validation_paths \(.*unlabelled\.jsonl\): document 1 .* has no label/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("pretraining: validation_paths replaces the validation_fraction split (MLM and NSP)", () => {
  const dir = tempDir();
  try {
    const trainFiles = ["a.txt", "b.txt", "c.txt"].map((n) => {
      fs.writeFileSync(path.join(dir, n), "the film was good . the plot was bad .\n".repeat(4));
      return path.join(dir, n);
    });
    const val = path.join(dir, "val.txt");
    fs.writeFileSync(val, "good plot . bad film .\n");
    const cfg = runConfigSchema.parse({
      model: { preset: "bert-tiny" }, training: { max_steps: 1 }, batch: { global_batch_size: 2, micro_batch_size: 2 },
      data: { corpus: "files", paths: trainFiles, validation_paths: [val], max_seq_len: 16, validation_fraction: 0.5, cache_dir: path.join(dir, "cache") },
    });
    const docs = pretrainingDocuments(cfg);
    assert.equal(docs.length, 3);
    const packed = preparePretrainingData(cfg, docs, tokenizer);
    const all = preparePretrainingData({ ...cfg, data: { ...cfg.data, validation_paths: undefined, validation_fraction: 0 } }, docs, tokenizer);
    assert.equal(packed.train.count, all.train.count, "every training file is trained on");
    assert.equal(packed.validation.count, 1, "the validation file packs into one sequence");
    assert.notEqual(packed.key, all.key);
    const nsp = prepareNspData(cfg, docs, tokenizer);
    assert.equal(nsp.validation.count, 0, "one validation document has no NSP pairs");
    assert.ok(nsp.train.count > 0);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("config: validation_paths / test_paths are resolved, checked before start and refused where they mean nothing", () => {
  const dir = tempDir();
  try {
    jsonl(dir, "train.jsonl", trainRows(4));
    const yaml = (extra: string): string => {
      const file = path.join(dir, "cfg.yaml");
      fs.writeFileSync(file, `task: classification\nfinetune: {base_model: x}\ntraining: {max_steps: 1}\nbatch: {global_batch_size: 2, micro_batch_size: 2}\ndata:\n  corpus: files\n  paths: [train.jsonl]\n${extra}`);
      return file;
    };
    const ok = loadRunConfig(yaml("  validation_paths: [train.jsonl]\n"));
    assert.equal(ok.data.validation_paths?.[0], path.join(dir, "train.jsonl"), "relative to the config file");
    assert.throws(() => loadRunConfig(yaml("  test_paths: [train.jsonl, nope.jsonl]\n")), /cfg\.yaml: field data\.test_paths\[1\]: file or folder not found: .*nope\.jsonl/);
    const pretrain = runConfigSchema.safeParse({ model: { preset: "bert-tiny" }, training: { max_steps: 1 }, batch: { global_batch_size: 2, micro_batch_size: 2 }, data: { corpus: "files", paths: ["a"], test_paths: ["b"] } });
    assert.match(JSON.stringify(pretrain.error?.issues), /only used with task: classification/);
    const builtin = runConfigSchema.safeParse({ model: { preset: "bert-tiny" }, training: { max_steps: 1 }, batch: { global_batch_size: 2, micro_batch_size: 2 }, data: { corpus: "brown", validation_paths: ["b"] } });
    assert.match(JSON.stringify(builtin.error?.issues), /needs corpus: files/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: data.text_field / data.label_field name the keys; a missing label names the configured field", () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, "sst.jsonl");
    fs.writeFileSync(file, Array.from({ length: 6 }, (_, i) => JSON.stringify({ sentence: i % 2 ? "good film" : "bad plot", sentiment: i % 2 })).join("\n") + "\n");
    const data = prepareClassificationData(classificationConfig({ paths: [file], text_field: "sentence", label_field: "sentiment" }), tokenizer);
    assert.deepEqual(data.labels, ["0", "1"]);
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [file], text_field: "sentence" }), tokenizer), /has no label \(field "label", data\.label_field\)/);
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [file] }), tokenizer), /sst\.jsonl:1: field "text" must be a string/);
    assert.match(JSON.stringify(runConfigSchema.safeParse({ task: "classification", finetune: { base_model: "x" }, training: { max_steps: 1 }, batch: { global_batch_size: 2, micro_batch_size: 2 }, data: { text_field: "label" } }).error?.issues), /must differ/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification refuses labels that look like a regression target, and one number written two ways", () => {
  const dir = tempDir();
  try {
    const stsb = path.join(dir, "stsb.jsonl");
    fs.writeFileSync(stsb, [[0, "a"], [3.8, "b"], [5, "c"], [0, "d"]].map(([label, text]) => JSON.stringify({ text, label })).join("\n") + "\n");
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [stsb] }), tokenizer), /stsb\.jsonl:2: field "label" \(data\.label_field\): label "3\.8" is not a whole number: .*regression is not supported/);
    const twoWays = path.join(dir, "two.csv");
    fs.writeFileSync(twoWays, "text,label\ngood,1\nbad,0\nfine,1.0\nplot,0\n");
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [twoWays] }), tokenizer), /two\.csv:4: field "label" \(data\.label_field\): labels "1" \(.*two\.csv:2\) and "1\.0" are the same number written two ways/);
    const ids = jsonl(dir, "ids.jsonl", Array.from({ length: 8 }, (_, i): [string, string] => ["good", `user${i % 5}`]));
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [ids] }), tokenizer), /5 distinct labels among 8 examples \("user0", "user1", "user2", "user3", "user4"\): .*regression is not supported/);
    // Whole-number labels written one way, and few classes, are fine; so is a validation file checked with the rest.
    const ok = jsonl(dir, "ok.jsonl", Array.from({ length: 8 }, (_, i): [string, string] => ["good", `${i % 3}`]));
    assert.deepEqual(prepareClassificationData(classificationConfig({ paths: [ok] }), tokenizer).labels, ["0", "1", "2"]);
    const badVal = jsonl(dir, "val.jsonl", [["good", "1.5"]]);
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [ok], validation_paths: [badVal] }), tokenizer), /val\.jsonl:1: .*label "1\.5" is not a whole number/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: a given validation/test file with no training label left is an error naming both label sets, not a run without it", () => {
  const dir = tempDir();
  try {
    // integer labels for training, words in the validation file: every validation example would be left out
    const train = path.join(dir, "train.jsonl");
    fs.writeFileSync(train, trainRows(20).map(([text, label]) => JSON.stringify({ text, label: label === "pos" ? 1 : 0 })).join("\n") + "\n");
    const val = jsonl(dir, "val.jsonl", [["good film", "pos"], ["bad plot", "neg"], ["fine", "neutral"]]);
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [train], validation_paths: [val] }), tokenizer),
      /^Error: data\.validation_paths \(.*val\.jsonl\): none of its 3 examples has a label of the training data \(data\.paths: "0", "1"\); its labels: "pos" \(1\), "neg" \(1\), "neutral" \(1\)/,
    );
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [train], test_paths: [val] }), tokenizer), /^Error: data\.test_paths \(.*val\.jsonl\): none of its 3 examples/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: an unlabelled CSV row with its own id column is named by file and line; a label column the file lacks is suggested", () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, "train.csv");
    fs.writeFileSync(file, "id,text,label\r\n7,\"the film, \"\"good\"\"\",pos\r\n8,the plot was bad,\r\n9,fine,neg\r\n");
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [file] }), tokenizer),
      (e: Error) => e.message.startsWith(`data.paths: ${file}:3 (id "8") has no label (field "label", data.label_field)`) && !/none of its/.test(e.message),
    );
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [file], label_field: "lable" }), tokenizer),
      /train\.csv:2 \(id "7"\) has no label \(field "lable", data\.label_field\); .*none of its 3 documents has a "lable" key\/column: check data\.label_field/,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: a labelled file with a single class is refused naming the file and the label field", () => {
  const dir = tempDir();
  try {
    const one = jsonl(dir, "one-class.jsonl", [["good", "pos"], ["fine", "pos"], ["the film", "pos"]]);
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [one] }), tokenizer),
      /^Error: data\.paths \(.*one-class\.jsonl\): classification needs at least 2 distinct labels, found 1 \(pos\) in field "label" \(data\.label_field\)/,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: a data.text_pair_field that no training document has is refused, not trained as single texts", () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, "pairs.jsonl");
    fs.writeFileSync(file, Array.from({ length: 6 }, (_, i) => JSON.stringify({ sentence1: "the film", sentence2: i % 2 ? "was good" : "was bad", label: i % 2 })).join("\n") + "\n");
    const paired = prepareClassificationData(classificationConfig({ paths: [file], text_field: "sentence1", text_pair_field: "sentence2" }), tokenizer);
    assert.ok([...paired.train.tokenTypes].some((t) => t === 1), "the second text is encoded as segment B");
    assert.throws(
      () => prepareClassificationData(classificationConfig({ paths: [file], text_field: "sentence1", text_pair_field: "sentence_2" }), tokenizer),
      /^Error: data\.paths \(.*pairs\.jsonl\): none of the 6 documents has a "sentence_2" key\/column, which data\.text_pair_field names/,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("classification: an empty JSONL label is a missing label named by file and line, not a class \"\"", () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, "train.jsonl");
    const rows = trainRows(10).map(([text, label], i) => JSON.stringify({ text, label: i === 3 ? "" : label }));
    fs.writeFileSync(file, rows.join("\n") + "\n");
    assert.throws(() => prepareClassificationData(classificationConfig({ paths: [file] }), tokenizer), /^Error: data\.paths: document 4 \(.*train\.jsonl:4\) has no label \(field "label", data\.label_field\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
