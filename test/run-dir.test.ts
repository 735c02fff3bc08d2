/**
 * What `launch` does with the run directory and with bad input before anything trains: a second run does not
 * silently mix into a previous one, a resume cannot change the model (nor a fine-tune's method and its settings),
 * fine-tuning cannot write over its base model,
 * and bad data or world flags exit 2 with one line naming the problem (no stack trace, nothing written).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { EXIT_CONFIG, EXIT_OK } from "../shared/exit-codes";
import { gpuOf, previousRunIn } from "../launch/train";
import { orderLabels } from "../shared/finetune/prepare";
import { classificationMetrics, formatClassificationReport } from "../shared/train/classification-metrics";
import { repoRoot } from "../shared/paths";
import { runLaunch, tempDir, tinyArgs, TEST_CACHE_DIR } from "./helpers/launch";

const FINETUNE = path.join(repoRoot(), "test", "fixtures", "tiny-finetune.yaml");
const lines = (file: string): number => fs.readFileSync(file, "utf8").trim().split("\n").length;

test("a second run into a run directory is refused (exit 2, nothing touched); --overwrite replaces it; a resume keeps the model", { timeout: 240_000 }, async () => {
  const dir = tempDir("rundir");
  const run = path.join(dir, "run");
  const first = await runLaunch(tinyArgs(run, "--workers", "1", "--max-steps", "3"));
  assert.equal(first.code, EXIT_OK, first.stderr);
  const configBefore = fs.readFileSync(path.join(run, "config.yaml"), "utf8");
  assert.match(previousRunIn(run) ?? "", /checkpoint/);

  const again = await runLaunch(tinyArgs(run, "--workers", "1", "--max-steps", "2", "--seed", "7"));
  assert.equal(again.code, EXIT_CONFIG, again.stderr);
  assert.match(again.stderr, /field output_dir: .* already holds a run .*--resume .*--overwrite/);
  assert.equal(lines(path.join(run, "metrics.jsonl")), 3, "the refused run must not append metrics");
  assert.equal(fs.readFileSync(path.join(run, "config.yaml"), "utf8"), configBefore);

  // a resume may not change the model (it would fail after starting workers, and rewrite config.yaml)
  const reshape = await runLaunch(["--resume", run, "--max-steps", "5", "--set", "model.hidden_size=64", "--quiet"]);
  assert.equal(reshape.code, EXIT_CONFIG, reshape.stderr);
  assert.match(reshape.stderr, /--resume .*field model differs/);
  assert.equal(fs.readFileSync(path.join(run, "config.yaml"), "utf8"), configBefore);

  const moved = await runLaunch(["--resume", run, "--max-steps", "5", "--output", path.join(dir, "elsewhere"), "--quiet"]);
  assert.equal(moved.code, EXIT_CONFIG, moved.stderr);
  assert.match(moved.stderr, /--output .* cannot move it/);

  const replaced = await runLaunch(tinyArgs(run, "--workers", "1", "--max-steps", "2", "--seed", "7", "--overwrite"));
  assert.equal(replaced.code, EXIT_OK, replaced.stderr);
  assert.equal(lines(path.join(run, "metrics.jsonl")), 2, "the old run's metrics are gone");
  assert.deepEqual(fs.readdirSync(path.join(run, "checkpoints")).filter((n) => n.startsWith("step-")), ["step-000002"]);
  assert.match(fs.readFileSync(path.join(run, "config.yaml"), "utf8"), /seed: 7/);

  // fine-tuning into the base model's own run directory would overwrite it
  const ftArgs = (out: string, ...extra: string[]): string[] => [FINETUNE, "--output", out, "--set", `finetune.base_model=${run}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", "--workers", "1", "--max-steps", "1", ...extra];
  const intoBase = await runLaunch(ftArgs(run));
  assert.equal(intoBase.code, EXIT_CONFIG, intoBase.stderr);
  assert.match(intoBase.stderr, /field output_dir: .* holds finetune\.base_model/);
  const ft = path.join(dir, "ft");
  const finetune = await runLaunch(ftArgs(ft, "--set", "training.checkpoint_interval_steps=1"));
  assert.equal(finetune.code, EXIT_OK, finetune.stderr);
  // a resumed fine-tune keeps its method and settings (another LoRA rank is another model)
  const reshapeFt = await runLaunch(["--resume", ft, "--max-steps", "2", "--set", "finetune.lora.r=8", "--quiet"]);
  assert.equal(reshapeFt.code, EXIT_CONFIG, reshapeFt.stderr);
  assert.match(reshapeFt.stderr, /--resume .*field finetune differs from the run's config\.yaml/);
  const resumeFt = await runLaunch(["--resume", ft, "--max-steps", "2", "--quiet"]);
  assert.equal(resumeFt.code, EXIT_OK, resumeFt.stderr);
  // the fixture trains a LoRA adapter: as a base model it is refused by name, not with a manifest error
  const adapterAsBase = await runLaunch([FINETUNE, "--output", path.join(dir, "ft2"), "--set", `finetune.base_model=${ft}`, "--quiet", "--dry-run"]);
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(adapterAsBase.code, EXIT_CONFIG, adapterAsBase.stderr);
  assert.match(adapterAsBase.stderr, /is an adapter run \(adapter_config\.json\), not a model/);
});

test("bad data and bad world flags exit 2 with one line naming the problem, before anything is written", { timeout: 120_000 }, async () => {
  const dir = tempDir("badinput");
  const bad = path.join(dir, "notext.jsonl");
  fs.writeFileSync(bad, '{"body": "no text field here"}\n');
  const run = path.join(dir, "run");
  const r = await runLaunch(tinyArgs(run, "--workers", "1", "--max-steps", "2", "--set", "data.corpus=files", "--set", `data.paths=[${bad}]`));
  assert.equal(r.code, EXIT_CONFIG, r.stderr);
  assert.match(r.stderr, /notext\.jsonl:1: field "text"/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace for bad input");
  assert.equal(fs.existsSync(path.join(run, "config.yaml")), false, "a run that cannot start writes no config.yaml");

  for (const [flags, why] of [
    [["--workers", "1.5"], /--workers must be an integer >= 1 \(got 1\.5\)/],
    [["--workers", "1", "--workers", "2"], /--workers .*given 2 times/],
    [["--workers", "1", "--node-rank", "-1"], /--node-rank must be an integer >= 0/],
  ] as const) {
    const w = await runLaunch(tinyArgs(path.join(dir, "w"), "--max-steps", "2", ...flags));
    assert.equal(w.code, EXIT_CONFIG, `${flags.join(" ")}: ${w.stderr}`);
    assert.match(w.stderr, why);
  }
  // fill-mask and predict: bad values are arguments errors too (exit 2, no stack)
  for (const [args, why] of [
    [["fill-mask", "--model", dir, "--top-k", "0", "a [MASK] b"], /--top-k must be an integer >= 1 \(got 0\)/],
    [["predict", "--model", dir, "--batch-size", "abc", bad], /--batch-size must be an integer >= 1 \(got 'abc'\)/],
    [["predict", "--model", dir, "--backend", "gpu", bad], /Invalid values:[\s\S]*backend/],
    [["predict", "--model", run, bad], /predict: /],
  ] as const) {
    const c = await runLaunch([...args]);
    assert.equal(c.code, EXIT_CONFIG, `${args.join(" ")}: ${c.stderr}`);
    assert.match(c.stderr, why);
    assert.doesNotMatch(c.stderr, /\n\s+at /, `${args.join(" ")}: no stack trace`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--gpus keeps an inherited CUDA_VISIBLE_DEVICES mask, as torchrun does", () => {
  assert.equal(gpuOf(1, 2, undefined), "1");
  assert.equal(gpuOf(0, 2, "2,3"), "2");
  assert.equal(gpuOf(1, 2, " 2, 3 "), "3");
  assert.equal(gpuOf(1, 2, "GPU-a,GPU-b"), "GPU-b");
  assert.throws(() => gpuOf(0, 2, "3"), /CUDA_VISIBLE_DEVICES=3 makes only 1 GPU/);
});

test("numeric labels are ordered by value; macro-F1 averages over the classes present, as sklearn", () => {
  assert.deepEqual(orderLabels(["10", "2", "0", "1", "11"]), ["0", "1", "2", "10", "11"]);
  assert.deepEqual(orderLabels(["spam", "ham"]), ["ham", "spam"]);
  assert.deepEqual(orderLabels(["1", "b", "10"]), ["1", "10", "b"]);
  // true a,a,b,b predicted a,b,b,b; c never occurs: sklearn f1_score(average="macro") = (2/3 + 4/5) / 2
  const m = classificationMetrics([1, 1, 0, 0, 2, 0, 0, 0, 0], ["a", "b", "c"]);
  assert.ok(Math.abs(m.macro_f1 - (2 / 3 + 4 / 5) / 2) < 1e-12, String(m.macro_f1));
  // a class only ever predicted counts (precision 0)
  const p = classificationMetrics([1, 0, 1, 0, 1, 0, 0, 0, 0], ["a", "b", "c"]);
  assert.ok(Math.abs(p.macro_f1 - (2 / 3 + 1 + 0) / 3) < 1e-12, String(p.macro_f1));
});

test("the confusion matrix of the report keeps every count under its class, also for class names longer than 8 characters", () => {
  const labels = ["adventure", "belles_lettres", "news"];
  const report = formatClassificationReport(classificationMetrics([5, 1, 0, 2, 12345, 0, 0, 3, 7], labels), "test");
  const lines = report.split("\n");
  const header = lines[lines.findIndex((l) => l.includes("confusion")) + 1];
  const rows = lines.slice(-labels.length);
  // the right edge of each column name must be the right edge of each count below it
  const headerEnds = labels.map((l) => header.indexOf(l) + l.length);
  for (const row of rows) {
    const countEnds = [...row.matchAll(/\d+/g)].map((m) => m.index + m[0].length);
    assert.deepEqual(countEnds, headerEnds, `${header}\n${row}`);
  }
});

test("an output_dir or data.cache_dir that cannot be created (under /proc) exits 2 naming it, instead of spinning in mkdir", { timeout: 60_000 }, async () => {
  const out = await runLaunch(tinyArgs("/proc/ringtrain-no/run", "--workers", "1"));
  assert.equal(out.code, 2, out.stderr);
  assert.match(out.stderr, /field output_dir: cannot create \/proc\/ringtrain-no\/run: ENOENT/);
  const dir = tempDir("cache-proc");
  const cache = await runLaunch([...tinyArgs(path.join(dir, "run"), "--workers", "1"), "--set", "data.cache_dir=/proc/ringtrain-no/cache"]);
  assert.equal(cache.code, 2, cache.stderr);
  assert.match(cache.stderr, /cache_dir \/proc\/ringtrain-no\/cache cannot be created: ENOENT/);
  fs.rmSync(dir, { recursive: true, force: true });
});
