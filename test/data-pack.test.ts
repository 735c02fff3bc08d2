import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadBrown } from "../shared/data/brown";
import { preparePackedData, readPackedFile } from "../shared/data/cache";
import { packDocuments, packTokenStreams } from "../shared/data/pack";
import { basicTokenize } from "../shared/tokenizer/basic";
import { trainTokenizer } from "../shared/tokenizer/train";

const IDS = { clsId: 1, sepId: 2, padId: 0, isContinuation: (id: number) => id >= 100 };

function rows(p: { seqLen: number; count: number; tokens: Int32Array }): number[][] {
  return Array.from({ length: p.count }, (_, r) => Array.from(p.tokens.subarray(r * p.seqLen, (r + 1) * p.seqLen)));
}

test("packing: [CLS] ... [SEP] rows, [SEP] between documents, padding only at the end", () => {
  const a = packTokenStreams([[10, 11, 12], [13, 14], [15]], 6, IDS);
  // The second document's separator lands in the last content slot, so row 0 ends "[SEP] [SEP]".
  assert.deepEqual(rows(a), [[1, 10, 11, 12, 2, 2], [1, 13, 14, 2, 15, 2]]);
  assert.deepEqual(Array.from(a.lengths), [6, 6]);
  const b = packTokenStreams([[10, 11, 12, 13], [14]], 6, IDS);
  // A document ending right before a row's closing [SEP] needs no extra separator in the next row.
  assert.deepEqual(rows(b), [[1, 10, 11, 12, 13, 2], [1, 14, 2, 0, 0, 0]]);
  assert.deepEqual(Array.from(b.lengths), [6, 3]);
  const c = packTokenStreams([[], [10], [], [11, 101]], 8, IDS);
  assert.deepEqual(rows(c), [[1, 10, 2, 11, 101, 2, 0, 0]]);
  assert.deepEqual(Array.from(c.wordStarts as Uint8Array), [1, 1, 1, 1, 0, 1, 0, 0]);
  const d = packTokenStreams([[10, 11, 12, 13]], 6, IDS);
  assert.equal(d.count, 1, "no empty trailing row");
  assert.equal(packTokenStreams([], 6, IDS).count, 0);
  assert.throws(() => packTokenStreams([[1]], 2, IDS), /maxSeqLen must be an integer >= 3/);
});

test("packing Brown: round trip of the documents' tokens, row invariants, word starts", async () => {
  const docs = loadBrown().slice(0, 30);
  const { tokenizer } = await trainTokenizer(docs.map((d) => d.text), { vocabSize: 3000 });
  const sp = tokenizer.specialIds;
  const packed = packDocuments(docs, tokenizer, 128);
  const expected = docs.flatMap((d) => tokenizer.tokenizeToIds(d.text));
  const content: number[] = [];
  for (let r = 0; r < packed.count; r++) {
    const row = packed.tokens.subarray(r * 128, (r + 1) * 128);
    const len = packed.lengths[r];
    assert.equal(row[0], sp.cls);
    assert.equal(row[len - 1], sp.sep);
    assert.notEqual(row[1], sp.sep, "no row starts [CLS] [SEP]");
    if (r < packed.count - 1) assert.equal(len, 128, "only the last row is padded");
    for (let i = len; i < 128; i++) assert.equal(row[i], sp.pad);
    for (let i = 1; i < len; i++) if (row[i] !== sp.sep) content.push(row[i]);
  }
  assert.deepEqual(content, expected);
  // Decoding the packed content gives the documents' normalised words in order.
  assert.equal(tokenizer.decode(content, { cleanUpTokenizationSpaces: false }), docs.flatMap((d) => basicTokenize(d.text)).join(" "));
  const ws = packed.wordStarts as Uint8Array;
  for (let i = 0; i < packed.tokens.length; i += 7) {
    if (packed.tokens[i] !== sp.pad) assert.equal(ws[i], tokenizer.vocab.token(packed.tokens[i]).startsWith("##") ? 0 : 1);
  }
});

test("packed-data cache: written once, hit on the second load, keyed on every input", async () => {
  const docs = loadBrown().slice(0, 40);
  const { tokenizer } = await trainTokenizer(docs.map((d) => d.text), { vocabSize: 2000 });
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-cache-"));
  try {
    const opts = { tokenizer, maxSeqLen: 64, validationFraction: 0.1, seed: 5, cacheDir };
    const first = preparePackedData(docs, opts);
    assert.equal(first.fromCache, false);
    assert.ok(first.file !== undefined && fs.existsSync(first.file));
    const mtime = fs.statSync(first.file).mtimeMs;
    const second = preparePackedData(docs, opts);
    assert.equal(second.fromCache, true);
    assert.equal(second.key, first.key);
    assert.equal(fs.statSync(first.file).mtimeMs, mtime, "the cache file is not rewritten");
    assert.deepEqual(second.train, first.train);
    assert.deepEqual(second.validation, first.validation);
    assert.ok(first.validation.count > 0 && first.train.count > 5 * first.validation.count);
    // Any change of input is a different key, so a miss.
    for (const changed of [
      { ...opts, seed: 6 },
      { ...opts, validationFraction: 0.2 },
      { ...opts, maxSeqLen: 65 },
      { ...opts, tokenizer: (await trainTokenizer(docs.map((d) => d.text), { vocabSize: 1999 })).tokenizer },
    ]) {
      const other = preparePackedData(docs, changed);
      assert.equal(other.fromCache, false);
      assert.notEqual(other.key, first.key);
    }
    assert.equal(preparePackedData(docs.slice(1), opts).fromCache, false, "corpus contents are part of the key");
    assert.equal(fs.readdirSync(cacheDir).filter((f) => f.endsWith(".tmp")).length, 0);
    // A damaged file is reported by name instead of being used.
    fs.truncateSync(first.file, fs.statSync(first.file).size - 3);
    assert.throws(() => preparePackedData(docs, opts), new RegExp(`cache file .*${first.key}.*truncated`));
    assert.throws(() => readPackedFile(path.join(cacheDir, "missing.bin")), /ENOENT/);
  } finally {
    fs.rmSync(cacheDir, { recursive: true, force: true });
  }
});
