/**
 * ringtrain's pretraining steps against an independent PyTorch reference (test/helpers/torch_pretrain_reference.py):
 * Hugging Face's BertForMaskedLM written out in torch, torch.optim.AdamW with HF Trainer's weight-decay groups,
 * clip_grad_norm_ and HF's get_{linear,cosine}_schedule_with_warmup.
 *
 * 1. A real `launch --workers 2` run (gradient accumulation, the gRPC ring, checkpoints) starts from the weights of a
 *    real checkpoint (model.init_from) and trains 4 steps with dropout off; the test rebuilds the exact global batch
 *    of every step with ringtrain's data code from the sequences the workers logged (RINGTRAIN_DATA_LOG), and torch
 *    trains the same steps from the same checkpoint. Compared: loss, gradient norm and learning rate of every step
 *    in metrics.jsonl, and every parameter of the final checkpoint.
 * 2. Packed pretraining rows are full (only a corpus's last row is padded) and all segment 0, so the same comparison
 *    runs the Trainer itself on batches with padding (attention mask), segment-1 tokens and micro-batches of uneven
 *    target counts, under the cosine schedule with a floor.
 * 3. A causal decoder (objective causal, HF's BertLMHeadModel: causal attention, labels shifted inside the model) from
 *    ringtrain's causal batches, against HF's labels (the input ids, -100 on padding).
 * 4. MLM + next-sentence prediction (objective mlm+nsp) through `launch --workers 2` with accumulation, against HF's
 *    BertForPreTraining (pooler + cls.seq_relationship; loss = MLM mean over the masked tokens + NSP mean over the
 *    sequences, both over the global batch).
 *
 * Skipped when no python3 imports torch (CI installs Debian's python3-torch).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadRunConfig } from "../shared/config/load";
import type { RunConfig } from "../shared/config/schema";
import { loadCheckpoint, saveCheckpoint } from "../shared/checkpoint/checkpoint";
import { listCheckpoints } from "../shared/checkpoint/run-checkpoints";
import { buildBatch, maskSettingsFor, type Objective } from "../shared/data/objective";
import { countTargets, type Batch } from "../shared/data/batch";
import { pretrainingDocuments, prepareNspData, preparePretrainingData, tokenizerFromTokens } from "../shared/pipeline/prepare";
import { modelConfigOf } from "../shared/config/derived";
import { bertParamSpecs, type ParamSpec } from "../shared/model/params";
import { BertModel } from "../shared/model/bert";
import { bertConfig, type BertConfig } from "../shared/model/config";
import { exportHfTensors } from "../shared/model/hf";
import { Trainer } from "../shared/train/trainer";
import type { AdamWOptions } from "../shared/train/adamw";
import type { LrSchedule } from "../shared/train/schedule";
import { selectBackend } from "../shared/backend/select";
import { repoRoot } from "../shared/paths";
import { makeCausalBatch } from "../shared/data/causal";
import type { PackedSequences } from "../shared/data/packed";
import { Rng } from "../shared/rng";
import { runLaunch, tempDir, tinyArgs } from "./helpers/launch";
import { randomBatch, sliceBatch } from "./helpers/model-fixtures";
import { pythonWithTorchOrSkip } from "./helpers/python";

/** What the torch reference prints. */
interface ReferenceResult {
  /** loss: HF's loss (BertForPreTraining: mlm_loss + nsp_loss, both given then). */
  steps: { loss: number; grad_norm: number; lr: number; mlm_loss?: number; nsp_loss?: number }[];
  params: Record<string, { max_abs_diff: number; max_abs: number; max_abs_change: number }>;
  decay: string[];
  no_decay: string[];
  not_in_model: Record<string, number>;
}

/** What ringtrain reported for one step (metrics.jsonl, or the Trainer's StepResult). */
interface StepFigures {
  /** MLM (or causal LM) loss per target. */
  loss: number;
  /** NSP loss per sequence (objective mlm+nsp). */
  nspLoss?: number;
  gradNorm: number;
  lr: number;
}

/** One line of RINGTRAIN_DATA_LOG: the sequences a rank trained at a step. */
interface DataLogLine {
  step: number;
  rank: number;
  indices: number[];
  epochs: number[];
}

/** Optimizer settings as the reference reads them (the run config's `optimizer` section). */
interface OptimizerSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  grad_clip_norm: number;
}

/**
 * Parameters may differ by TOLERANCE x max(1, |largest value of that tensor|). Both sides compute in float32 with
 * different summation orders (tfjs/XNNPACK vs torch, per-rank partial sums through the ring): gradients agree to
 * ~1e-6 relative, and Adam normalises each update to about lr = 3e-3 per step, so a rounding-level gradient
 * difference moves a parameter by ~lr x 1e-6 x |g| / (|g| + eps) per step: ~1e-8, far under 1e-5 (measured: at most
 * 1.2e-7, about one float32 ulp of the largest values; 4.6e-7 in the mlm+nsp case, where weighing each NSP loss
 * like one masked token instead of HF's NSP mean, as ringtrain did before, differs by 4.2e-3). A wrong decay group moves a parameter by lr x wd x |p|
 * (3e-4 x |p|) per step, a wrong schedule, clip or loss normalisation by a sizeable share of lr: all far above it.
 */
const TOLERANCE = 1e-5;

test("4 pretraining steps of launch --workers 2 equal PyTorch's BertForMaskedLM + AdamW (HF Trainer's decay groups) + HF's warmup/linear schedule", async (t) => {
  const py = pythonWithTorchOrSkip(t);
  if (py === undefined) return;
  const root = tempDir("torchref");
  // Warmup 2 of 4 steps: rates 0, lr/2, lr, lr/2 (the first update has rate 0 but still fills Adam's moments).
  // This run's gradient norms (~1.2-1.3) exceed the default clip of 1.0: every step clips (case 2 has unclipped steps).
  const { initDir, finalDir, cfg, vocabSize, schedule, batches, figures } = await launchedSteps(root, 4, [],
    ["--set", "schedule.warmup_steps=2", "--set", "optimizer.weight_decay=0.1"]);
  const got = runReference(py, root, initDir, finalDir, cfg.optimizer, schedule, batches);
  const report = compareWithReference(got, figures, bertParamSpecs(modelConfigOf(cfg, vocabSize)));
  for (const line of report) t.diagnostic(line);
  assert.ok(got.steps.some((s) => s.grad_norm > cfg.optimizer.grad_clip_norm), "some step clipped");
  fs.rmSync(root, { recursive: true, force: true });
});

test("the Trainer with padding, segment-1 tokens, uneven micro-batches and cosine decay to a floor equals the torch reference", async (t) => {
  const py = pythonWithTorchOrSkip(t);
  if (py === undefined) return;
  const root = tempDir("torchref-trainer");
  const { config, model, initDir, save } = await smallModel(root, 11, false);
  const optimizer: OptimizerSettings = { lr: 3e-3, beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.1, grad_clip_norm: 1.6 };
  const schedule: LrSchedule = { peakLr: optimizer.lr, warmupSteps: 1, totalSteps: 4, decay: "cosine", minLrRatio: 0.2 };
  const adamw: Partial<AdamWOptions> = { beta1: optimizer.beta1, beta2: optimizer.beta2, eps: optimizer.eps, weightDecay: optimizer.weight_decay };
  const trainer = new Trainer(model, { schedule, adamw, maxGradNorm: optimizer.grad_clip_norm });
  // 6 sequences of 12: odd rows end in 4 padding positions, the second half of every row is segment 1; the masking
  // rate leaves the micro-batches of 2 with different target counts, so the global (not per-micro-batch) mean matters.
  const batches = [0, 1, 2, 3].map((s) => randomBatch(config, 6, 12, 100 + s, 0.25, 4));
  const figures: StepFigures[] = [];
  for (const batch of batches) {
    const micro = [sliceBatch(batch, 0, 2), sliceBatch(batch, 2, 2), sliceBatch(batch, 4, 2)];
    assert.ok(new Set(micro.map(countTargets)).size > 1, "the micro-batches hold different numbers of targets");
    const result = await trainer.trainStep(micro);
    figures.push({ loss: result.mlmLoss, gradNorm: result.gradNorm, lr: result.lr });
  }
  const finalDir = await save("final");
  const got = runReference(py, root, initDir, finalDir, optimizer, { kind: "cosine", warmup_steps: 1, total_steps: 4, min_lr_ratio: 0.2 }, batches);
  for (const line of compareWithReference(got, figures, model.specs)) t.diagnostic(line);
  assert.ok(batches.some((b) => b.attentionMask.includes(0)) && batches.some((b) => b.tokenTypeIds.includes(1)), "padding and segment 1 are exercised");
  // The gradient norms (~1.4-2.0 here) fall on both sides of the clip.
  assert.ok(got.steps.some((s) => s.grad_norm > optimizer.grad_clip_norm) && got.steps.some((s) => s.grad_norm < optimizer.grad_clip_norm), "steps with and without clipping");
  model.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

test("a causal decoder (objective causal, HF's BertLMHeadModel) trained by the Trainer equals the torch reference", async (t) => {
  const py = pythonWithTorchOrSkip(t);
  if (py === undefined) return;
  const root = tempDir("torchref-causal");
  const { config, model, initDir, save } = await smallModel(root, 12, true);
  const optimizer: OptimizerSettings = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-6, weight_decay: 0.1, grad_clip_norm: 1.0 };
  const trainer = new Trainer(model, {
    schedule: { peakLr: optimizer.lr, warmupSteps: 1, totalSteps: 3, decay: "linear" },
    adamw: { beta1: optimizer.beta1, beta2: optimizer.beta2, eps: optimizer.eps, weightDecay: optimizer.weight_decay },
    maxGradNorm: optimizer.grad_clip_norm,
  });
  // Packed rows of 12 built by ringtrain's causal batcher: odd rows hold 8 real tokens, then padding.
  const rng = new Rng(5);
  const seqLen = 12;
  const lengths = Int32Array.from({ length: 18 }, (_, i) => (i % 2 === 1 ? 8 : seqLen));
  const tokens = new Int32Array(18 * seqLen);
  lengths.forEach((len, i) => { for (let j = 0; j < len; j++) tokens[i * seqLen + j] = 5 + rng.int(config.vocabSize - 5); });
  const packed: PackedSequences = { seqLen, count: 18, tokens, lengths };
  const batches = [0, 1, 2].map((s) => makeCausalBatch(packed, [0, 1, 2, 3, 4, 5].map((i) => 6 * s + i)));
  const figures: StepFigures[] = [];
  for (const batch of batches) {
    const result = await trainer.trainStep([sliceBatch(batch, 0, 3), sliceBatch(batch, 3, 3)]);
    figures.push({ loss: result.mlmLoss, gradNorm: result.gradNorm, lr: result.lr });
  }
  const finalDir = await save("final");
  // HF's causal labels: the input ids themselves, -100 on padding (DataCollatorForLanguageModeling(mlm=False)); the shift is the model's.
  const hfLabels = (b: Batch): Int32Array => b.inputIds.map((id, i) => (b.attentionMask[i] === 1 ? id : -100));
  const got = runReference(py, root, initDir, finalDir, optimizer, { kind: "linear", warmup_steps: 1, total_steps: 3, min_lr_ratio: 0 }, batches, hfLabels);
  for (const line of compareWithReference(got, figures, model.specs)) t.diagnostic(line);
  model.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});

test("mlm+nsp: 3 steps of launch --workers 2 with accumulation equal PyTorch's BertForPreTraining (MLM mean + NSP mean)", async (t) => {
  const py = pythonWithTorchOrSkip(t);
  if (py === undefined) return;
  const root = tempDir("torchref-nsp");
  // The base is a real mlm+nsp checkpoint (pooler and NSP head included), as in case 1.
  const { initDir, finalDir, cfg, vocabSize, schedule, batches, figures } = await launchedSteps(root, 3, ["--set", "objective=mlm+nsp"],
    ["--set", "optimizer.weight_decay=0.1"]);
  for (const b of batches) assert.equal(b.nspLabels?.length, cfg.batch.global_batch_size);
  // The two means weigh differently from one sum over the masked tokens only when a sequence holds several of them.
  assert.ok(batches.every((b) => countTargets(b) >= 2 * b.batchSize), "several masked tokens per sequence");
  assert.ok(batches.some((b) => b.nspLabels!.includes(0) && b.nspLabels!.includes(1)), "both NSP labels occur");
  const got = runReference(py, root, initDir, finalDir, cfg.optimizer, schedule, batches);
  const report = compareWithReference(got, figures, bertParamSpecs(modelConfigOf(cfg, vocabSize), { nsp: true }));
  for (const line of report) t.diagnostic(line);
  fs.rmSync(root, { recursive: true, force: true });
});

/** What a real `launch --workers 2` run from a real checkpoint trained on, step by step, and what it reported. */
interface LaunchedSteps {
  initDir: string;
  finalDir: string;
  cfg: RunConfig;
  vocabSize: number;
  /** The run's schedule as the reference takes it. */
  schedule: { kind: string; warmup_steps: number; total_steps: number; min_lr_ratio: number };
  /** Each step's global batch: the ranks' slices in rank order, built as the workers built them. */
  batches: Batch[];
  /** Each step's record in metrics.jsonl. */
  figures: StepFigures[];
}

/**
 * Trains a base for one step with `objective` flags (so biases and LayerNorms are no longer 0 and 1), then runs
 * `launch --workers 2` from its checkpoint for `steps` steps with dropout off and `extra` flags, logging the sequences
 * each rank trained (RINGTRAIN_DATA_LOG), and rebuilds every step's global batch with ringtrain's data code. The
 * tiny config's global batch of 12 with micro-batches of 2 gives 3 accumulated micro-batches per rank and step.
 */
async function launchedSteps(root: string, steps: number, objective: readonly string[], extra: readonly string[]): Promise<LaunchedSteps> {
  const base = path.join(root, "base");
  const rBase = await runLaunch(tinyArgs(base, "--workers", "1", "--max-steps", "1", ...objective));
  assert.equal(rBase.code, 0, `base run failed:\n${rBase.stderr}`);
  const initDir = (await listCheckpoints(base)).at(-1)!.dir;
  const run = path.join(root, "run");
  const dataLog = path.join(root, "data.jsonl");
  const r = await runLaunch(tinyArgs(run, "--workers", "2", "--max-steps", String(steps), ...objective,
    "--set", `model.init_from=${initDir}`, "--set", "model.hidden_dropout=0", "--set", "model.attention_dropout=0", ...extra),
  { RINGTRAIN_DATA_LOG: dataLog });
  assert.equal(r.code, 0, `run failed:\n${r.stderr}`);
  const finalDir = (await listCheckpoints(run)).at(-1)!.dir;
  const cfg = loadRunConfig(path.join(run, "config.yaml"));

  const final = await loadCheckpoint(finalDir);
  const tokenizer = tokenizerFromTokens(final.vocab, cfg);
  const mask = maskSettingsFor(tokenizer, cfg.seed, { mlmProbability: cfg.data.mlm_probability, wholeWordMask: cfg.data.whole_word_mask });
  const docs = pretrainingDocuments(cfg);
  const source: Objective = cfg.objective === "mlm+nsp"
    ? { kind: "nsp", data: prepareNspData(cfg, docs, tokenizer).train, mask }
    : { kind: "mlm", data: preparePretrainingData(cfg, docs, tokenizer).train, mask };
  const logged = fs.readFileSync(dataLog, "utf8").trim().split("\n").map((l) => JSON.parse(l) as DataLogLine);
  const batches = Array.from({ length: steps }, (_, i) => {
    const slices = logged.filter((l) => l.step === i + 1).sort((a, b) => a.rank - b.rank);
    assert.deepEqual(slices.map((l) => l.rank), [0, 1], `step ${i + 1}: every rank logged its sequences once`);
    const batch = buildBatch(source, { indices: slices.flatMap((l) => l.indices), epoch: slices.flatMap((l) => l.epochs) });
    assert.equal(batch.batchSize, cfg.batch.global_batch_size);
    return batch;
  });

  const metrics = fs.readFileSync(path.join(run, "metrics.jsonl"), "utf8").trim().split("\n")
    .map((l) => JSON.parse(l) as { step: number; loss: number; nsp_loss?: number; grad_norm: number; learning_rate: number });
  assert.deepEqual(metrics.map((m) => m.step), Array.from({ length: steps }, (_, i) => i + 1));
  return {
    initDir, finalDir, cfg, vocabSize: tokenizer.vocabSize, batches,
    schedule: { kind: cfg.schedule.decay, warmup_steps: cfg.schedule.warmup_steps, total_steps: cfg.training.max_steps, min_lr_ratio: cfg.schedule.min_lr_ratio },
    figures: metrics.map((m) => ({ loss: m.loss, nspLoss: m.nsp_loss, gradNorm: m.grad_norm, lr: m.learning_rate })),
  };
}

/**
 * A small model (2 layers, hidden 16, vocabulary 40, dropout off; a causal decoder when `decoder`) on the wasm backend,
 * its initial weights saved as a checkpoint in ROOT/init; `save(name)` saves the current ones in ROOT/name.
 */
async function smallModel(root: string, seed: number, decoder: boolean): Promise<{
  config: BertConfig; model: BertModel; initDir: string; save: (name: string) => Promise<string>;
}> {
  await selectBackend("wasm");
  const config = bertConfig({ hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 32 }, 40, {
    maxPositionEmbeddings: 16, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0, ...(decoder ? { isDecoder: true } : {}),
  });
  const vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ...Array.from({ length: config.vocabSize - 5 }, (_, i) => `w${i}`)];
  const model = BertModel.create(config, seed);
  const save = async (name: string): Promise<string> => {
    const dir = path.join(root, name);
    await saveCheckpoint(dir, { config, tensors: exportHfTensors(model), vocab, padTokenId: 0, lowercase: true });
    return dir;
  };
  return { config, model, initDir: await save("init"), save };
}

/**
 * Runs the torch reference from `initDir` over `batches` (one global batch per step) and compares with `finalDir`.
 * `labelsOf` gives the labels as HF takes them (default: the MLM labels, which are HF's already).
 */
function runReference(
  py: string, root: string, initDir: string, finalDir: string, optimizer: OptimizerSettings,
  schedule: { kind: string; warmup_steps: number; total_steps: number; min_lr_ratio: number }, batches: readonly Batch[],
  labelsOf: (b: Batch) => Int32Array = (b) => b.mlmLabels,
): ReferenceResult {
  const input = path.join(root, "reference-input.json");
  const rows = (batch: Batch, values: Int32Array): number[][] =>
    Array.from({ length: batch.batchSize }, (_, b) => Array.from(values.subarray(b * batch.seqLen, (b + 1) * batch.seqLen)));
  fs.writeFileSync(input, JSON.stringify({
    optimizer,
    schedule,
    // next_sentence_label makes the reference HF's BertForPreTraining
    steps: batches.map((b) => ({
      input_ids: rows(b, b.inputIds), token_type_ids: rows(b, b.tokenTypeIds), attention_mask: rows(b, b.attentionMask), labels: rows(b, labelsOf(b)),
      ...(b.nspLabels !== undefined ? { next_sentence_label: Array.from(b.nspLabels) } : {}),
    })),
  }));
  const ref = spawnSync(py, [path.join(repoRoot(), "test", "helpers", "torch_pretrain_reference.py"), initDir, input, finalDir], { encoding: "utf8", timeout: 120_000 });
  assert.equal(ref.status, 0, `torch_pretrain_reference.py failed:\n${ref.stderr}`);
  return JSON.parse(ref.stdout) as ReferenceResult;
}

/**
 * Asserts that ringtrain's per-step figures and final parameters match the reference (see TOLERANCE) and that its
 * decay flags are HF Trainer's groups; returns the measured differences, a line per step and one for the parameters.
 */
function compareWithReference(got: ReferenceResult, figures: readonly StepFigures[], specs: readonly ParamSpec[]): string[] {
  assert.equal(figures.length, got.steps.length, "one reference step per ringtrain step");
  const lines = figures.map((f, i) => {
    const want = got.steps[i];
    // BertForPreTraining's loss is the sum of the two means; ringtrain reports each mean.
    const wantLm = want.mlm_loss ?? want.loss;
    // The loss is a float32 sum over a few hundred targets, the norm one over every gradient: ~1e-7 relative apart.
    assert.ok(Math.abs(f.loss - wantLm) <= 1e-5 * wantLm, `step ${i + 1}: loss ${f.loss}, torch ${wantLm}`);
    assert.ok(Math.abs(f.gradNorm - want.grad_norm) <= 1e-4 * want.grad_norm, `step ${i + 1}: grad_norm ${f.gradNorm}, torch ${want.grad_norm}`);
    assert.ok(Math.abs(f.lr - want.lr) <= 1e-12, `step ${i + 1}: learning rate ${f.lr}, torch ${want.lr}`);
    assert.equal(f.nspLoss !== undefined, want.nsp_loss !== undefined, `step ${i + 1}: an NSP loss on both sides or neither`);
    if (f.nspLoss !== undefined && want.nsp_loss !== undefined) {
      assert.ok(Math.abs(f.nspLoss - want.nsp_loss) <= 1e-5 * want.nsp_loss, `step ${i + 1}: NSP loss ${f.nspLoss}, torch ${want.nsp_loss}`);
    }
    const nsp = f.nspLoss === undefined ? "" : `, NSP loss ${f.nspLoss} vs ${want.nsp_loss}`;
    return `step ${i + 1}: loss ${f.loss} vs torch ${wantLm}${nsp}, grad_norm ${f.gradNorm} vs ${want.grad_norm}, lr ${f.lr} vs ${want.lr}`;
  });

  const trained = specs.filter((s) => !(s.name in got.not_in_model));
  assert.equal(Object.keys(got.params).length, trained.length, "every trained parameter was compared");
  let worst = { name: "", diff: 0, allowed: 1 };
  let moved = 0;
  for (const [name, p] of Object.entries(got.params)) {
    const allowed = TOLERANCE * Math.max(1, p.max_abs);
    if (p.max_abs_diff / allowed > worst.diff / worst.allowed) worst = { name, diff: p.max_abs_diff, allowed };
    moved = Math.max(moved, p.max_abs_change);
  }
  assert.ok(worst.diff <= worst.allowed, `${worst.name}: ringtrain and torch differ by ${worst.diff} after ${figures.length} steps (allowed ${worst.allowed})`);
  assert.ok(moved > 100 * TOLERANCE, `training moved the parameters far more than the tolerance (by up to ${moved})`);
  // A wrong group shows above as a parameter difference; this names it.
  assert.deepEqual(trained.filter((s) => s.decay).map((s) => s.name).sort(), got.decay, "parameters with weight decay: ringtrain vs HF Trainer");
  assert.deepEqual(trained.filter((s) => !s.decay).map((s) => s.name).sort(), got.no_decay, "parameters without weight decay: ringtrain vs HF Trainer");
  // BertForMaskedLM has no pooler; ringtrain's model carries one that MLM never trains: it must be unchanged
  // (BertForPreTraining has one: nothing is left out then).
  for (const [name, change] of Object.entries(got.not_in_model)) {
    assert.match(name, /^bert\.pooler\./);
    assert.equal(change, 0, `${name} changed although no loss reaches it`);
  }
  return [...lines, `largest parameter difference: ${worst.name} ${worst.diff} (allowed ${worst.allowed}); largest change over the run ${moved}`];
}
