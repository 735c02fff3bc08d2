/**
 * Fine-tuning through the real product: `launch` pretrains a tiny base, then fine-tunes it with real worker
 * processes whose gradients (of the trainable parameters only) meet in the gRPC ring; `launch predict` then
 * classifies with the saved adapter and refuses a different base model.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, tensorToFloat32 } from "../shared/checkpoint/safetensors";
import { listCheckpoints } from "../shared/checkpoint/run-checkpoints";
import { repoRoot } from "../shared/paths";
import { runLaunch, startLaunch, tempDir, tinyArgs, TEST_CACHE_DIR } from "./helpers/launch";

const FT_CONFIG = path.join(repoRoot(), "test", "fixtures", "tiny-finetune.yaml");
let root = "";
let base = "";

before(async () => {
  root = tempDir("ft");
  base = path.join(root, "base");
  const r = await runLaunch(tinyArgs(base, "--workers", "1", "--max-steps", "3"));
  assert.equal(r.code, 0, `pretraining the base failed:\n${r.stderr}`);
});

after(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true });
});

function ftArgs(out: string, ...extra: string[]): string[] {
  return [FT_CONFIG, "--output", out, "--set", `finetune.base_model=${base}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", ...extra];
}

async function adapterTensors(runDir: string): Promise<Map<string, Float32Array>> {
  const list = await listCheckpoints(runDir);
  const last = list[list.length - 1];
  const file = await readSafetensors(path.join(last.dir, "adapter_model.safetensors"));
  return new Map([...file.tensors].map(([k, t]) => [k, tensorToFloat32(t, k)]));
}

interface Metrics {
  step: number;
  loss: number;
  allreduce_bytes?: number;
  classification?: { test?: { examples: number; accuracy: number; macro_f1: number; confusion: number[][]; labels: string[] } };
  eval?: { loss: number; accuracy: number; macro_f1?: number; perplexity?: number };
}

test("a 2-worker LoRA fine-tune equals a 1-worker one with the same global batch; only trainable tensors travel", async () => {
  const one = path.join(root, "ft1");
  const two = path.join(root, "ft2");
  const r1 = await runLaunch(ftArgs(one, "--workers", "1"));
  assert.equal(r1.code, 0, r1.stderr);
  const r2 = await runLaunch(ftArgs(two, "--workers", "2"));
  assert.equal(r2.code, 0, r2.stderr);
  const [a, b] = [await adapterTensors(one), await adapterTensors(two)];
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  // LoRA with [CLS] pooling is saved in HF PEFT's layout: tensor names start with PEFT's base_model.model.
  assert.ok(a.has("base_model.model.classifier.weight") && a.has("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"));
  assert.ok(![...a.keys()].some((k) => k.endsWith("bert.embeddings.word_embeddings.weight")), "frozen base weights are not saved");
  let worst = 0;
  let moved = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
    if (k.includes("lora_B")) moved = Math.max(moved, ...Array.from(x, Math.abs));
  }
  assert.ok(worst < 2e-5, `1 vs 2 workers differ by ${worst}`);
  assert.ok(moved > 1e-4, "LoRA B moved away from zero (training happened)");

  // The run log names the trainable share and the bytes all-reduced; metrics.jsonl records the measured bytes.
  const log0 = fs.readFileSync(path.join(two, "logs", "rank-0.log"), "utf8");
  const m = /trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)/.exec(log0);
  assert.ok(m, `rank log lacks the parameter line:\n${log0}`);
  const trainable = Number(m[1].replace(/,/g, ""));
  const all = Number(m[2].replace(/,/g, ""));
  assert.ok(trainable < all / 4, `LoRA trains a small share (${trainable} of ${all})`);
  assert.match(log0, /all-reduced per step: \d+ bytes/);
  const lines = fs.readFileSync(path.join(two, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Metrics);
  assert.deepEqual(lines.map((l) => l.step), [1, 2, 3]);
  for (const l of lines) assert.equal(l.allreduce_bytes, 4 * trainable + 16, "exactly the trainable gradients (+ 4 counters) are all-reduced");
  // a classifier's evaluation reports accuracy and macro-F1, not a language model's perplexity
  const ev = lines[2].eval;
  assert.ok(ev !== undefined && Number.isFinite(ev.loss) && ev.macro_f1 !== undefined, JSON.stringify(lines[2]));
  assert.equal("perplexity" in ev, false, JSON.stringify(ev));

  // Test metrics: sharded over the 2 ranks, summed by the coordinator, written to the run directory and printed.
  const last = lines[lines.length - 1];
  const t = last.classification?.test;
  assert.ok(t !== undefined, "the last step carries test metrics");
  assert.deepEqual(t.labels, ["fiction", "hobbies", "news"]);
  const saved = JSON.parse(fs.readFileSync(path.join(two, "classification_metrics.json"), "utf8")) as { test: { examples: number } };
  assert.equal(saved.test.examples, t.examples);
  assert.equal(t.confusion.flat().reduce((x, y) => x + y, 0), t.examples);
  assert.equal(t.examples, 60, "25% of 240 labelled examples are the test split");
  assert.match(r2.stdout, /test \(step 3\): 60 examples, accuracy [\d.]+%, macro-F1 [\d.]+%/);

  // predict with the adapter: one line per example of the file, and the accuracy on its labels.
  const ckpt = (await listCheckpoints(two)).pop()!.dir;
  const input = path.join(repoRoot(), "test", "fixtures", "data", "labelled-pairs.jsonl");
  const p = await runLaunch(["predict", "--model", base, "--adapter", ckpt, input, "--backend", "wasm", "--output", path.join(root, "pred.jsonl")]);
  assert.equal(p.code, 0, p.stderr);
  assert.equal(p.stdout.trim().split("\n").filter((l) => /\t(news|fiction|hobbies)\t/.test(l)).length, 240);
  assert.match(p.stdout, /accuracy on the 240 labelled examples: [\d.]+%/);
  assert.equal(fs.readFileSync(path.join(root, "pred.jsonl"), "utf8").trim().split("\n").length, 240);

  // predict refuses the adapter on another base model.
  const otherBase = path.join(root, "other-base");
  const o = await runLaunch(tinyArgs(otherBase, "--workers", "1", "--max-steps", "1"));
  assert.equal(o.code, 0, o.stderr);
  const bad = await runLaunch(["predict", "--model", otherBase, "--adapter", ckpt, input, "--backend", "wasm"]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /was trained on base model .* refusing to load it onto a different base model/);
});

test("a bad finetune field in the YAML stops launch before anything starts, naming file and field", async () => {
  const dir = tempDir("ftbad");
  const file = path.join(dir, "bad-ft.yaml");
  fs.writeFileSync(file, fs.readFileSync(FT_CONFIG, "utf8").replace("    r: 4", "    rank: 4").replace("data/labelled-pairs.jsonl", path.join(repoRoot(), "test", "fixtures", "data", "labelled-pairs.jsonl")));
  const r = await runLaunch([file, "--output", path.join(dir, "run"), "--set", `finetune.base_model=${base}`]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /bad-ft\.yaml: invalid config:\n {2}field finetune\.lora: unknown field 'rank'/);
  const missing = await runLaunch([FT_CONFIG, "--output", path.join(dir, "run"), "--set", `finetune.base_model=${path.join(dir, "nope")}`]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /tiny-finetune\.yaml: field finetune\.base_model: not found: .*nope/);
  assert.equal(fs.existsSync(path.join(dir, "run")), false, "nothing was started or written");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--max-restarts recovers a fine-tuning run whose worker is killed (it continues from its last checkpoint)", async () => {
  const out = path.join(root, "ft-restart");
  const run = startLaunch(ftArgs(out, "--workers", "2", "--max-restarts", "1", "--max-steps", "40", "--set", "training.eval_interval_steps=40", "--set", "training.checkpoint_interval_steps=5"));
  const metrics = path.join(out, "metrics.jsonl");
  const end = Date.now() + 60_000;
  while (!(fs.existsSync(metrics) && fs.readFileSync(metrics, "utf8").split("\n").filter((l) => l.endsWith("}")).length >= 6)) {
    assert.ok(Date.now() < end, `no progress:\n${run.stderrSoFar()}`);
    await new Promise((r) => setTimeout(r, 30));
  }
  const pid = Number(/\(pid (\d+)\)/.exec(fs.readFileSync(path.join(out, "logs", "rank-1.log"), "utf8"))![1]);
  process.kill(pid, "SIGKILL");
  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /restart 1\/1 with 2 worker\(s\) from the checkpoint of step \d+/);
  const steps = fs.readFileSync(metrics, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as Metrics).step);
  assert.equal(steps[steps.length - 1], 40);
});

test("--overwrite with a data error (a misspelt label_field) exits 2 and leaves the previous run as it was", async () => {
  const out = path.join(root, "ft-overwrite");
  fs.mkdirSync(path.join(out, "checkpoints", "step-000003"), { recursive: true });
  const previous = '{"step":3,"loss":0.5}\n';
  fs.writeFileSync(path.join(out, "metrics.jsonl"), previous);
  fs.writeFileSync(path.join(out, "config.yaml"), "name: earlier\n");
  const r = await runLaunch(ftArgs(out, "--workers", "1", "--overwrite", "--set", "data.label_field=lable"));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /tiny-finetune\.yaml: data: .*has no label \(field "lable", data\.label_field\)/);
  assert.doesNotMatch(r.stderr, /replacing the previous run/);
  assert.equal(fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8"), previous, "metrics.jsonl kept");
  assert.equal(fs.readFileSync(path.join(out, "config.yaml"), "utf8"), "name: earlier\n", "config.yaml kept");
  assert.ok(fs.existsSync(path.join(out, "checkpoints", "step-000003")), "checkpoints kept");
});

test("a finished fine-tune in output_dir is pointed to --resume (which continues it with more steps) or --overwrite", async () => {
  const out = path.join(root, "ft-again");
  const first = await runLaunch(ftArgs(out, "--workers", "1", "--max-steps", "1", "--set", "training.checkpoint_interval_steps=1"));
  assert.equal(first.code, 0, first.stderr);
  const again = await runLaunch(ftArgs(out, "--workers", "1", "--max-steps", "1"));
  assert.equal(again.code, 2, again.stderr);
  assert.match(again.stderr, /already holds a run .*continue it with launch --resume \S+, replace it with --overwrite/);
  const finished = await runLaunch(["--resume", out, "--workers", "1"]);
  assert.equal(finished.code, 2, finished.stderr);
  assert.match(finished.stderr, /checkpoint is at step 1, training\.max_steps is 1; raise it with --max-steps/);
  // the advice works as given
  const more = await runLaunch(["--resume", out, "--workers", "1", "--max-steps", "2", "--quiet"]);
  assert.equal(more.code, 0, more.stderr);
  assert.deepEqual(fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as Metrics).step), [1, 2]);
});

test("tokenizer settings in a fine-tuning config (another vocabulary than the base model's) are refused, not silently ignored", async () => {
  const dir = tempDir("ftvocab");
  const other = path.join(dir, "other-vocab.txt");
  fs.writeFileSync(other, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nfilm\n");
  const r = await runLaunch(ftArgs(path.join(dir, "run"), "--workers", "1", "--set", `tokenizer.vocab_file=${other}`, "--set", "tokenizer.vocab_size=30522"));
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /tiny-finetune\.yaml: invalid config:\n {2}field tokenizer\.vocab_file: task: classification uses the vocabulary of finetune\.base_model .*remove tokenizer\.vocab_file\n {2}field tokenizer\.vocab_size: .*remove tokenizer\.vocab_size/);
  assert.equal(fs.existsSync(path.join(dir, "run")), false, "nothing was started or written");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a base model that is not a ringtrain checkpoint is named for what it is: a file, a Hugging Face folder, a run whose checkpoint is corrupt", async () => {
  const dir = tempDir("ftnotckpt");
  const newest = (await listCheckpoints(base)).at(-1)!.dir;
  const hf = path.join(dir, "hf-bert");
  fs.mkdirSync(hf);
  for (const f of ["config.json", "model.safetensors", "vocab.txt"]) fs.copyFileSync(path.join(newest, f), path.join(hf, f));
  const corrupt = path.join(dir, "corrupt-run");
  fs.cpSync(base, corrupt, { recursive: true });
  const weights = path.join(corrupt, "checkpoints", path.basename(newest), "model.safetensors");
  const bytes = fs.readFileSync(weights);
  bytes[bytes.length - 1] ^= 0xff;
  fs.writeFileSync(weights, bytes);
  const cases: [string, RegExp][] = [
    [FT_CONFIG, /field finetune\.base_model: \S+tiny-finetune\.yaml: is a file, not a checkpoint directory or run directory/],
    [hf, /field finetune\.base_model: \S+hf-bert: looks like a Hugging Face model folder \(config\.json, model\.safetensors\) without ringtrain's checkpoint\.json/],
    [corrupt, /field finetune\.base_model: \S+corrupt-run: a run directory with no intact checkpoint: skipping checkpoint step \d+: \S+model\.safetensors: checksum mismatch/],
  ];
  for (const [given, expected] of cases) {
    const r = await runLaunch([FT_CONFIG, "--output", path.join(dir, "run"), "--set", `finetune.base_model=${given}`, "--workers", "1"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, expected);
    assert.doesNotMatch(r.stderr, /finetune\.base_model: finetune\.base_model/, "the field is named once");
  }
  const predicted = await runLaunch(["predict", "--model", hf, FT_CONFIG]);
  assert.equal(predicted.code, 2, predicted.stderr);
  assert.match(predicted.stderr, /--model \S+hf-bert: looks like a Hugging Face model folder/);
  // a fine-tune stopped before its first checkpoint: its run directory has metrics but nothing to load
  const stopped = path.join(dir, "stopped-ft");
  fs.mkdirSync(stopped);
  fs.writeFileSync(path.join(stopped, "metrics.jsonl"), '{"step":1,"loss":0.7}\n');
  const early = await runLaunch(["predict", "--model", base, "--adapter", stopped, FT_CONFIG]);
  assert.equal(early.code, 2, early.stderr);
  assert.match(early.stderr, /--adapter \S+stopped-ft: a run directory with no complete checkpoint yet: the run stopped before it saved one/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("--dry-run of a fine-tune reads its labelled data: a misspelt label_field fails there; a good config prints classes and split sizes", async () => {
  const dir = tempDir("ftdry");
  const bad = await runLaunch(ftArgs(path.join(dir, "run"), "--dry-run", "--workers", "2", "--set", "data.label_field=lable"));
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /tiny-finetune\.yaml: data: data\.paths: .*has no label \(field "lable", data\.label_field\)/);
  const ok = await runLaunch(ftArgs(path.join(dir, "run"), "--dry-run", "--workers", "2"));
  assert.equal(ok.code, 0, ok.stderr);
  const plan = JSON.parse(ok.stdout) as { data?: { labels: string[]; train: number; validation: number; test: number } };
  assert.ok(plan.data !== undefined && plan.data.labels.length >= 2 && plan.data.train > 0 && plan.data.test > 0, ok.stdout);
  assert.equal(fs.existsSync(path.join(dir, "run")), false, "a dry run writes nothing");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("the final report says when training.eval_sequences evaluated only a sample of the validation split", async () => {
  const out = path.join(root, "ft-sample");
  const r = await runLaunch(ftArgs(out, "--workers", "1", "--max-steps", "1", "--set", "training.eval_interval_steps=1", "--set", "training.eval_sequences=2"));
  assert.equal(r.code, 0, r.stderr);
  const log = fs.readFileSync(path.join(out, "logs", "rank-0.log"), "utf8");
  const total = Number(/(\d+) validation, \d+ test examples/.exec(log)?.[1] ?? NaN);
  assert.ok(total > 2, log);
  assert.match(r.stdout, /validation \(step 1\): 2 examples/);
  assert.match(r.stdout, new RegExp(`\\(a sample: 2 of the ${total} validation examples, as training\\.eval_sequences says; 0 evaluates them all\\)`));
  const whole = await runLaunch(ftArgs(path.join(root, "ft-whole"), "--workers", "1", "--max-steps", "1", "--set", "training.eval_interval_steps=1"));
  assert.equal(whole.code, 0, whole.stderr);
  assert.doesNotMatch(whole.stdout, /a sample/);
});

test("a decoder (objective causal) base is refused with CLS pooling or prefix/prompt tuning before anything starts; mean pooling is accepted", async () => {
  const dir = tempDir("ftcausal");
  const causal = path.join(dir, "causal");
  const pre = await runLaunch(tinyArgs(causal, "--workers", "1", "--max-steps", "1", "--set", "objective=causal"));
  assert.equal(pre.code, 0, pre.stderr);
  const withBase = (...extra: string[]): string[] => [FT_CONFIG, "--output", path.join(dir, "run"), "--set", `finetune.base_model=${causal}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--workers", "1", ...extra];
  const cls = await runLaunch(withBase());
  assert.equal(cls.code, 2, cls.stderr);
  assert.match(cls.stderr, /tiny-finetune\.yaml: field finetune\.pooling: cls reads the \[CLS\] position, which in a decoder base model .* set finetune\.pooling: mean/);
  const prompt = await runLaunch(withBase("--set", "finetune.method=prompt", "--set", "finetune.pooling=mean"));
  assert.equal(prompt.code, 2, prompt.stderr);
  assert.match(prompt.stderr, /field finetune\.method: prompt tuning is not supported on a decoder base model/);
  assert.equal(fs.existsSync(path.join(dir, "run")), false, "nothing was started or written");
  const mean = await runLaunch(withBase("--set", "finetune.pooling=mean", "--dry-run"));
  assert.equal(mean.code, 0, mean.stderr);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("predict --model RUN_DIR, after the base run trained on past the adapter's base, names the run's checkpoint that is that base", async () => {
  const dir = tempDir("ftmoved");
  const moving = path.join(dir, "base");
  fs.cpSync(base, moving, { recursive: true });
  const trainedOn = (await listCheckpoints(moving)).at(-1)!.dir;
  const ft = path.join(dir, "ft");
  const r = await runLaunch([FT_CONFIG, "--output", ft, "--set", `finetune.base_model=${moving}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", "--workers", "1", "--max-steps", "1"]);
  assert.equal(r.code, 0, r.stderr);
  // the base run goes on (as the README suggests for a better base): its newest checkpoint is another model now
  const more = await runLaunch(["--resume", moving, "--workers", "1", "--max-steps", "4", "--quiet"]);
  assert.equal(more.code, 0, more.stderr);
  const input = path.join(repoRoot(), "test", "fixtures", "data", "labelled-pairs.jsonl");
  const refused = await runLaunch(["predict", "--model", moving, "--adapter", ft, input]);
  assert.equal(refused.code, 2, refused.stderr);
  assert.ok(refused.stderr.includes(`but its ${path.basename(trainedOn)} is that base model: give --model ${trainedOn}`), refused.stderr);
  const ok = await runLaunch(["predict", "--model", trainedOn, "--adapter", ft, input]);
  assert.equal(ok.code, 0, ok.stderr);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("the data line says that the test split was drawn from data.paths (finetune.test_fraction), and not when data.test_paths gives it", async () => {
  const dir = tempDir("ftsplit");
  const common = [FT_CONFIG, "--output", path.join(dir, "run"), "--set", `finetune.base_model=${base}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--dry-run"];
  const drawn = await runLaunch(common);
  assert.equal(drawn.code, 0, drawn.stderr);
  assert.match(drawn.stderr, /test examples of 32 tokens \(the test split is finetune\.test_fraction 0\.25 of data\.paths; data\.test_paths names a test file instead\)/);
  const input = path.join(repoRoot(), "test", "fixtures", "data", "labelled-pairs.jsonl");
  const given = await runLaunch([...common, "--set", `data.test_paths=[${input}]`]);
  assert.equal(given.code, 0, given.stderr);
  assert.doesNotMatch(given.stderr, /the test split is finetune\.test_fraction/);
  fs.rmSync(dir, { recursive: true, force: true });
});
