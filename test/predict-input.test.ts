import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { labelFieldNotFound, pairFieldNotFound, readExamples, unknownGoldLabels } from "../launch/predict";

test("predict reads its input with the corpus readers: TSV and gzipped files by format, text by line", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-predict-in-"));
  try {
    const tsv = path.join(dir, "dev.tsv");
    fs.writeFileSync(tsv, "text\tlabel\ngood film\tpos\nbad plot\tneg\n");
    assert.deepEqual(readExamples(tsv).map((d) => [d.text, d.label]), [["good film", "pos"], ["bad plot", "neg"]], "the header row is not an example");
    const csvGz = path.join(dir, "dev.csv.gz");
    fs.writeFileSync(csvGz, zlib.gzipSync("text,label\n\"a, b\",pos\n"));
    assert.deepEqual(readExamples(csvGz).map((d) => [d.text, d.label]), [["a, b", "pos"]]);
    const txtGz = path.join(dir, "lines.txt.gz");
    fs.writeFileSync(txtGz, zlib.gzipSync("one\n\ntwo\r\n"));
    assert.deepEqual(readExamples(txtGz).map((d) => [d.id, d.text]), [[`${txtGz}:1`, "one"], [`${txtGz}:3`, "two"]]);
    assert.throws(() => readExamples(dir), /is a folder; give one input file/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("predict reads other key and column names when told (--text-field etc.), and says how when it finds none", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-predict-fields-"));
  try {
    const jsonl = path.join(dir, "dev.jsonl");
    fs.writeFileSync(jsonl, JSON.stringify({ sentence1: "a cat", sentence2: "a dog", gold: "no" }) + "\n");
    const fields = { text: "sentence1", textPair: "sentence2", label: "gold" };
    assert.deepEqual(readExamples(jsonl, fields).map((d) => [d.text, d.textPair, d.label]), [["a cat", "a dog", "no"]]);
    assert.throws(() => readExamples(jsonl), /field "text".*--text-field/);
    const csv = path.join(dir, "dev.csv");
    fs.writeFileSync(csv, "sentence1,gold\nhello,yes\n");
    assert.deepEqual(readExamples(csv, fields).map((d) => [d.text, d.label]), [["hello", "yes"]]);
    assert.throws(() => readExamples(csv), /--text-field/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("predict: gold labels that are not classes of the model are named, counted and left out of the accuracy", () => {
  const docs = [{ id: "a", text: "x", label: "pos" }, { id: "b", text: "y", label: "neutral" }, { id: "c", text: "z", label: "neutral" }, { id: "d", text: "w", label: "1.0" }, { id: "e", text: "v" }];
  assert.equal(
    unknownGoldLabels(docs, ["neg", "pos"]),
    `3 example(s) have a label that is not one of the model's classes (neg, pos): "neutral" (2), "1.0" (1); they are left out of the accuracy (their label is kept as expectedNotAClass)`,
  );
  assert.equal(unknownGoldLabels(docs.slice(0, 1), ["neg", "pos"]), undefined);
});

test("predict: a --label-field or --text-pair-field that no example has is named in a warning, not silently dropped", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-predict-label-"));
  try {
    const csv = path.join(dir, "dev.csv");
    fs.writeFileSync(csv, "text,gold\ngood film,pos\nbad plot,neg\n");
    const misspelt = { text: "text", textPair: "text_pair", label: "glod" };
    assert.equal(
      labelFieldNotFound(readExamples(csv, misspelt), csv, misspelt),
      `--label-field glod: none of the 2 examples of ${csv} has a "glod" key/column, so no accuracy is computed`,
    );
    const right = { ...misspelt, label: "gold" };
    assert.equal(labelFieldNotFound(readExamples(csv, right), csv, right), undefined);
    // the same for a second-text column that is not there: each text would be classified alone
    const pairs = { ...right, textPair: "text2" };
    assert.equal(pairFieldNotFound(readExamples(csv, pairs), csv, pairs), `--text-pair-field text2: none of the 2 examples of ${csv} has a "text2" key/column, so each text is classified alone`);
    assert.equal(pairFieldNotFound(readExamples(csv, right), csv, right), undefined, "the default name is not a request");
    // unlabelled input read with the default field is ordinary: no warning
    assert.equal(labelFieldNotFound(readExamples(csv), csv, { text: "text", textPair: "text_pair", label: "label" }), undefined);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
