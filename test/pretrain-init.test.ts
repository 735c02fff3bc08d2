/**
 * Continued / domain-adaptive pretraining: `model.init_from` starts a pretraining run from another run's weights
 * and vocabulary (fresh optimizer), and `data.holdout` leaves a classification run's test documents out of the
 * pretraining corpus. Real `launch` runs with a coordinator and workers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { finalParams, maxAbsDiff, runLaunch, tempDir, tinyArgs } from "./helpers/launch";
import { runConfigSchema } from "../shared/config/schema";
import { pretrainingDocuments, loadRunDocuments } from "../shared/pipeline/prepare";
import { testSplit } from "../shared/data/test-split";

test("model.init_from starts from the base run's weights and vocabulary; a fresh run does not", async () => {
  const dir = tempDir("init");
  const base = path.join(dir, "base");
  const r0 = await runLaunch(tinyArgs(base, "--workers", "1", "--max-steps", "2"));
  assert.equal(r0.code, 0, r0.stderr);

  // lr 1e-9: one AdamW step moves every weight by ~1e-9, so the result must equal the base's weights.
  const tiny = ["--max-steps", "1", "--set", "optimizer.lr=1e-9", "--set", "data.holdout.split_seed=3"];
  const cont = path.join(dir, "cont");
  const r1 = await runLaunch(tinyArgs(cont, "--workers", "2", ...tiny, "--set", `model.init_from=${base}`).filter((a) => a !== "--quiet"));
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stderr, /model\.init_from: starting from the weights and vocabulary of .*step-000002/);
  assert.equal(fs.readFileSync(path.join(cont, "vocab.txt"), "utf8"), fs.readFileSync(path.join(base, "vocab.txt"), "utf8"));
  const diffInit = maxAbsDiff(await finalParams(base), await finalParams(cont));
  assert.ok(diffInit < 1e-6, `initialised run moved ${diffInit} away from the base`);

  const fresh = path.join(dir, "fresh");
  const r2 = await runLaunch(tinyArgs(fresh, "--workers", "1", ...tiny));
  assert.equal(r2.code, 0, r2.stderr);
  const diffFresh = maxAbsDiff(await finalParams(base), await finalParams(fresh));
  assert.ok(diffFresh > 1e-3, `a run without init_from should not equal the base (diff ${diffFresh})`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("model.init_from that does not fit the model section, or does not exist, stops launch with exit 2", async () => {
  const dir = tempDir("init-bad");
  const base = path.join(dir, "base");
  const r0 = await runLaunch(tinyArgs(base, "--workers", "1", "--max-steps", "1"));
  assert.equal(r0.code, 0, r0.stderr);
  const wrongShape = await runLaunch(tinyArgs(path.join(dir, "a"), "--set", "model.hidden_size=64", "--set", `model.init_from=${base}`));
  assert.equal(wrongShape.code, 2, wrongShape.stderr);
  assert.match(wrongShape.stderr, /field model\.init_from: .*hiddenSize 32 in the checkpoint, 64 in the config/);
  assert.equal(fs.existsSync(path.join(dir, "a")), false, "nothing was started or written");
  const missing = await runLaunch(tinyArgs(path.join(dir, "b"), "--set", `model.init_from=${path.join(dir, "nope")}`));
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /field model\.init_from: not found: .*nope/);
  const withVocab = await runLaunch(tinyArgs(path.join(dir, "c"), "--set", `model.init_from=${base}`, "--set", `tokenizer.vocab_file=${path.join(base, "vocab.txt")}`));
  assert.equal(withVocab.code, 2, withVocab.stderr);
  assert.match(withVocab.stderr, /field tokenizer\.vocab_file: model\.init_from takes the vocabulary of its checkpoint/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("data.holdout leaves out exactly the classification test split of the corpus", () => {
  const cfg = runConfigSchema.parse({
    model: { preset: "bert-tiny" }, training: { max_steps: 1 }, batch: { global_batch_size: 8, micro_batch_size: 8 },
    data: { corpus: "spam-assassin", holdout: { split_seed: 1234, test_fraction: 0.2 } },
  });
  const all = loadRunDocuments(cfg);
  const kept = pretrainingDocuments(cfg);
  const held = testSplit(all, { by: "label", splitSeed: 1234, testFraction: 0.2 }).validation;
  const keptIds = new Set(kept.map((d) => d.id));
  assert.equal(kept.length + held.length, all.length);
  for (const d of held) assert.ok(!keptIds.has(d.id), `test document ${d.id} is in the pretraining corpus`);
  const share = held.length / all.length;
  assert.ok(Math.abs(share - 0.2) < 0.01, `held-out share ${share}`);
  // A different split seed holds out different messages.
  const other = new Set(testSplit(all, { by: "label", splitSeed: 99, testFraction: 0.2 }).validation.map((d) => d.id));
  assert.ok(held.some((d) => !other.has(d.id)));
  assert.equal(pretrainingDocuments(runConfigSchema.parse({ model: { preset: "bert-tiny" }, training: { max_steps: 1 }, batch: { global_batch_size: 8, micro_batch_size: 8 }, data: { corpus: "spam-assassin" } })).length, all.length);
});

test("data.holdout is refused for classification runs", () => {
  const r = runConfigSchema.safeParse({ task: "classification", finetune: { base_model: "x" }, training: { max_steps: 1 }, batch: { global_batch_size: 8, micro_batch_size: 8 }, data: { holdout: {} } });
  assert.equal(r.success, false);
  assert.match(JSON.stringify(r.error?.issues), /only used with task: pretrain/);
});
