import { before, test } from "node:test";
import assert from "node:assert/strict";
import { loadBrown } from "../shared/data/brown";
import { makeCausalBatch } from "../shared/data/causal";
import { IGNORE_INDEX, countTargets } from "../shared/data/batch";
import { makeMlmBatch, type MlmOptions } from "../shared/data/masking";
import { buildNspCorpus, makeNspBatch, type NspCorpus } from "../shared/data/nsp";
import { packDocuments } from "../shared/data/pack";
import type { PackedSequences } from "../shared/data/packed";
import type { BertTokenizer } from "../shared/tokenizer/bert-tokenizer";
import { trainTokenizer } from "../shared/tokenizer/train";

let tokenizer: BertTokenizer;
let packed: PackedSequences;
let nsp: NspCorpus;
let mlm: Omit<MlmOptions, "epoch">;

before(async () => {
  const docs = loadBrown().slice(0, 60);
  tokenizer = (await trainTokenizer(docs.map((d) => d.text), { vocabSize: 3000 })).tokenizer;
  packed = packDocuments(docs, tokenizer, 128);
  nsp = buildNspCorpus(docs, tokenizer, 128);
  const sp = tokenizer.specialIds;
  mlm = { seed: 42, vocabSize: tokenizer.vocabSize, specialIds: [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask], maskId: sp.mask, padId: sp.pad };
});

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

test("MLM masking: 15% of tokens, 80% [MASK] / 10% random / 10% kept, specials and padding untouched", () => {
  const sp = tokenizer.specialIds;
  const special = new Set(mlm.specialIds);
  const n = Math.min(packed.count, 400);
  const batch = makeMlmBatch(packed, range(0, n), { ...mlm, epoch: 0 });
  let eligible = 0;
  let selected = 0;
  let masked = 0;
  let random = 0;
  let kept = 0;
  for (let b = 0; b < n; b++) {
    const len = packed.lengths[b];
    for (let i = 0; i < 128; i++) {
      const orig = packed.tokens[b * 128 + i];
      const k = b * 128 + i;
      assert.equal(batch.attentionMask[k], i < len ? 1 : 0);
      assert.equal(batch.tokenTypeIds[k], 0);
      if (i >= len || special.has(orig)) {
        assert.equal(batch.mlmLabels[k], IGNORE_INDEX, "specials and padding are never targets");
        assert.equal(batch.inputIds[k], orig);
        continue;
      }
      eligible++;
      if (batch.mlmLabels[k] === IGNORE_INDEX) {
        assert.equal(batch.inputIds[k], orig);
        continue;
      }
      selected++;
      assert.equal(batch.mlmLabels[k], orig);
      if (batch.inputIds[k] === sp.mask) masked++;
      else if (batch.inputIds[k] === orig) kept++;
      else {
        random++;
        assert.ok(!special.has(batch.inputIds[k]), "random replacements are never special tokens");
      }
    }
  }
  assert.ok(eligible > 30000, `enough tokens for the statistics (${eligible})`);
  assert.ok(Math.abs(selected / eligible - 0.15) < 0.01, `selected ${selected / eligible}`);
  assert.ok(Math.abs(masked / selected - 0.8) < 0.025, `[MASK] ${masked / selected}`);
  assert.ok(Math.abs(random / selected - 0.1) < 0.02, `random ${random / selected}`);
  assert.ok(Math.abs(kept / selected - 0.1) < 0.02, `kept ${kept / selected}`);
  assert.equal(countTargets(batch), selected);
});

test("masks depend on (seed, epoch, index) only, not on batch grouping or order", () => {
  const idx = range(0, 16);
  const whole = makeMlmBatch(packed, idx, { ...mlm, epoch: 3 });
  const halves = [makeMlmBatch(packed, idx.slice(0, 8), { ...mlm, epoch: 3 }), makeMlmBatch(packed, idx.slice(8), { ...mlm, epoch: 3 })];
  const reversed = makeMlmBatch(packed, [...idx].reverse(), { ...mlm, epoch: 3 });
  const row = (a: Int32Array, r: number): number[] => Array.from(a.subarray(r * 128, (r + 1) * 128));
  for (const r of idx) {
    const h = halves[r < 8 ? 0 : 1];
    assert.deepEqual(row(h.inputIds, r % 8), row(whole.inputIds, r));
    assert.deepEqual(row(h.mlmLabels, r % 8), row(whole.mlmLabels, r));
    assert.deepEqual(row(reversed.mlmLabels, 15 - r), row(whole.mlmLabels, r));
  }
  const otherEpoch = makeMlmBatch(packed, idx, { ...mlm, epoch: 4 });
  const otherSeed = makeMlmBatch(packed, idx, { ...mlm, seed: 43, epoch: 3 });
  assert.notDeepEqual(Array.from(otherEpoch.mlmLabels), Array.from(whole.mlmLabels), "a new epoch draws new masks");
  assert.notDeepEqual(Array.from(otherSeed.mlmLabels), Array.from(whole.mlmLabels));
  assert.throws(() => makeMlmBatch(packed, [packed.count], { ...mlm, epoch: 0 }), /sequence index \d+ is outside/);
});

test("whole-word masking selects all pieces of a word or none", () => {
  const n = Math.min(packed.count, 200);
  const batch = makeMlmBatch(packed, range(0, n), { ...mlm, epoch: 1, wholeWordMask: true });
  const ws = packed.wordStarts as Uint8Array;
  let words = 0;
  let chosenWords = 0;
  let multiPieceChosen = 0;
  for (let b = 0; b < n; b++) {
    const len = packed.lengths[b];
    let i = 1;
    while (i < len - 1) {
      let j = i + 1;
      while (j < len && ws[b * 128 + j] === 0) j++;
      const labelled = range(i, j).map((k) => batch.mlmLabels[b * 128 + k] !== IGNORE_INDEX);
      if (!mlm.specialIds.includes(packed.tokens[b * 128 + i])) {
        words++;
        assert.ok(labelled.every((x) => x === labelled[0]), `row ${b} word at ${i}: ${labelled.join(",")}`);
        if (labelled[0]) {
          chosenWords++;
          if (j - i > 1) multiPieceChosen++;
        }
      }
      i = j;
    }
  }
  assert.ok(multiPieceChosen > 20, `some multi-piece words were masked (${multiPieceChosen})`);
  assert.ok(Math.abs(chosenWords / words - 0.15) < 0.015, `word rate ${chosenWords / words}`);
});

test("causal batches: labels are the next token, -100 at the end and on padding", () => {
  const last = packed.count - 1;
  const batch = makeCausalBatch(packed, [0, last]);
  for (const [b, idx] of [[0, 0], [1, last]]) {
    const len = packed.lengths[idx];
    for (let i = 0; i < 128; i++) {
      const want = i + 1 < len ? packed.tokens[idx * 128 + i + 1] : IGNORE_INDEX;
      assert.equal(batch.mlmLabels[b * 128 + i], want);
      assert.equal(batch.inputIds[b * 128 + i], packed.tokens[idx * 128 + i]);
    }
  }
});

test("NSP batches: [CLS] A [SEP] B [SEP], segment ids, half IsNext, real successors", () => {
  const sp = tokenizer.specialIds;
  const n = Math.min(nsp.count, 400);
  const batch = makeNspBatch(nsp, range(0, n), { ...mlm, epoch: 2 });
  const labels = batch.nspLabels as Int32Array;
  const notNext = labels.reduce((a, v) => a + v, 0);
  assert.ok(Math.abs(notNext / n - 0.5) < 0.08, `NotNext share ${notNext / n}`);
  const segment = (s: number): number[] => Array.from(nsp.tokens.subarray(nsp.segStart[s], nsp.segStart[s + 1]));
  for (let b = 0; b < n; b++) {
    const o = b * 128;
    const len = batch.attentionMask.subarray(o, o + 128).reduce((x, v) => x + v, 0);
    // Undo the masking to see the original tokens.
    const orig = range(0, len).map((i) => (batch.mlmLabels[o + i] !== IGNORE_INDEX ? batch.mlmLabels[o + i] : batch.inputIds[o + i]));
    assert.equal(orig[0], sp.cls);
    const seps = range(0, len).filter((i) => orig[i] === sp.sep);
    assert.equal(seps.length, 2);
    assert.equal(seps[1], len - 1);
    for (let i = 0; i < len; i++) assert.equal(batch.tokenTypeIds[o + i], i <= seps[0] ? 0 : 1);
    const a = orig.slice(1, seps[0]);
    const bTokens = orig.slice(seps[0] + 1, len - 1);
    const anchor = nsp.anchors[b];
    assert.deepEqual(a, segment(anchor).slice(0, a.length));
    if (labels[b] === 0) assert.deepEqual(bTokens, segment(anchor + 1).slice(0, bTokens.length));
    else assert.notDeepEqual(bTokens, segment(anchor + 1).slice(0, bTokens.length));
    assert.ok(countTargets({ ...batch, mlmLabels: batch.mlmLabels.subarray(o, o + 128) }) > 0);
  }
  const again = makeNspBatch(nsp, range(0, n), { ...mlm, epoch: 2 });
  assert.deepEqual(again, batch, "NSP batches are a pure function of (seed, epoch, index)");
});
