/** Training step: AdamW, schedules, clipping, accumulation, reducer-sum semantics, overfitting, eval, state. */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { selectBackend } from "../shared/backend/select";
import { BertModel } from "../shared/model/bert";
import { getParamValues, parameterChecksum } from "../shared/model/hf";
import { AdamW } from "../shared/train/adamw";
import { clipByGlobalNorm, globalNorm } from "../shared/train/clip";
import { evaluateMlm, predictMasked } from "../shared/train/eval";
import { InProcessReducerGroup, IdentityReducer, type GradientReducer } from "../shared/train/reducer";
import { countTargets } from "../shared/data/batch";
import { lrAt, type LrSchedule } from "../shared/train/schedule";
import { Trainer, type TrainerOptions } from "../shared/train/trainer";
import { maxScaledDiff, randomBatch, sliceBatch, tinyConfig } from "./helpers/model-fixtures";

before(async () => {
  await selectBackend("wasm");
});

test("AdamW matches a hand-computed update (decay on weights only, bias correction)", () => {
  const opt = new AdamW({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  const w = Float32Array.of(1);
  const b = Float32Array.of(1);
  // Step 1, g = 0.5, lr = 0.1: w = 1 * (1 - 0.001) = 0.999; m = 0.05, v = 0.00025; m^ = 0.5, v^ = 0.25;
  // w -= 0.1 * 0.5 / (0.5 + 1e-8) -> 0.899000002.  The bias is not decayed: 0.900000002.
  opt.update("w", w, Float32Array.of(0.5), 0.1, true);
  opt.update("b", b, Float32Array.of(0.5), 0.1, false);
  assert.ok(Math.abs(w[0] - 0.899) < 1e-6, `${w[0]}`);
  assert.ok(Math.abs(b[0] - 0.9) < 1e-6, `${b[0]}`);
  // Step 2, g = -0.25, lr = 0.1: w = 0.899 * 0.999 = 0.898101; m = 0.045 - 0.025 = 0.02; v = 0.00024975 + 0.0000625
  // = 0.00031225; m^ = 0.02 / 0.19 = 0.105263; v^ = 0.00031225 / 0.001999 = 0.156203; sqrt = 0.395225;
  // w -= 0.1 * 0.105263 / 0.395225 = 0.026634 -> 0.871467.
  opt.update("w", w, Float32Array.of(-0.25), 0.1, true);
  assert.ok(Math.abs(w[0] - 0.871467) < 2e-6, `${w[0]}`);
  const state = opt.getState();
  assert.equal(state.step, 2);
  assert.ok(Math.abs(state.tensors.get("w.exp_avg")![0] - 0.02) < 1e-7);
  const copy = new AdamW({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  copy.setState(state);
  const w1 = Float32Array.from(w);
  const w2 = Float32Array.from(w);
  opt.update("w", w1, Float32Array.of(0.3), 0.05, true);
  copy.update("w", w2, Float32Array.of(0.3), 0.05, true);
  assert.equal(w1[0], w2[0]);
  assert.throws(() => copy.setState({ step: 1, tensors: new Map([["x.exp_avg", new Float32Array(1)]]) }), /lacks a matching/);
});

test("schedules: linear warmup, linear / cosine decay, floor", () => {
  const s: LrSchedule = { peakLr: 1e-3, warmupSteps: 10, totalSteps: 110, decay: "linear" };
  assert.equal(lrAt(s, 0), 0);
  assert.ok(Math.abs(lrAt(s, 5) - 5e-4) < 1e-15);
  assert.equal(lrAt(s, 10), 1e-3);
  assert.ok(Math.abs(lrAt(s, 60) - 5e-4) < 1e-15);
  assert.equal(lrAt(s, 110), 0);
  assert.equal(lrAt(s, 500), 0);
  const c: LrSchedule = { ...s, decay: "cosine", minLrRatio: 0.1 };
  assert.ok(Math.abs(lrAt(c, 60) - 1e-3 * (0.1 + 0.9 * 0.5)) < 1e-15);
  assert.ok(Math.abs(lrAt(c, 35) - 1e-3 * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)))) < 1e-15);
  assert.ok(Math.abs(lrAt(c, 110) - 1e-4) < 1e-15);
  assert.equal(lrAt({ ...s, decay: "constant" }, 80), 1e-3);
  // a warmup longer than the run (HF allows it): the rate is still rising at the end
  assert.ok(Math.abs(lrAt({ ...s, totalSteps: 5 }, 4) - 4e-4) < 1e-15);
  assert.throws(() => lrAt({ ...s, warmupSteps: -1 }, 1), /warmupSteps/);
});

test("global-norm clipping scales only above the threshold", () => {
  const g = [
    { name: "a", data: Float32Array.of(3, 0) },
    { name: "b", data: Float32Array.of(4) },
  ];
  assert.equal(globalNorm(g), 5);
  assert.equal(clipByGlobalNorm(g, 10), 5);
  assert.deepEqual(Array.from(g[1].data), [4]);
  assert.equal(clipByGlobalNorm(g, 1), 5);
  assert.ok(Math.abs(globalNorm(g) - 1) < 1e-6);
  assert.ok(Math.abs(g[0].data[0] - 0.6) < 1e-6);
});

const options = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  schedule: { peakLr: 1e-3, warmupSteps: 0, totalSteps: 100, decay: "linear" },
  adamw: { weightDecay: 0.01 },
  maxGradNorm: 1,
  dropoutSeed: 17,
  ...extra,
});

/** Parameters of a model as one flat array (registration order). */
function flat(m: BertModel): Float32Array {
  const parts = [...getParamValues(m).values()];
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

test("accumulating 2 micro-batches of B/2 equals one batch of B (dropout on, global row offsets)", async () => {
  const cfg = tinyConfig();
  const batch = randomBatch(cfg, 4, 10, 21, 0.2, 3);
  const one = new Trainer(BertModel.create(cfg, 5), options());
  const two = new Trainer(BertModel.create(cfg, 5), options());
  for (let s = 0; s < 2; s++) {
    const r1 = await one.trainStep([batch]);
    const r2 = await two.trainStep([sliceBatch(batch, 0, 2), sliceBatch(batch, 2, 2)]);
    assert.equal(r1.mlmTargets, r2.mlmTargets);
    assert.ok(Math.abs(r1.mlmLoss - r2.mlmLoss) < 1e-5 * r1.mlmLoss);
    assert.ok(Math.abs(r1.gradNorm - r2.gradNorm) < 1e-4 * r1.gradNorm);
  }
  const d = maxScaledDiff(flat(two.model), flat(one.model));
  assert.ok(d < 1e-6, `parameters differ by ${d}`);
  // Dropout really was on: a different seed gives another update.
  const other = new Trainer(BertModel.create(cfg, 5), options({ dropoutSeed: 18 }));
  await other.trainStep([batch]);
  const fresh = new Trainer(BertModel.create(cfg, 5), options());
  await fresh.trainStep([batch]);
  assert.notEqual(parameterChecksum(other.model), parameterChecksum(fresh.model));
  for (const t of [one, two, other, fresh]) t.model.dispose();
});

test("two ranks with B/2 each and a summing reducer equal one rank with B; ranks end bit-identical", async () => {
  const cfg = tinyConfig({ vocabSize: 30 });
  const batch = randomBatch(cfg, 4, 12, 8, 0.25, 2);
  const single = new Trainer(BertModel.create(cfg, 2), options(), new IdentityReducer());
  const group = new InProcessReducerGroup(2);
  const ranks = [0, 1].map((r) => new Trainer(BertModel.create(cfg, 2), options(), group.member(r)));
  for (let s = 0; s < 2; s++) {
    const ref = await single.trainStep([batch]);
    const res = await Promise.all(ranks.map((t, r) => t.trainStep([sliceBatch(batch, 2 * r, 2)], [2 * r])));
    assert.equal(res[0].mlmTargets, ref.mlmTargets);
    assert.equal(res[0].mlmLoss, res[1].mlmLoss);
    assert.ok(Math.abs(res[0].mlmLoss - ref.mlmLoss) < 1e-5 * ref.mlmLoss);
  }
  assert.equal(parameterChecksum(ranks[0].model), parameterChecksum(ranks[1].model));
  const d = maxScaledDiff(flat(ranks[0].model), flat(single.model));
  assert.ok(d < 1e-6, `parameters differ by ${d}`);
  for (const t of [single, ...ranks]) t.model.dispose();
});

test("MLM + NSP: 2 ranks x 2 micro-batches equal 1 rank with the batch; only the NSP model sums counts first", async () => {
  const cfg = tinyConfig({ vocabSize: 30 });
  // 8 sequences whose masked-token counts differ between the ranks' halves, so local counts would weigh NSP otherwise
  const batch = { ...randomBatch(cfg, 8, 12, 31, 0.3, 2), nspLabels: Int32Array.of(0, 1, 1, 0, 1, 1, 1, 0) };
  assert.notEqual(countTargets(sliceBatch(batch, 0, 4)), countTargets(sliceBatch(batch, 4, 4)));
  let countCalls = 0;
  const counting = (r: GradientReducer): GradientReducer => ({
    reduce: (g, c, s) => r.reduce(g, c, s),
    sumCounts: (v, s) => {
      countCalls++;
      return r.sumCounts!(v, s);
    },
  });
  const single = new Trainer(BertModel.create(cfg, 4, { nsp: true }), options(), counting(new IdentityReducer()));
  const group = new InProcessReducerGroup(2);
  const ranks = [0, 1].map((r) => new Trainer(BertModel.create(cfg, 4, { nsp: true }), options(), counting(group.member(r))));
  for (let s = 0; s < 2; s++) {
    const ref = await single.trainStep([batch]);
    const res = await Promise.all(ranks.map((t, r) => t.trainStep([sliceBatch(batch, 4 * r, 2), sliceBatch(batch, 4 * r + 2, 2)], [4 * r, 4 * r + 2])));
    assert.equal(res[0].nspLoss, res[1].nspLoss);
    assert.ok(Math.abs(res[0].nspLoss - ref.nspLoss) < 1e-5 * ref.nspLoss, `NSP loss ${res[0].nspLoss} vs ${ref.nspLoss}`);
    assert.ok(Math.abs(res[0].gradNorm - ref.gradNorm) < 1e-4 * ref.gradNorm, `grad norm ${res[0].gradNorm} vs ${ref.gradNorm}`);
  }
  assert.equal(countCalls, 3 * 2, "one counts collective per rank and step");
  assert.equal(parameterChecksum(ranks[0].model), parameterChecksum(ranks[1].model));
  const d = maxScaledDiff(flat(ranks[0].model), flat(single.model));
  assert.ok(d < 1e-6, `parameters differ by ${d}`);
  // accumulate() alone cannot know the NSP weight of the step
  assert.throws(() => single.accumulate(batch), /beginStep\(\) must see/);
  // plain MLM never pays for the counts' collective
  const mlm = new Trainer(BertModel.create(cfg, 4), options(), counting(new IdentityReducer()));
  await mlm.trainStep([sliceBatch({ ...batch, nspLabels: undefined }, 0, 4)]);
  assert.equal(countCalls, 6, "no counts collective without the NSP head");
  for (const t of [single, ...ranks, mlm]) t.model.dispose();
});

test("a tiny model overfits one batch; eval and fill-mask then recover the labels", async () => {
  const cfg = tinyConfig({ vocabSize: 24, hiddenSize: 32, intermediateSize: 64 });
  const batch = randomBatch(cfg, 4, 8, 3, 0.3);
  const t = new Trainer(BertModel.create(cfg, 1), {
    schedule: { peakLr: 1e-2, warmupSteps: 5, totalSteps: 120, decay: "linear" },
    adamw: { weightDecay: 0 },
    dropoutRate: 0,
  });
  const first = await t.trainStep([batch]);
  let last = first;
  for (let s = 1; s < 120; s++) last = await t.trainStep([batch]);
  assert.ok(first.mlmLoss > 2, `initial loss ${first.mlmLoss}`);
  assert.ok(last.mlmLoss < 0.05, `final loss ${last.mlmLoss}`);
  const ev = evaluateMlm(t.model, batch);
  assert.equal(ev.accuracy, 1);
  assert.ok(ev.perplexity < 1.1 && Math.abs(Math.log(ev.perplexity) - ev.loss) < 1e-9);
  const preds = predictMasked(t.model, batch, 3, 1);
  assert.equal(preds.length, ev.numTargets);
  for (const p of preds) {
    assert.equal(p.candidates[0].tokenId, batch.mlmLabels[p.sequence * batch.seqLen + p.position]);
    assert.ok(p.candidates[0].prob > p.candidates[1].prob);
  }
  t.model.dispose();
});

test("optimizer state round-trips: a restored trainer continues exactly", async () => {
  const cfg = tinyConfig();
  const batches = [randomBatch(cfg, 2, 8, 1), randomBatch(cfg, 2, 8, 2)];
  const a = new Trainer(BertModel.create(cfg, 4), options());
  await a.trainStep([batches[0]]);
  const b = new Trainer(BertModel.create(cfg, 99), options());
  b.model.specs.forEach((s) => b.model.param(s.name).assign(a.model.param(s.name)));
  b.setOptimizerState(a.getOptimizerState());
  assert.equal(b.step, 1);
  await a.trainStep([batches[1]]);
  await b.trainStep([batches[1]]);
  assert.equal(parameterChecksum(a.model), parameterChecksum(b.model));
  assert.throws(() => b.setOptimizerState({ step: 1, tensors: new Map([["nope.exp_avg", new Float32Array(1)]]) }), /names no parameter/);
  a.model.dispose();
  b.model.dispose();
});

test("a global batch without MLM targets is refused with a clear error", async () => {
  const cfg = tinyConfig();
  const batch = randomBatch(cfg, 2, 8, 1);
  batch.mlmLabels.fill(-100);
  const t = new Trainer(BertModel.create(cfg, 1), options());
  await assert.rejects(t.trainStep([batch]), /no MLM targets/);
  t.model.dispose();
});
