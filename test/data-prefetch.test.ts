import { before, test } from "node:test";
import assert from "node:assert/strict";
import { loadBrown } from "../shared/data/brown";
import { makeMlmBatch } from "../shared/data/masking";
import { buildNspCorpus, makeNspBatch, type NspCorpus } from "../shared/data/nsp";
import { maskSettingsFor, type MaskSettings, type StepPlan } from "../shared/data/objective";
import { packDocuments } from "../shared/data/pack";
import type { PackedSequences } from "../shared/data/packed";
import { Prefetcher } from "../shared/data/prefetcher";
import { permutation } from "../shared/rng";
import { trainTokenizer } from "../shared/tokenizer/train";

let packed: PackedSequences;
let nsp: NspCorpus;
let mask: MaskSettings;

before(async () => {
  const docs = loadBrown().slice(0, 20);
  const { tokenizer } = await trainTokenizer(docs.map((d) => d.text), { vocabSize: 2000 });
  packed = packDocuments(docs, tokenizer, 64);
  nsp = buildNspCorpus(docs, tokenizer, 64);
  mask = maskSettingsFor(tokenizer, 9);
  const sp = tokenizer.specialIds;
  assert.deepEqual(mask, { seed: 9, vocabSize: tokenizer.vocabSize, specialIds: [sp.pad, sp.unk, sp.cls, sp.sep, sp.mask], maskId: sp.mask, padId: sp.pad });
});

/** Two epochs of 8-sequence steps over a shuffled order, as a coordinator would plan them. */
function plan(count: number): StepPlan[] {
  const steps: StepPlan[] = [];
  for (let epoch = 0; epoch < 2; epoch++) {
    const order = permutation(count, 1, epoch);
    for (let s = 0; s + 8 <= Math.min(count, 48); s += 8) steps.push({ epoch, indices: order.subarray(s, s + 8) });
  }
  return steps;
}

test("prefetcher: worker-built MLM batches equal the ones built in-thread, in plan order", async () => {
  const steps = plan(packed.count);
  const loader = new Prefetcher({ kind: "mlm", data: packed, mask }, steps, { depth: 3, threads: 1 });
  try {
    let i = 0;
    for await (const batch of loader) {
      const want = makeMlmBatch(packed, steps[i].indices, { ...mask, epoch: steps[i].epoch });
      assert.deepEqual(batch.inputIds, want.inputIds, `step ${i}`);
      assert.deepEqual(batch.mlmLabels, want.mlmLabels);
      assert.deepEqual(batch.attentionMask, want.attentionMask);
      assert.equal(batch.batchSize, 8);
      assert.equal(batch.seqLen, 64);
      i++;
    }
    assert.equal(i, steps.length);
    assert.equal(await loader.next(), undefined);
  } finally {
    await loader.close();
  }
});

test("prefetcher: N ranks with B/N sequences see the masks of 1 rank with B", async () => {
  const steps = plan(packed.count);
  const single = new Prefetcher({ kind: "mlm", data: packed, mask }, steps, { threads: 0 });
  // Rank r of 2 takes every other sequence of each global step.
  const ranks = [0, 1].map(
    (r) =>
      new Prefetcher(
        { kind: "mlm", data: packed, mask },
        steps.map((s) => ({ epoch: s.epoch, indices: Array.from(s.indices).filter((_, k) => k % 2 === r) })),
        { threads: 1, depth: 2 },
      ),
  );
  try {
    for (let s = 0; s < steps.length; s++) {
      const whole = (await single.next())!;
      const parts = [(await ranks[0].next())!, (await ranks[1].next())!];
      for (let k = 0; k < 8; k++) {
        const part = parts[k % 2];
        const row = Math.floor(k / 2);
        assert.deepEqual(part.inputIds.subarray(row * 64, row * 64 + 64), whole.inputIds.subarray(k * 64, k * 64 + 64));
        assert.deepEqual(part.mlmLabels.subarray(row * 64, row * 64 + 64), whole.mlmLabels.subarray(k * 64, k * 64 + 64));
      }
    }
  } finally {
    await Promise.all([single.close(), ...ranks.map((r) => r.close())]);
  }
});

test("prefetcher: NSP batches come back with their labels; worker errors reach the caller", async () => {
  const steps = [{ epoch: 0, indices: [0, 1, 2, 3] }];
  const loader = new Prefetcher({ kind: "nsp", data: nsp, mask }, steps, { threads: 1 });
  try {
    const batch = (await loader.next())!;
    const want = makeNspBatch(nsp, [0, 1, 2, 3], { ...mask, epoch: 0 });
    assert.deepEqual(batch.nspLabels, want.nspLabels);
    assert.deepEqual(batch.inputIds, want.inputIds);
    assert.deepEqual(batch.tokenTypeIds, want.tokenTypeIds);
  } finally {
    await loader.close();
  }
  const bad = new Prefetcher({ kind: "mlm", data: packed, mask }, [{ epoch: 0, indices: [packed.count + 5] }], { threads: 1 });
  try {
    await assert.rejects(bad.next(), /sequence index \d+ is outside the packed data/);
  } finally {
    await bad.close();
  }
});
