/**
 * LoRA adapters in Hugging Face PEFT's format (shared/finetune/peft-format.ts): the files follow PEFT's rules (tensor
 * names, shapes, dtype, adapter_config.json fields; safetensors read by hand here), PEFT's target matching wraps
 * exactly the linears ringtrain wraps, the saved tensors alone give ringtrain's merged weights W + (alpha/r)·B·A,
 * an adapter written before (ringtrain's layout, test/fixtures/lora-adapter-v1) still loads and predicts as before,
 * `launch predict` gives identical predictions from both layouts, and, where python3 with torch is importable, an
 * independent torch forward that applies the adapter as PEFT does reproduces ringtrain's logits.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../shared/backend/select";
import { BertModel } from "../shared/model/bert";
import { exportHfTensors, transpose2d } from "../shared/model/hf";
import { saveCheckpoint, loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { readManifest, writeManifest } from "../shared/checkpoint/manifest";
import type { PeftClassifier } from "../shared/peft/classifier";
import { extraParamSpecs } from "../shared/peft/specs";
import { peftSettingsOf, type PeftSettings } from "../shared/peft/settings";
import { LORA_MODULE_NAMES, finetuneSchema } from "../shared/config/schema";
import { modelChecksum } from "../shared/finetune/base-model";
import { buildClassifier, loadClassifier } from "../shared/finetune/load";
import { saveClassifier } from "../shared/finetune/save";
import { ringtrainAdapterSchema } from "../shared/finetune/adapter-config";
import { hfClassifierLinears, peftTargetModules, peftTargets } from "../shared/finetune/peft-format";
import { repoRoot } from "../shared/paths";
import { classifierLogits, maxAbsDiffOf, randomBatch, tinyConfig } from "./helpers/model-fixtures";
import { runLaunch } from "./helpers/launch";
import { pythonWithTorchOrSkip } from "./helpers/python";

before(async () => {
  await selectBackend("wasm");
});

const cfg = tinyConfig();
const VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...Array.from({ length: cfg.vocabSize - 5 }, (_, i) => `w${i}`)];
const LABELS = ["a", "b", "c"];
const FIXTURE = path.join(repoRoot(), "test", "fixtures", "lora-adapter-v1");

/**
 * Every field HF PEFT's LoraConfig has had since PEFT 0.7 (src/peft/config.py PeftConfigMixin / PeftConfig,
 * src/peft/tuners/lora/config.py LoraConfig). PEFT before 0.13 raises TypeError on any other key.
 */
const PEFT_LORA_FIELDS = new Set([
  "peft_type", "task_type", "auto_mapping", "base_model_name_or_path", "revision", "inference_mode",
  "r", "target_modules", "lora_alpha", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "modules_to_save",
  "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "megatron_config",
  "megatron_core", "loftq_config",
]);

function settings(lora: Record<string, unknown>, extra: Record<string, unknown> = {}): PeftSettings {
  return peftSettingsOf(finetuneSchema.parse({ base_model: "unused", method: "lora", lora, ...extra }), LABELS.length);
}

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ringtrain-peftfmt-${prefix}-`));
}

/** A safetensors file parsed by hand: 8-byte little-endian header length, JSON header, raw little-endian bytes. */
interface RawTensor {
  dtype: string;
  shape: number[];
  data: Float32Array;
}
function readRawSafetensors(file: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & { __metadata__?: Record<string, string> };
  const body = buf.subarray(8 + n);
  const tensors = new Map<string, RawTensor>();
  let expectedStart = 0;
  const entries = Object.entries(header).filter(([k]) => k !== "__metadata__") as [string, { dtype: string; shape: number[]; data_offsets: [number, number] }][];
  for (const [name, info] of entries.sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])) {
    const [start, end] = info.data_offsets;
    assert.equal(start, expectedStart, `${name}: tensors are contiguous`);
    expectedStart = end;
    const data = new Float32Array(info.shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = body.readFloatLE(start + 4 * i);
    assert.equal(end - start, 4 * data.length, `${name}: byte length matches shape and dtype`);
    tensors.set(name, { dtype: info.dtype, shape: info.shape, data });
  }
  assert.equal(expectedStart, body.length, "no bytes after the last tensor");
  return { tensors, metadata: header.__metadata__ ?? {} };
}

/** [out, in] of an HF BertForSequenceClassification nn.Linear. */
function linearOutIn(module: string): [number, number] {
  const H = cfg.hiddenSize;
  if (module.endsWith("intermediate.dense")) return [cfg.intermediateSize, H];
  if (module.endsWith(".output.dense") && !module.endsWith("attention.output.dense")) return [H, cfg.intermediateSize];
  if (module === "classifier") return [LABELS.length, H];
  return [H, H];
}

/** Sets LoRA B and the head to random values, so the adapter changes the output. */
function perturb(m: PeftClassifier, seed: number): void {
  for (const s of m.extraSpecs) {
    if (!/lora_B|classifier/.test(s.name)) continue;
    const t = tf.randomNormal(s.shape, 0, 0.1, "float32", seed++);
    m.param(s.name).assign(t);
    t.dispose();
  }
}



async function savedLora(root: string, lora: Record<string, unknown>, seed = 3): Promise<{ baseDir: string; dir: string; model: PeftClassifier }> {
  const baseDir = path.join(root, "base");
  if (!fs.existsSync(baseDir)) {
    const b = BertModel.create(cfg, seed);
    await saveCheckpoint(baseDir, { config: cfg, tensors: exportHfTensors(b), vocab: VOCAB, step: 1 });
    b.dispose();
  }
  const model = buildClassifier(await loadCheckpoint(baseDir), settings(lora), "pretrained", 9);
  perturb(model, 31);
  const dir = path.join(root, `lora-${JSON.stringify(lora).replace(/\W/g, "")}`);
  await saveClassifier(dir, model, { labels: LABELS, maxSeqLen: 8, lowercase: true, baseDir, baseChecksum: await modelChecksum(baseDir), vocab: VOCAB, padTokenId: 0, step: 1 });
  return { baseDir, dir, model };
}

test("PEFT's target rule wraps exactly the linears ringtrain wraps, for every choice of target_modules", () => {
  const names = [...LORA_MODULE_NAMES];
  for (let mask = 1; mask < 1 << names.length; mask++) {
    const targets = names.filter((_, i) => mask & (1 << i));
    const ringtrain = extraParamSpecs(cfg, settings({ target_modules: targets }))
      .filter((p) => p.name.endsWith(".lora_A.weight"))
      .map((p) => p.name.slice(0, -".lora_A.weight".length));
    const peft = peftTargetModules(cfg, targets);
    const wrapped = hfClassifierLinears(cfg).filter((k) => peftTargets(k, peft));
    assert.deepEqual(wrapped, ringtrain, `targets [${targets}] -> PEFT [${peft}]`);
    assert.ok(!wrapped.includes("bert.pooler.dense"), "the pooler is saved whole, never LoRA-wrapped");
  }
  // ringtrain's "dense" is every dense of the encoder layers, not the pooler's: PEFT gets the layer paths.
  assert.deepEqual(peftTargetModules(cfg, ["query", "dense"]), ["query", "attention.output.dense", "intermediate.dense", "output.dense"]);
});

test("a LoRA adapter is written in HF PEFT's format: config fields, tensor names, shapes, dtype", async () => {
  const root = tmp("format");
  const cases: Record<string, unknown>[] = [{ r: 4, alpha: 8, target_modules: ["query", "value", "output.dense"] }, { r: 2, alpha: 3, dropout: 0.1, target_modules: ["dense"] }, {}];
  for (const lora of cases) {
    const { baseDir, dir, model } = await savedLora(root, lora);
    const s = model.settings.lora;
    const manifest = await readManifest(dir);
    assert.deepEqual(Object.keys(manifest.files).sort(), ["adapter_config.json", "adapter_model.safetensors", "ringtrain_adapter.json"]);

    // adapter_config.json: PEFT's LoraConfig and nothing else.
    const pc = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    for (const k of Object.keys(pc)) assert.ok(PEFT_LORA_FIELDS.has(k), `adapter_config.json: '${k}' is not a PEFT LoraConfig field`);
    assert.equal(pc.peft_type, "LORA");
    assert.equal(pc.task_type, "SEQ_CLS");
    assert.equal(pc.base_model_name_or_path, path.resolve(baseDir));
    assert.equal(pc.r, s.r);
    assert.equal(pc.lora_alpha, s.alpha, "PEFT scales by lora_alpha / r: the same alpha and r as ringtrain's");
    assert.equal(pc.use_rslora, false);
    assert.equal(pc.lora_dropout, s.dropout);
    assert.equal(pc.bias, "none");
    assert.equal(pc.fan_in_fan_out, false, "weights are nn.Linear's [out, in]");
    assert.deepEqual([...(pc.modules_to_save as string[])].sort(), ["classifier", "pooler"]);
    const targets = pc.target_modules as string[];

    // adapter_model.safetensors: exactly the keys PEFT's get_peft_model_state_dict produces for this config.
    const { tensors, metadata } = readRawSafetensors(path.join(dir, "adapter_model.safetensors"));
    assert.deepEqual(metadata, { format: "pt" });
    const want = new Map<string, number[]>();
    for (const k of hfClassifierLinears(cfg)) {
      if (k === "classifier" || k.startsWith("bert.pooler.") || !peftTargets(k, targets)) continue;
      const [out, inp] = linearOutIn(k);
      want.set(`base_model.model.${k}.lora_A.weight`, [s.r, inp]);
      want.set(`base_model.model.${k}.lora_B.weight`, [out, s.r]);
    }
    const H = cfg.hiddenSize;
    want.set("base_model.model.classifier.weight", [LABELS.length, H]);
    want.set("base_model.model.classifier.bias", [LABELS.length]);
    want.set("base_model.model.bert.pooler.dense.weight", [H, H]);
    want.set("base_model.model.bert.pooler.dense.bias", [H]);
    assert.deepEqual([...tensors.keys()].sort(), [...want.keys()].sort());
    for (const [k, t] of tensors) {
      assert.equal(t.dtype, "F32", k);
      assert.deepEqual(t.shape, want.get(k), `${k} shape`);
    }

    // ringtrain_adapter.json: ringtrain's fields, version 2, listing the same tensors.
    const rt = ringtrainAdapterSchema.parse(JSON.parse(fs.readFileSync(path.join(dir, "ringtrain_adapter.json"), "utf8")));
    assert.deepEqual([...rt.tensors].sort(), [...want.keys()].sort());
    assert.deepEqual(rt.labels, LABELS);
    model.dispose();
  }
  fs.rmSync(root, { recursive: true, force: true });
});

test("the saved PEFT tensors alone give ringtrain's merged weights W + (lora_alpha / r) · B · A", async () => {
  const root = tmp("merge");
  const { baseDir, dir, model } = await savedLora(root, { r: 4, alpha: 6, target_modules: ["key", "value", "intermediate.dense", "output.dense"] });
  const pc = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number };
  const scale = pc.lora_alpha / pc.r;
  const adapter = readRawSafetensors(path.join(dir, "adapter_model.safetensors")).tensors;
  const base = readRawSafetensors(path.join(baseDir, "model.safetensors")).tensors;
  const merged = model.mergedWeights();
  assert.equal(merged.size, 2 * 5, "2 layers x (key, value, intermediate.dense, and output.dense: both the FFN's and attention.output.dense)");
  let worst = 0;
  for (const [name, w] of merged) {
    const module = name.slice(0, -".weight".length);
    const a = adapter.get(`base_model.model.${module}.lora_A.weight`)!;
    const b = adapter.get(`base_model.model.${module}.lora_B.weight`)!;
    const W = base.get(name)!;
    const [out, inp] = W.shape;
    const r = a.shape[0];
    const want = transpose2d(w, inp, out); // ringtrain keeps [in, out]; HF's [out, in]
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inp; i++) {
        let ba = 0;
        for (let k = 0; k < r; k++) ba += b.data[o * r + k] * a.data[k * inp + i];
        worst = Math.max(worst, Math.abs(W.data[o * inp + i] + scale * ba - want[o * inp + i]));
      }
    }
  }
  assert.ok(worst < 1e-6, `W + (alpha/r) B A from the PEFT files differs from ringtrain's merge by ${worst}`);
  model.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

/** The fixture's batch and the logits the code before the PEFT layout computed for it. */
function fixtureBatch(): { batch: { batchSize: number; seqLen: number; inputIds: Int32Array; tokenTypeIds: Int32Array; attentionMask: Int32Array }; logits: number[] } {
  const e = JSON.parse(fs.readFileSync(path.join(FIXTURE, "expected.json"), "utf8")) as { batch: { inputIds: number[]; tokenTypeIds: number[]; attentionMask: number[] }; logits: number[] };
  const b = randomBatch(cfg, 4, 8, 4, 0, 2);
  assert.deepEqual(Array.from(b.inputIds), e.batch.inputIds, "the fixture's batch is randomBatch(tinyConfig(), 4, 8, 4, 0, 2)");
  return { batch: { batchSize: 4, seqLen: 8, inputIds: b.inputIds, tokenTypeIds: b.tokenTypeIds, attentionMask: b.attentionMask }, logits: e.logits };
}

test("an adapter written before (ringtrain's layout) still loads and gives the logits it gave; re-saved, it is in PEFT's layout", async () => {
  const { batch, logits: want } = fixtureBatch();
  const old = await loadClassifier(path.join(FIXTURE, "base"), path.join(FIXTURE, "adapter"));
  assert.deepEqual(old.labels, LABELS);
  assert.ok(maxAbsDiffOf(classifierLogits(old.model, batch), want) < 1e-5, "old-layout adapter: logits as recorded");
  const root = tmp("v1");
  const dir = path.join(root, "peft");
  await saveClassifier(dir, old.model, { labels: old.labels, maxSeqLen: old.maxSeqLen, lowercase: true, baseDir: path.join(FIXTURE, "base"), baseChecksum: await modelChecksum(path.join(FIXTURE, "base")), vocab: VOCAB, padTokenId: 0, step: 1 });
  assert.ok(fs.existsSync(path.join(dir, "ringtrain_adapter.json")));
  const again = await loadClassifier(path.join(FIXTURE, "base"), dir);
  assert.equal(maxAbsDiffOf(classifierLogits(again.model, batch), classifierLogits(old.model, batch)), 0, "same weights in either layout: identical logits");
  old.model.dispose();
  again.model.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

test("a PEFT adapter_config.json that disagrees with ringtrain_adapter.json is refused, naming both files", async () => {
  const root = tmp("mismatch");
  const { baseDir, dir, model } = await savedLora(root, { r: 4, alpha: 8 });
  model.dispose();
  const file = path.join(dir, "adapter_config.json");
  const pc = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  fs.writeFileSync(file, JSON.stringify({ ...pc, lora_alpha: 16 }));
  // The manifest records each file's checksum: an edited file is refused as such ...
  await assert.rejects(loadClassifier(baseDir, dir), /adapter_config\.json/);
  // ... and a consistent manifest with inconsistent settings is refused by the comparison.
  const files = Object.fromEntries(["adapter_model.safetensors", "adapter_config.json", "ringtrain_adapter.json"].map((f) => {
    const bytes = fs.readFileSync(path.join(dir, f));
    return [f, { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }];
  }));
  await writeManifest(dir, files, 1);
  await assert.rejects(loadClassifier(baseDir, dir), /adapter_config\.json disagrees with .*ringtrain_adapter\.json: lora_alpha 16 \(settings say 8\)/);
  fs.rmSync(root, { recursive: true, force: true });
});

test("launch predict gives identical predictions from the old layout and the PEFT layout of one adapter", async () => {
  const root = tmp("predict");
  const old = await loadClassifier(path.join(FIXTURE, "base"), path.join(FIXTURE, "adapter"));
  const peftDir = path.join(root, "peft");
  await saveClassifier(peftDir, old.model, { labels: old.labels, maxSeqLen: old.maxSeqLen, lowercase: true, baseDir: path.join(FIXTURE, "base"), baseChecksum: await modelChecksum(path.join(FIXTURE, "base")), vocab: VOCAB, padTokenId: 0, step: 1 });
  old.model.dispose();
  const input = path.join(root, "in.txt");
  fs.writeFileSync(input, ["w1 w2 w3", "w4 w5 w6 w7 w8", "w9", "w10 w11 w12 w13 w14 w15 w16"].join("\n") + "\n");
  const outs: string[] = [];
  for (const [name, adapter] of [["old", path.join(FIXTURE, "adapter")], ["peft", peftDir]]) {
    const out = path.join(root, `${name}.jsonl`);
    const r = await runLaunch(["predict", "--model", path.join(FIXTURE, "base"), "--adapter", adapter, input, "--backend", "wasm", "--output", out]);
    assert.equal(r.code, 0, r.stderr);
    outs.push(fs.readFileSync(out, "utf8"));
  }
  assert.equal(outs[0].trim().split("\n").length, 4);
  assert.equal(outs[1], outs[0], "predictions (labels, probabilities, logits) are identical");
  fs.rmSync(root, { recursive: true, force: true });
});

test("independent check: torch applies the PEFT files as PEFT does and reproduces ringtrain's logits and merged weights", async (t) => {
  const py = pythonWithTorchOrSkip(t);
  if (py === undefined) return;
  const root = tmp("torch");
  for (const lora of [{ r: 4, alpha: 8, target_modules: ["query", "value", "output.dense"] }, { r: 2, alpha: 5, target_modules: ["dense", "key"] }]) {
    const { baseDir, dir, model } = await savedLora(root, lora);
    const b = randomBatch(cfg, 4, 8, 5, 0, 2);
    const batch = { batchSize: 4, seqLen: 8, inputIds: b.inputIds, tokenTypeIds: b.tokenTypeIds, attentionMask: b.attentionMask };
    const want = classifierLogits(model, batch);
    const rows = (a: Int32Array): number[][] => Array.from({ length: 4 }, (_, i) => Array.from(a.subarray(i * 8, (i + 1) * 8)));
    const merged: Record<string, number[][]> = {};
    for (const [name, w] of model.mergedWeights()) {
      const s = model.base.specs.find((p) => p.name === name)!;
      const hf = transpose2d(w, s.shape[0], s.shape[1]);
      merged[name] = Array.from({ length: s.shape[1] }, (_, o) => Array.from(hf.subarray(o * s.shape[0], (o + 1) * s.shape[0])));
    }
    const input = path.join(root, "input.json");
    fs.writeFileSync(input, JSON.stringify({ input_ids: rows(b.inputIds), token_type_ids: rows(b.tokenTypeIds), attention_mask: rows(b.attentionMask), merged }));
    const r: SpawnSyncReturns<string> = spawnSync(py, [path.join(repoRoot(), "test", "helpers", "peft_reference.py"), baseDir, dir, input], { encoding: "utf8", timeout: 120_000 });
    assert.equal(r.status, 0, `peft_reference.py failed:\n${r.stderr}`);
    const got = JSON.parse(r.stdout) as { logits: number[][]; merged: Record<string, number>; wrapped: string[]; saved_modules: string[] };
    assert.deepEqual(got.saved_modules, ["bert.pooler", "classifier"]);
    assert.equal(got.wrapped.length, model.extraSpecs.filter((p) => p.name.endsWith("lora_A.weight")).length);
    const d = maxAbsDiffOf(got.logits.flat(), want);
    assert.ok(d < 1e-4, `torch (PEFT rules) vs ringtrain logits differ by ${d}`);
    assert.ok(Math.max(...got.logits.flat().map(Math.abs)) > 1e-3, "non-trivial logits");
    for (const [name, diff] of Object.entries(got.merged)) assert.ok(diff < 1e-5, `${name}: merged weights differ by ${diff}`);
    model.dispose();
  }
  fs.rmSync(root, { recursive: true, force: true });
});
