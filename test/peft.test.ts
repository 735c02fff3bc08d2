/**
 * Parameter-efficient fine-tuning, in process: identity at init (LoRA B = 0, adapters), LoRA merge/unmerge, frozen
 * parameters untouched by training, only trainable tensors reduced, save -> load -> same logits for every method,
 * adapters refused on the wrong base, bad finetune fields named.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../shared/backend/select";
import { BertModel, encode, meanPooledOutput } from "../shared/model/bert";
import { exportHfTensors, getParamValues } from "../shared/model/hf";
import { saveCheckpoint } from "../shared/checkpoint/checkpoint";
import { PeftClassifier } from "../shared/peft/classifier";
import { peftSettingsOf, type PeftSettings } from "../shared/peft/settings";
import { countClassifierParams } from "../shared/peft/specs";
import { finetuneSchema } from "../shared/config/schema";
import { validateRunConfig, ConfigError } from "../shared/config/load";
import { Trainer } from "../shared/train/trainer";
import { IdentityReducer, type GradientReducer, type NamedGradient } from "../shared/train/reducer";
import { classificationObjective } from "../shared/train/classification-objective";
import type { ClassificationBatch } from "../shared/data/labelled";
import { modelChecksum } from "../shared/finetune/base-model";
import { buildClassifier, loadClassifier } from "../shared/finetune/load";
import { saveClassifier } from "../shared/finetune/save";
import { adapterConfigSchema } from "../shared/finetune/adapter-config";
import { loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { classifierLogits, maxAbsDiffOf, randomBatch, tinyConfig } from "./helpers/model-fixtures";

before(async () => {
  await selectBackend("wasm");
});

const cfg = tinyConfig();
const VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...Array.from({ length: cfg.vocabSize - 5 }, (_, i) => `w${i}`)];

function settings(method: string, extra: Record<string, unknown> = {}): PeftSettings {
  return peftSettingsOf(finetuneSchema.parse({ base_model: "unused", method, ...extra }), 3);
}

function batch(seed: number, size = 4, seqLen = 8): ClassificationBatch {
  const b = randomBatch(cfg, size, seqLen, seed, 0, 2);
  return { batchSize: size, seqLen, inputIds: b.inputIds, tokenTypeIds: b.tokenTypeIds, attentionMask: b.attentionMask, labels: Int32Array.from({ length: size }, (_, i) => (i + seed) % 3) };
}



/** Sets every LoRA B (or adapter up-projection) to random values, so the method changes the output. */
function perturb(m: PeftClassifier, pattern: RegExp, scale = 0.05): void {
  for (const s of m.extraSpecs) {
    if (!pattern.test(s.name)) continue;
    const v = m.param(s.name);
    const t = tf.randomNormal(s.shape, 0, scale, "float32", 11);
    v.assign(t);
    t.dispose();
  }
}

test("LoRA with B = 0 and adapters at init leave the outputs unchanged (and change them once trained)", () => {
  const b = batch(1);
  const plain = PeftClassifier.create(BertModel.create(cfg, 3), settings("full"), 5);
  perturb(plain, /^classifier\.weight$/, 1); // a larger head makes small changes of the encoder visible in the logits
  const ref = classifierLogits(plain, b);
  const cases: [string, RegExp, Record<string, unknown>][] = [
    ["lora", /lora_B/, { lora: { target_modules: ["query", "key", "value", "dense"] } }],
    ["adapter", /\.up\.weight/, {}],
    // The embedding adapter alone (the sublayer adapters stay at zero) must reach the output too.
    ["adapter", /^bert\.embeddings\.adapter\.up\.weight$/, { adapter: { embedding_size: 4 } }],
  ];
  for (const [method, pattern, extra] of cases) {
    const m = PeftClassifier.create(BertModel.create(cfg, 3), settings(method, extra), 5);
    perturb(m, /^classifier\.weight$/, 1);
    assert.equal(maxAbsDiffOf(classifierLogits(m, b), ref), 0, `${method} at init must be the identity`);
    perturb(m, pattern, 1);
    assert.ok(maxAbsDiffOf(classifierLogits(m, b), ref) > 1e-4, `${method} with non-zero weights must change the output`);
    m.dispose();
  }
  plain.dispose();
});

test("LoRA merge / unmerge: merged outputs equal the unmerged ones, and unmerge restores the weights", () => {
  const m = PeftClassifier.create(BertModel.create(cfg, 3), settings("lora", { lora: { r: 4, alpha: 8, target_modules: ["query", "value", "output.dense"] } }), 5);
  perturb(m, /lora_B/, 0.2);
  const b = batch(2);
  const before = classifierLogits(m, b);
  const weights = getParamValues(m.base);
  m.merge();
  const merged = classifierLogits(m, b);
  assert.ok(maxAbsDiffOf(merged, before) < 1e-5, `merged logits differ by ${maxAbsDiffOf(merged, before)}`);
  const folded = getParamValues(m.base).get("bert.encoder.layer.0.attention.self.query.weight")!;
  assert.ok(maxAbsDiffOf(folded, weights.get("bert.encoder.layer.0.attention.self.query.weight")!) > 1e-4, "merge changed the weight");
  assert.throws(() => m.merge(), /already merged/);
  m.unmerge();
  let worst = 0;
  for (const [name, w] of getParamValues(m.base)) worst = Math.max(worst, maxAbsDiffOf(w, weights.get(name)!));
  assert.ok(worst < 1e-6, `unmerge should restore the weights, max diff ${worst}`);
  assert.ok(maxAbsDiffOf(classifierLogits(m, b), before) < 1e-5);
  m.dispose();
});

/** A reducer for one rank that records which tensors it was given (the sums of one rank are the local values). */
class RecordingReducer implements GradientReducer {
  readonly seen: string[][] = [];
  private readonly inner = new IdentityReducer();
  async reduce(grads: NamedGradient[], counters: Float32Array, step: number): Promise<void> {
    this.seen.push(grads.map((g) => g.name));
    await this.inner.reduce();
    void counters;
    void step;
  }
}

for (const method of ["lora", "adapter", "prefix", "prompt", "bitfit", "freeze"] as const) {
  test(`${method}: frozen parameters stay bit-identical, only trainable tensors are reduced`, async () => {
    const extra: Record<string, unknown> = { freeze: { trainable_layers: 1 }, adapter: { embedding_size: 4 }, prefix: { num_virtual_tokens: 2, hidden_size: 4 }, prompt: { num_virtual_tokens: 3 } };
    const s = settings(method, method in extra ? { [method]: extra[method] } : {});
    const m = PeftClassifier.create(BertModel.create(cfg, 3), s, 5);
    const reducer = new RecordingReducer();
    const trainer = new Trainer<ClassificationBatch>(m.base, {
      schedule: { peakLr: 1e-2, warmupSteps: 0, totalSteps: 10, decay: "constant" }, dropoutSeed: 1, params: m.trainable, objective: classificationObjective(m),
    }, reducer);
    const trainableNames = new Set(m.trainable.map((p) => p.name));
    const before = getParamValues(m.base);
    const extrasBefore = new Map([...m.extras].map(([k, v]) => [k, Float32Array.from(v.dataSync() as Float32Array)]));
    for (let step = 0; step < 3; step++) await trainer.trainStep([batch(10 + step)]);
    // Reduced: exactly the trainable tensors, in their fixed order, every step.
    assert.equal(reducer.seen.length, 3);
    for (const names of reducer.seen) assert.deepEqual(names, m.trainable.map((p) => p.name));
    const counts = countClassifierParams(cfg, s);
    assert.equal(trainer.grads.reduce((a, g) => a + g.data.length, 0), counts.trainable);
    let changed = 0;
    for (const [name, w] of getParamValues(m.base)) {
      const same = Buffer.from(w.buffer).equals(Buffer.from(before.get(name)!.buffer));
      if (!trainableNames.has(name)) assert.ok(same, `frozen ${name} changed`);
      else if (!same) changed++;
    }
    for (const [name, v] of m.extras) if (maxAbsDiffOf(v.dataSync() as Float32Array, extrasBefore.get(name)!) > 0) changed++;
    assert.ok(changed > 2, `training must change trainable parameters (${changed} changed)`);
    if (method !== "freeze" && method !== "bitfit") assert.ok(counts.percent < 50, `${method} trains ${counts.percent}%`);
    m.dispose();
  });
}

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ringtrain-peft-${prefix}-`));
}

async function saveBase(dir: string, seed: number): Promise<void> {
  const base = BertModel.create(cfg, seed);
  await saveCheckpoint(dir, { config: cfg, tensors: exportHfTensors(base), vocab: VOCAB, step: 1 });
  base.dispose();
}

const methods: [string, Record<string, unknown>][] = [
  ["lora", {}], ["lora", { lora: { merge: true } }], ["adapter", {}], ["adapter", { adapter: { embedding_size: 4 } }], ["prefix", { prefix: { reparameterize: true, num_virtual_tokens: 3 } }],
  ["prefix", { prefix: { reparameterize: false, num_virtual_tokens: 3 } }], ["prompt", { prompt: { num_virtual_tokens: 3 } }], ["bitfit", {}], ["freeze", {}], ["full", {}],
  ["lora", { pooling: "mean" }], ["prompt", { prompt: { num_virtual_tokens: 3 }, pooling: "mean" }], ["full", { pooling: "mean" }],
];

test("save -> load -> predict gives the same logits, for every method", async () => {
  const root = tmp("save");
  const baseDir = path.join(root, "base");
  await saveBase(baseDir, 3);
  const base = await loadCheckpoint(baseDir);
  const checksum = await modelChecksum(baseDir);
  const b = batch(4);
  for (const [method, extra] of methods) {
    const m = buildClassifier(base, settings(method, extra), "pretrained", 9);
    perturb(m, /lora_B|\.up\.weight|prefix|prompt|classifier/, 0.1);
    const trainer = new Trainer<ClassificationBatch>(m.base, { schedule: { peakLr: 1e-2, warmupSteps: 0, totalSteps: 10, decay: "constant" }, params: m.trainable, objective: classificationObjective(m) });
    await trainer.trainStep([batch(20)]);
    const want = classifierLogits(m, b);
    const dir = path.join(root, `${method}-${JSON.stringify(extra).replace(/\W/g, "")}`);
    await saveClassifier(dir, m, { labels: ["a", "b", "c"], maxSeqLen: 8, lowercase: true, baseDir, baseChecksum: checksum, vocab: VOCAB, padTokenId: 0, step: 1 });
    const complete = method === "full" || (method === "lora" && (extra.lora as { merge?: boolean } | undefined)?.merge === true);
    assert.equal(fs.existsSync(path.join(dir, "adapter_model.safetensors")), !complete, `${method}: adapter file`);
    // LoRA with [CLS] pooling is saved in HF PEFT's layout: ringtrain's fields are then in ringtrain_adapter.json.
    const peftLayout = method === "lora" && !complete && extra.pooling === undefined;
    assert.equal(fs.existsSync(path.join(dir, "ringtrain_adapter.json")), peftLayout, `${method}: HF PEFT layout`);
    const recorded = JSON.parse(fs.readFileSync(path.join(dir, complete ? "task.json" : peftLayout ? "ringtrain_adapter.json" : "adapter_config.json"), "utf8")) as { pooling?: string };
    assert.equal(recorded.pooling, (extra.pooling as string | undefined) ?? "cls", `${method}: pooling recorded`);
    if (complete) {
      // HF's BertForSequenceClassification reads the labels and, with CLS pooling (its head), the architecture
      const hf = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as { architectures?: string[]; id2label?: Record<string, string>; label2id?: Record<string, number> };
      assert.deepEqual(hf.id2label, { 0: "a", 1: "b", 2: "c" });
      assert.deepEqual(hf.label2id, { a: 0, b: 1, c: 2 });
      assert.deepEqual(hf.architectures, recorded.pooling === "cls" ? ["BertForSequenceClassification"] : ["BertForMaskedLM"]);
    }
    const loaded = complete ? await loadClassifier(dir) : await loadClassifier(baseDir, dir);
    assert.deepEqual(loaded.labels, ["a", "b", "c"]);
    assert.equal(loaded.model.settings.pooling, recorded.pooling);
    const got = classifierLogits(loaded.model, b);
    assert.ok(maxAbsDiffOf(got, want) < 2e-5, `${method} ${JSON.stringify(extra)}: reloaded logits differ by ${maxAbsDiffOf(got, want)}`);
    if (!complete) {
      const bytes = fs.statSync(path.join(dir, "adapter_model.safetensors")).size;
      assert.ok(bytes < fs.statSync(path.join(baseDir, "model.safetensors")).size, `${method}: the adapter holds only what was trained`);
    }
    loaded.model.dispose();
    m.dispose();
  }
  fs.rmSync(root, { recursive: true, force: true });
});

test("mean pooling: the pooler reads the mean of the text's own positions (padding and soft-prompt rows left out)", () => {
  const b = batch(6); // odd sequences end in 2 padding positions
  assert.ok(b.attentionMask.includes(0), "the batch has padding");
  for (const [method, extra] of [["full", {}], ["prompt", { prompt: { num_virtual_tokens: 3 } }]] as [string, Record<string, unknown>][]) {
    const base = BertModel.create(cfg, 5); // (a classifier owns its base and disposes it)
    const m = PeftClassifier.create(base, settings(method, { ...extra, pooling: "mean" }), 7);
    perturb(m, /prompt|classifier/, 0.1);
    const n = method === "prompt" ? 3 : 0;
    const [got, want] = tf.tidy(() => {
      const hidden = encode(base, b, { training: false, hooks: m.hooks({ training: false }, b.batchSize) });
      const H = cfg.hiddenSize;
      const TT = b.seqLen + n;
      assert.equal(hidden.shape[0], b.batchSize * TT);
      // Reference: average the attended rows in plain JS (row 0 and rows n+1.. carry the text), then dense + tanh.
      const h = hidden.dataSync() as Float32Array;
      const mean = new Float32Array(b.batchSize * H);
      for (let s = 0; s < b.batchSize; s++) {
        const rows: number[] = [];
        for (let j = 0; j < b.seqLen; j++) if (b.attentionMask[s * b.seqLen + j]) rows.push(j === 0 ? 0 : j + n);
        for (const r of rows) for (let k = 0; k < H; k++) mean[s * H + k] += h[(s * TT + r) * H + k] / rows.length;
      }
      const ref = tf.tanh(tf.add(tf.matMul(tf.tensor2d(mean, [b.batchSize, H]), base.param("bert.pooler.dense.weight")), base.param("bert.pooler.dense.bias")));
      return [Float32Array.from(meanPooledOutput(base, hidden, b.attentionMask, b.batchSize, TT).dataSync()), Float32Array.from(ref.dataSync())];
    });
    assert.ok(maxAbsDiffOf(got, want) < 1e-5, `${method}: mean pooling vs reference ${maxAbsDiffOf(got, want)}`);
    // Padded positions do not count: changing their token ids leaves the logits as they were.
    const changed = { ...b, inputIds: b.inputIds.map((id, i) => (b.attentionMask[i] ? id : 7)) };
    assert.ok(maxAbsDiffOf(classifierLogits(m, changed), classifierLogits(m, b)) < 1e-6, `${method}: padding leaked into the mean`);
    // And the mean differs from [CLS] pooling (the setting is used).
    const cls = PeftClassifier.create(BertModel.create(cfg, 5), settings(method, extra), 7);
    for (const s of m.extraSpecs) cls.param(s.name).assign(m.param(s.name));
    assert.ok(maxAbsDiffOf(classifierLogits(cls, b), classifierLogits(m, b)) > 1e-4, `${method}: mean and cls pooling gave the same logits`);
    cls.dispose();
    m.dispose();
  }
  // Files written before the field existed pooled [CLS].
  const old = { format: "ringtrain-adapter", version: 1, method: "lora", settings: {}, base_model: { path: "b", sha256: "0".repeat(64) }, tensors: ["x"], labels: ["a", "b"], max_seq_len: 8, lowercase: true, classifier_dropout: 0.1 };
  assert.equal(adapterConfigSchema.parse(old).pooling, "cls");
  assert.throws(() => validateRunConfig({ task: "classification", data: { corpus: "spam-assassin" }, batch: { global_batch_size: 4, micro_batch_size: 2 }, training: { max_steps: 1 }, finetune: { base_model: "x", pooling: "max" } }, "ft.yaml"), /field finetune\.pooling: /);
});

test("an adapter is refused on a different base model, naming both checksums", async () => {
  const root = tmp("wrong");
  await saveBase(path.join(root, "base"), 3);
  await saveBase(path.join(root, "other"), 4);
  const base = await loadCheckpoint(path.join(root, "base"));
  const m = buildClassifier(base, settings("lora"), "pretrained", 1);
  const sum = await modelChecksum(path.join(root, "base"));
  await saveClassifier(path.join(root, "adapter"), m, { labels: ["a", "b", "c"], maxSeqLen: 8, lowercase: true, baseDir: path.join(root, "base"), baseChecksum: sum, vocab: VOCAB, padTokenId: 0 });
  const other = await modelChecksum(path.join(root, "other"));
  await assert.rejects(loadClassifier(path.join(root, "other"), path.join(root, "adapter")), (e: Error) => {
    assert.match(e.message, /was trained on base model .*base.* sha256 [0-9a-f]{64}.*has sha256 [0-9a-f]{64}: refusing/);
    assert.ok(e.message.includes(sum) && e.message.includes(other));
    return true;
  });
  // The right base loads.
  (await loadClassifier(path.join(root, "base"), path.join(root, "adapter"))).model.dispose();
  m.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

test("bad finetune fields are refused, naming the field", () => {
  const good = { task: "classification", data: { corpus: "spam-assassin" }, batch: { global_batch_size: 4, micro_batch_size: 2 }, training: { max_steps: 1 } };
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ base_model: "x", method: "lora2" }, /field finetune\.method: /],
    [{ base_model: "x", lora: { rank: 4 } }, /field finetune\.lora: unknown field 'rank'/],
    [{ base_model: "x", lora: { r: 0 } }, /field finetune\.lora\.r: /],
    [{ base_model: "x", lora: { target_modules: ["qkv"] } }, /field finetune\.lora\.target_modules\[0\]: /],
    [{ base_model: "x", label_fraction: 2.5 }, /field finetune\.label_fraction: expected a fraction/],
    [{ base_model: "x", label_fraction: 0 }, /field finetune\.label_fraction: /],
    [{ method: "full" }, /field finetune\.base_model: required field is missing/],
    [{ base_model: "x", init: "random", method: "lora" }, /field finetune\.init: init: random trains from scratch/],
    [{ base_model: "x", adapter: { size: -1 } }, /field finetune\.adapter\.size: /],
    [{ base_model: "x", prefix: { num_virtual_tokens: 1.5 } }, /field finetune\.prefix\.num_virtual_tokens: /],
  ];
  for (const [finetune, want] of cases) {
    assert.throws(() => validateRunConfig({ ...good, finetune }, "ft.yaml"), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /^ft\.yaml: invalid config/);
      assert.match(e.message, want);
      return true;
    });
  }
  assert.throws(() => validateRunConfig({ ...good }, "ft.yaml"), /field finetune: required field is missing/);
  assert.throws(() => validateRunConfig({ ...good, task: "pretrain", finetune: { base_model: "x" } }, "ft.yaml"), /field model: required field is missing/);
  // And the valid one passes.
  assert.equal(validateRunConfig({ ...good, finetune: { base_model: "x", method: "lora" } }, "ft.yaml").finetune?.lora.r, 8);
});
