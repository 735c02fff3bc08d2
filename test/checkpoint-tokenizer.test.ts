/**
 * What a checkpoint says about its tokenizer and objective, and who listens: tokenizer_config.json records the
 * casing (HF's do_lower_case); fill-mask, fine-tuning and model.init_from follow it; fill-mask refuses a causal
 * model; progress lines name the accuracy an evaluation measured; settings of an unused PEFT method are flagged.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { loadCheckpoint, TOKENIZER_CONFIG_FILE } from "../shared/checkpoint/checkpoint";
import { listCheckpoints } from "../shared/checkpoint/run-checkpoints";
import { readManifest } from "../shared/checkpoint/manifest";
import { configWarnings, loadRunConfig } from "../shared/config/load";
import { repoRoot } from "../shared/paths";
import { ProgressReporter } from "../launch/progress";
import type { StepMetrics } from "../coordinator/metrics";
import { runLaunch, tempDir, tinyArgs, TEST_CACHE_DIR } from "./helpers/launch";

const FT_CONFIG = path.join(repoRoot(), "test", "fixtures", "tiny-finetune.yaml");
let root = "";
let cased = "";

before(async () => {
  root = tempDir("tokcfg");
  cased = path.join(root, "cased");
  const r = await runLaunch(tinyArgs(cased, "--workers", "1", "--max-steps", "2", "--set", "tokenizer.lowercase=false"));
  assert.equal(r.code, 0, r.stderr);
});

after(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true });
});

async function newestCheckpoint(runDir: string): Promise<string> {
  const list = await listCheckpoints(runDir);
  return list[list.length - 1].dir;
}

test("a checkpoint records its casing in tokenizer_config.json (HF do_lower_case), verified by the manifest", async () => {
  const dir = await newestCheckpoint(cased);
  const file = JSON.parse(fs.readFileSync(path.join(dir, TOKENIZER_CONFIG_FILE), "utf8")) as Record<string, unknown>;
  assert.equal(file.do_lower_case, false);
  assert.equal(file.tokenizer_class, "BertTokenizer");
  assert.equal(file.model_max_length, 64);
  assert.ok(TOKENIZER_CONFIG_FILE in (await readManifest(dir)).files, "listed in checkpoint.json, so it is verified on load");
  assert.equal((await loadCheckpoint(dir)).lowercase, false);
  // a tampered file is caught by the manifest's hash, naming the file
  const copy = path.join(root, "tampered");
  fs.cpSync(dir, copy, { recursive: true });
  fs.writeFileSync(path.join(copy, TOKENIZER_CONFIG_FILE), JSON.stringify({ ...file, do_lower_case: true }));
  await assert.rejects(loadCheckpoint(copy), new RegExp(TOKENIZER_CONFIG_FILE));
});

test("fill-mask, fine-tuning and init_from follow the checkpoint's casing", async () => {
  const ok = await runLaunch(["fill-mask", "--model", cased, "--json", "The jury said the [MASK] was fair ."]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.doesNotMatch(ok.stderr, /warning/);
  const against = await runLaunch(["fill-mask", "--model", cased, "--no-cased", "--json", "The [MASK] was fair ."]);
  assert.equal(against.code, 0, against.stderr);
  assert.match(against.stderr, /warning: --no-cased, but .* was trained cased/);

  // the fine-tuning config says nothing about casing (default lowercase true): the base model's casing wins, with a note
  const ft = await runLaunch([FT_CONFIG, "--output", path.join(root, "ft"), "--set", `finetune.base_model=${cased}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--dry-run"]);
  assert.equal(ft.code, 0, ft.stderr);
  assert.match(ft.stderr, /note: tokenizer\.lowercase is false, as .* was trained/);
  assert.equal((JSON.parse(ft.stdout) as { config: { tokenizer: { lowercase: boolean } } }).config.tokenizer.lowercase, false);

  const init = await runLaunch(tinyArgs(path.join(root, "init"), "--set", `model.init_from=${cased}`, "--dry-run"));
  assert.equal(init.code, 0, init.stderr);
  assert.equal((JSON.parse(init.stdout) as { config: { tokenizer: { lowercase: boolean } } }).config.tokenizer.lowercase, false);
});

test("fill-mask refuses a causal model (exit 2, naming it), and its evaluations say next-token accuracy", async () => {
  const dir = path.join(root, "causal");
  const r = await runLaunch(tinyArgs(dir, "--workers", "1", "--max-steps", "1", "--set", "objective=causal"));
  assert.equal(r.code, 0, r.stderr);
  const fm = await runLaunch(["fill-mask", "--model", dir, "a [MASK] b"]);
  assert.equal(fm.code, 2, fm.stderr);
  assert.match(fm.stderr, /causal language model .* fill-mask needs a masked-LM checkpoint/);
  assert.doesNotMatch(fm.stderr, /\n\s+at /, "one line, no stack trace");

  const step: StepMetrics = {
    step: 1, epoch: 0.1, loss: 5, tokens: 100, step_ms: 10, tokens_per_s: 1e4, mfu: 0.1, grad_norm: 1, per_rank: [],
    eval: { loss: 4, perplexity: Math.exp(4), accuracy: 0.25, sequences: 8 },
  };
  const causal = new ProgressReporter(1, 0, false, 1, "next-token accuracy");
  causal.update(step);
  assert.match(causal.summary(), /perplexity 54\.6, next-token accuracy 25\.0%/);
  const mlm = new ProgressReporter(1, 0, false);
  mlm.update(step);
  assert.match(mlm.summary(), /masked-token accuracy 25\.0%/);
});

test("settings of a fine-tuning method other than the chosen one are flagged as ignored", () => {
  const file = FT_CONFIG;
  const cfg = loadRunConfig(file, { set: [`finetune.base_model=${cased}`, "finetune.method=adapter", "finetune.lora.r=16"] });
  const warnings = configWarnings(cfg, file);
  assert.ok(warnings.some((w) => /finetune\.lora is set but finetune\.method is adapter: those settings are ignored/.test(w)), warnings.join("\n"));
  assert.ok(!warnings.some((w) => /finetune\.adapter/.test(w)), "the chosen method's own settings are not flagged");
  const plain = loadRunConfig(file, { set: [`finetune.base_model=${cased}`, "finetune.method=lora", "finetune.lora.r=16"] });
  assert.deepEqual(configWarnings(plain, file).filter((w) => /finetune\./.test(w)), []);
});
