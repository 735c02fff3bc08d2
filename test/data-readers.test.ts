import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { constants } from "node:buffer";
import * as zlib from "node:zlib";
import { repoRoot } from "../shared/paths";
import { loadCorpus, parseCorpusSpec, corpusHash } from "../shared/data/corpus";
import { parseCsv } from "../shared/data/csv";
import { readCsvDocuments } from "../shared/data/csv-reader";
import { readJsonlDocuments } from "../shared/data/jsonl-reader";
import { readTextDocuments } from "../shared/data/text-reader";

const FIX = path.join(repoRoot(), "test", "fixtures", "data");

test("text reader: one document per file, paragraphs kept, hidden files skipped", () => {
  const docs = readTextDocuments(path.join(FIX, "texts"));
  assert.deepEqual(docs.map((d) => d.id), ["a.txt", "sub/b.txt"]);
  assert.equal(docs[0].text, "First paragraph of doc A.\nStill the first paragraph.\n\nSecond paragraph of doc A.\n");
  assert.deepEqual(readTextDocuments(path.join(FIX, "texts", "a.txt")).map((d) => d.id), ["a.txt"]);
  assert.throws(() => readTextDocuments(path.join(FIX, "nope")), /cannot read .*nope/);
});

test("text reader: invalid UTF-8 names file and line", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-text-"));
  try {
    fs.writeFileSync(path.join(dir, "bad.txt"), Buffer.concat([Buffer.from("ok\nstill ok\nbad "), Buffer.from([0xc3, 0x28]), Buffer.from("\n")]));
    assert.throws(() => readTextDocuments(dir), /bad\.txt:3: invalid UTF-8/);
    fs.writeFileSync(path.join(dir, "bad.txt"), Buffer.from([0xef, 0xbb, 0xbf, 0x68, 0xc3, 0xa9]));
    assert.equal(readTextDocuments(dir)[0].text, "hé", "BOM dropped, valid UTF-8 decoded");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("JSONL reader: fields, numeric labels, blank lines; errors name file and line", () => {
  const file = path.join(FIX, "docs.jsonl");
  const docs = readJsonlDocuments(file);
  assert.equal(docs.length, 3);
  assert.deepEqual(docs[0], { id: `${file}:1`, text: "The first review was glowing.", label: "pos" });
  assert.equal(docs[1].id, "r2");
  assert.deepEqual(docs[2], { id: `${file}:4`, text: "Is it raining?", label: "1", textPair: "No, it is sunny." });
  assert.throws(() => readJsonlDocuments(path.join(FIX, "bad.jsonl")), /bad\.jsonl:3: invalid JSON/);
  assert.throws(() => readJsonlDocuments(path.join(FIX, "no-text.jsonl")), /no-text\.jsonl:2: field "text" must be a string, got nothing/);
});

test("CSV parser: quotes, doubled quotes, embedded newlines, CRLF", () => {
  const rows = parseCsv('a,b\r\n"x, y","say ""hi""\nthere"\r\n,\n', "mem.csv");
  assert.deepEqual(rows, [
    { line: 1, fields: ["a", "b"] },
    { line: 2, fields: ["x, y", 'say "hi"\nthere'] },
    { line: 4, fields: ["", ""] },
  ]);
  assert.throws(() => parseCsv('a\n"b"c\n', "mem.csv"), /mem\.csv:2: unexpected "c" after a closing quote/);
  assert.throws(() => parseCsv('a\nb"c\n', "mem.csv"), /mem\.csv:2: quote inside an unquoted field/);
});

test("CSV reader: header columns, optional fields; errors name file and line", () => {
  const csv = path.join(FIX, "docs.csv");
  const docs = readCsvDocuments(csv);
  // rows with their own id keep the file and line they start on, for errors
  assert.deepEqual(docs, [
    { id: "c1", text: "Hello, world", label: "greet", source: `${csv}:2` },
    { id: "c2", text: 'She said "hi"\nand left', label: "story", textPair: "a pair, quoted", source: `${csv}:3` },
    { id: "c3", text: "plain text", label: "plain", source: `${csv}:5` },
  ]);
  assert.throws(() => readCsvDocuments(path.join(FIX, "bad-fields.csv")), /bad-fields\.csv:4: expected 2 fields as in the header, got 3/);
  assert.throws(() => readCsvDocuments(path.join(FIX, "bad-quote.csv")), /bad-quote\.csv:3: unterminated quoted field/);
  assert.throws(() => readCsvDocuments(path.join(FIX, "no-text.csv")), /no-text\.csv:1: header has no "text" column/);
});

test("corpus specs and content hash", () => {
  assert.deepEqual(parseCorpusSpec("brown"), { kind: "brown" });
  assert.deepEqual(parseCorpusSpec("x/y.JSONL"), { kind: "jsonl", path: "x/y.JSONL" });
  assert.deepEqual(parseCorpusSpec("csv:data.txt"), { kind: "csv", path: "data.txt" });
  assert.deepEqual(parseCorpusSpec("some/folder"), { kind: "text", path: "some/folder" });
  const docs = loadCorpus({ kind: "csv", path: path.join(FIX, "docs.csv") });
  const h = corpusHash(docs);
  assert.equal(corpusHash(docs.map((d) => ({ ...d }))), h);
  assert.notEqual(corpusHash([{ ...docs[0], label: "other" }, ...docs.slice(1)]), h);
  assert.notEqual(corpusHash(docs.slice(1)), h);
});

test("a data folder follows symbolic links (cycles skipped) and reads .jsonl/.csv files by their format", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-folder-"));
  try {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), "rt-outside-"));
    fs.writeFileSync(path.join(outside, "linked.txt"), "a linked document\n");
    const corpus = path.join(dir, "corpus");
    fs.mkdirSync(path.join(corpus, "sub"), { recursive: true });
    fs.writeFileSync(path.join(corpus, "c.txt"), "a plain document\n");
    fs.writeFileSync(path.join(corpus, "rows.jsonl"), '{"text": "first row"}\n{"text": "second row"}\n');
    fs.writeFileSync(path.join(corpus, "sub", "table.csv"), "text\nfrom a csv\n");
    fs.symlinkSync(path.join(outside, "linked.txt"), path.join(corpus, "b.txt"));
    fs.symlinkSync(outside, path.join(corpus, "more"));
    fs.symlinkSync(corpus, path.join(corpus, "sub", "loop")); // a cycle back to the root
    const docs = loadCorpus(parseCorpusSpec(corpus));
    assert.deepEqual(docs.map((d) => d.text.trim()), ["a linked document", "a plain document", "a linked document", "first row", "second row", "from a csv"]);
    assert.ok(!docs.some((d) => d.text.includes('"text"')), "JSONL and CSV are parsed, not read as raw text");
    fs.symlinkSync(path.join(dir, "gone"), path.join(corpus, "dangling.txt"));
    assert.throws(() => loadCorpus(parseCorpusSpec(corpus)), /dangling\.txt: symbolic link to a missing file/);
    fs.rmSync(outside, { recursive: true, force: true });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("configurable field names: JSONL keys and CSV columns, errors name the configured field", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-fields-"));
  try {
    const fields = { text: "sentence", textPair: "sentence2", label: "sentiment" };
    const j = path.join(dir, "a.jsonl");
    fs.writeFileSync(j, '{"sentence": "good", "sentence2": "yes", "sentiment": 1, "text": "ignored"}\n{"text": "no sentence"}\n');
    assert.throws(() => readJsonlDocuments(j, fields), /a\.jsonl:2: field "sentence" must be a string, got nothing/);
    fs.writeFileSync(j, '{"sentence": "good", "sentence2": "yes", "sentiment": 1, "text": "ignored"}\n');
    assert.deepEqual(readJsonlDocuments(j, fields), [{ id: `${j}:1`, text: "good", textPair: "yes", label: "1" }]);
    const c = path.join(dir, "b.csv");
    fs.writeFileSync(c, "sentence,sentiment\nfine,pos\n");
    assert.deepEqual(loadCorpus(parseCorpusSpec(c), fields), [{ id: `${c}:2`, text: "fine", label: "pos" }]);
    assert.throws(() => readCsvDocuments(path.join(FIX, "docs.csv"), fields), /docs\.csv:1: header has no "sentence" column/);
    // A folder passes the names on to the files it holds.
    assert.equal(loadCorpus(parseCorpusSpec(dir), fields).length, 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("gzip and TSV: .gz files are read decompressed in the format before .gz; .tsv is tab-separated with a header", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-gz-"));
  try {
    const gz = (name: string, text: string): string => {
      fs.writeFileSync(path.join(dir, name), zlib.gzipSync(Buffer.from(text)));
      return path.join(dir, name);
    };
    const j = gz("a.jsonl.gz", '{"text": "from jsonl", "label": "x"}\n');
    assert.deepEqual(parseCorpusSpec(j), { kind: "jsonl", path: j });
    assert.deepEqual(loadCorpus(parseCorpusSpec(j)), [{ id: `${j}:1`, text: "from jsonl", label: "x" }]);
    const c = gz("b.CSV.gz", "text,label\n\"from, csv\",y\n");
    assert.deepEqual(loadCorpus(parseCorpusSpec(c)).map((d) => [d.text, d.label]), [["from, csv", "y"]]);
    const t = gz("c.txt.gz", "plain text\n");
    assert.deepEqual(loadCorpus(parseCorpusSpec(t)), [{ id: "c.txt.gz", text: "plain text\n" }]);
    const tsv = path.join(dir, "d.tsv");
    fs.writeFileSync(tsv, "label\ttext\ttext_pair\nz\tfrom, tsv\t\"quoted\ttab\"\n");
    assert.deepEqual(parseCorpusSpec(tsv), { kind: "tsv", path: tsv });
    assert.deepEqual(loadCorpus(parseCorpusSpec(tsv)), [{ id: `${tsv}:2`, text: "from, tsv", label: "z", textPair: "quoted\ttab" }]);
    // A folder reads each file by its extension, .gz included.
    assert.deepEqual(loadCorpus(parseCorpusSpec(dir)).map((d) => d.text), ["from jsonl", "from, csv", "plain text\n", "from, tsv"]);
    fs.writeFileSync(path.join(dir, "e.jsonl.gz"), "not gzip");
    assert.throws(() => loadCorpus(parseCorpusSpec(path.join(dir, "e.jsonl.gz"))), /cannot read .*e\.jsonl\.gz: not valid gzip data/);
    fs.writeFileSync(path.join(dir, "f.txt.gz"), zlib.gzipSync(Buffer.concat([Buffer.from("ok\n"), Buffer.from([0xff])])));
    assert.throws(() => readTextDocuments(path.join(dir, "f.txt.gz")), /f\.txt\.gz:2: invalid UTF-8 \(byte offset 3 after decompression\)/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a text file longer than one JS string is reported as too large, not as invalid UTF-8", () => {
  // A sparse file of NUL bytes (valid UTF-8) one byte over V8's string limit: nothing is written to disk.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-big-"));
  try {
    const file = path.join(dir, "big.txt");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, constants.MAX_STRING_LENGTH + 1);
    assert.throws(() => readTextDocuments(file), /big\.txt: file too large to read at once \(536870889 bytes; limit ~512 MB\): split it/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
