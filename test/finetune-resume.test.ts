/**
 * Resuming fine-tunes through the real CLI: a fine-tune interrupted after a checkpoint (a worker hangs at a later
 * step, launch gets SIGINT) and continued with `launch --resume RUN_DIR` ends with the same checkpoint, every tensor
 * of it (exported weights, optimizer moments, parameters only the training state holds) and the same metrics.jsonl
 * step records as an uninterrupted run: full fine-tuning, LoRA, prefix tuning with its reparameterising MLP (trained,
 * but exported only as the prefixes it computes), LoRA with merge (factors folded into the exported weights),
 * adapters and a soft prompt. `--max-restarts` continues a fine-tune from its
 * checkpoint after a worker is killed. A checkpoint written before fine-tune checkpoints held a training state is
 * refused by --resume, naming it, started over by --auto-resume, and still loads for predict.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { readSafetensors, tensorToFloat32 } from "../shared/checkpoint/safetensors";
import { listCheckpoints } from "../shared/checkpoint/run-checkpoints";
import { readManifest, writeManifest } from "../shared/checkpoint/manifest";
import { repoRoot } from "../shared/paths";
import { runLaunch, startLaunch, tempDir, tinyArgs, waitFor, TEST_CACHE_DIR } from "./helpers/launch";

const FT_CONFIG = path.join(repoRoot(), "test", "fixtures", "tiny-finetune.yaml");
/** 8 steps, checkpoints every 2, evaluations every 4 (so one falls after the resume point), warmup then linear decay. */
const SCHEDULE = ["--max-steps", "8", "--set", "training.checkpoint_interval_steps=2", "--set", "training.eval_interval_steps=4", "--set", "schedule.warmup_steps=2"];
/** Step-record fields that depend on the clock, not on the training. */
const TIMING_FIELDS = new Set(["time", "step_ms", "tokens_per_s", "mfu", "per_rank"]);

let root = "";
let base = "";

before(async () => {
  root = tempDir("ftresume");
  base = path.join(root, "base");
  const r = await runLaunch(tinyArgs(base, "--workers", "1", "--max-steps", "3"));
  assert.equal(r.code, 0, `pretraining the base failed:\n${r.stderr}`);
});

after(() => {
  if (root !== "") fs.rmSync(root, { recursive: true, force: true });
});

/** A 2-worker fine-tune of the tiny base into `out`; `schedule` gives the steps, checkpoints and evaluations. */
function ftArgs(out: string, schedule: readonly string[], ...extra: string[]): string[] {
  return [FT_CONFIG, "--output", out, "--set", `finetune.base_model=${base}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", "--workers", "2", ...schedule, ...extra];
}

/** Every tensor of every .safetensors file of the run's newest checkpoint, as "file/tensor". */
async function checkpointTensors(runDir: string): Promise<Map<string, Float32Array>> {
  const last = (await listCheckpoints(runDir)).at(-1);
  assert.ok(last !== undefined, `${runDir} has no checkpoint`);
  const out = new Map<string, Float32Array>();
  for (const file of fs.readdirSync(last.dir).filter((f) => f.endsWith(".safetensors")).sort()) {
    const st = await readSafetensors(path.join(last.dir, file));
    for (const [k, t] of st.tensors) out.set(`${file}/${k}`, tensorToFloat32(t, k));
  }
  return out;
}

/** Largest absolute difference between two tensor sets, which must hold the same names and sizes. */
function maxDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  let worst = 0;
  for (const [k, x] of a) {
    const y = b.get(k)!;
    assert.equal(x.length, y.length, k);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  }
  return worst;
}

/** metrics.jsonl's step records without their timing fields (a checkpoint's directory by its name). */
function stepRecords(runDir: string): Record<string, unknown>[] {
  return fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((line) => {
    const record = JSON.parse(line) as Record<string, unknown>;
    for (const k of TIMING_FIELDS) delete record[k];
    if (typeof record.checkpoint_dir === "string") record.checkpoint_dir = path.basename(record.checkpoint_dir);
    return record;
  });
}

/**
 * Runs a fine-tune uninterrupted, and again interrupted: rank 1 hangs at step 6 (failpoint), launch gets SIGINT once
 * step 5 is recorded (so the newest checkpoint is step 4), then `launch --resume` finishes it. Returns both run dirs.
 */
async function interruptAndResume(name: string, ...extra: string[]): Promise<{ whole: string; cut: string; diff: number }> {
  const whole = path.join(root, `${name}-whole`);
  const w = await runLaunch(ftArgs(whole, SCHEDULE, ...extra));
  assert.equal(w.code, 0, w.stderr);

  const cut = path.join(root, `${name}-cut`);
  const run = startLaunch(ftArgs(cut, SCHEDULE, ...extra), { RINGTRAIN_TEST_HANG_AT: "1:6" });
  const metrics = path.join(cut, "metrics.jsonl");
  await waitFor(() => (fs.existsSync(metrics) && stepRecords(cut).some((r) => r.step === 5) ? true : undefined), 60_000, `step 5 of ${name}`);
  run.child.kill("SIGINT");
  const r = await run.done;
  assert.equal(r.code, 130, r.stderr);
  // an interrupted fine-tune is pointed to --resume, as a pretraining run is
  assert.match(r.stderr, /last complete checkpoint \(step 4, \S+\) is intact; resume with: launch --resume \S+ --workers 2/);
  assert.deepEqual((await listCheckpoints(cut)).map((c) => c.step).at(-1), 4);

  const resumed = await runLaunch(["--resume", cut, "--workers", "2"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming at step 4/);
  assert.match(resumed.stderr, /metrics\.jsonl: dropped 1 record\(s\) after step 4/);
  assert.match(fs.readFileSync(path.join(cut, "logs", "rank-0.log"), "utf8"), /resumed from \S+step-000004 at step 4/);

  // The same step records (losses, gradient norms, learning rates, evaluations, test metrics), each step once.
  assert.deepEqual(stepRecords(cut), stepRecords(whole));
  assert.deepEqual(stepRecords(cut).map((rec) => rec.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  const diff = maxDiff(await checkpointTensors(whole), await checkpointTensors(cut));
  process.stderr.write(`# ${name}: resumed vs uninterrupted max abs diff ${diff} over every checkpoint tensor\n`);
  assert.ok(diff <= 1e-6, `${name}: resumed run differs from the uninterrupted one by ${diff}`);
  return { whole, cut, diff };
}

test("full fine-tuning: interrupted after a checkpoint and resumed, it ends as an uninterrupted run", async () => {
  const { cut } = await interruptAndResume("full", "--set", "finetune.method=full", "--set", "optimizer.lr=1e-3");
  const state = (await readSafetensors(path.join((await listCheckpoints(cut)).at(-1)!.dir, "training_state.safetensors"))).tensors;
  // full fine-tuning exports every trained parameter: the training state holds only the optimizer's moments
  assert.ok(state.has("bert.embeddings.word_embeddings.weight.exp_avg") && state.has("classifier.weight.exp_avg_sq"));
  assert.equal([...state.keys()].some((k) => k.startsWith("parameter/")), false);
});

test("LoRA: interrupted after a checkpoint and resumed, it ends as an uninterrupted run", async () => {
  await interruptAndResume("lora");
});

test("prefix tuning with its MLP: the MLP (saved only in the training state) and its moments resume exactly", async () => {
  const { cut } = await interruptAndResume("prefix", "--set", "finetune.method=prefix", "--set", "finetune.prefix.num_virtual_tokens=4", "--set", "finetune.prefix.hidden_size=16");
  const dir = (await listCheckpoints(cut)).at(-1)!.dir;
  const state = (await readSafetensors(path.join(dir, "training_state.safetensors"))).tensors;
  assert.ok(state.has("parameter/prefix.mlp.0.weight") && state.has("prefix.mlp.0.weight.exp_avg"), [...state.keys()].join(", "));
  assert.ok((await readSafetensors(path.join(dir, "adapter_model.safetensors"))).tensors.has("prefix.past_key_values"));
});

test("LoRA with merge: the factors, folded into the exported weights, resume from the training state; frozen weights from the base", async () => {
  const { cut } = await interruptAndResume("lora-merge", "--set", "finetune.lora.merge=true");
  const state = (await readSafetensors(path.join((await listCheckpoints(cut)).at(-1)!.dir, "training_state.safetensors"))).tensors;
  assert.ok(state.has("parameter/bert.encoder.layer.0.attention.self.query.lora_A.weight"), [...state.keys()].join(", "));
});

test("adapters (with one on the embeddings and trained LayerNorms) and a soft prompt resume exactly", async () => {
  await interruptAndResume("adapter", "--set", "finetune.method=adapter", "--set", "finetune.adapter.size=8", "--set", "finetune.adapter.embedding_size=8");
  await interruptAndResume("prompt", "--set", "finetune.method=prompt", "--set", "finetune.prompt.num_virtual_tokens=4");
});

test("--max-restarts continues a fine-tune from its checkpoint after a worker is killed, to the uninterrupted run's tensors", async () => {
  const whole = path.join(root, "lora-whole");
  if (!fs.existsSync(whole)) assert.equal((await runLaunch(ftArgs(whole, SCHEDULE))).code, 0);
  const out = path.join(root, "lora-restart");
  // rank 1 computes slowly (in the restarted attempt too: the failpoint only stretches time), so the kill lands mid-run
  const run = startLaunch(ftArgs(out, SCHEDULE, "--max-restarts", "1"), { RINGTRAIN_TEST_SLOW_RANK: "1:20" });
  await waitFor(() => (fs.existsSync(path.join(out, "metrics.jsonl")) && stepRecords(out).some((r) => r.step === 3) ? true : undefined), 60_000, "step 3");
  const pid = Number(/\(pid (\d+)\)/.exec(fs.readFileSync(path.join(out, "logs", "rank-1.log"), "utf8"))![1]);
  process.kill(pid, "SIGKILL");
  const r = await run.done;
  assert.equal(r.code, 0, r.stderr);
  const from = /restart 1\/1 with 2 worker\(s\) from the checkpoint of step (\d+)/.exec(r.stderr);
  assert.ok(from !== null && Number(from[1]) >= 2 && Number(from[1]) < 8, r.stderr);
  assert.deepEqual(stepRecords(out), stepRecords(whole));
  assert.equal(maxDiff(await checkpointTensors(whole), await checkpointTensors(out)), 0);
});

test("a fine-tune checkpoint without training state (saved before resuming was possible) is refused by --resume, started over by --auto-resume, and still predicts", async () => {
  const out = path.join(root, "old-style");
  const short = ["--max-steps", "2", "--set", "training.checkpoint_interval_steps=1"];
  const first = await runLaunch(ftArgs(out, short));
  assert.equal(first.code, 0, first.stderr);
  // what such a checkpoint looked like: the adapter files and a manifest listing no training_state.safetensors
  for (const c of await listCheckpoints(out)) {
    const manifest = await readManifest(c.dir);
    delete manifest.files["training_state.safetensors"];
    fs.rmSync(path.join(c.dir, "training_state.safetensors"));
    await writeManifest(c.dir, manifest.files, manifest.step);
  }
  const newest = (await listCheckpoints(out)).at(-1)!.dir;
  const resumed = await runLaunch(["--resume", out, "--workers", "2", "--max-steps", "3"]);
  assert.equal(resumed.code, 2, resumed.stderr);
  assert.ok(resumed.stderr.includes(`checkpoint ${newest} holds no training_state.safetensors`), resumed.stderr);
  assert.match(resumed.stderr, /saved by a version of ringtrain whose fine-tuning checkpoints kept only the trained weights, so the run cannot continue exactly from it/);
  assert.match(resumed.stderr, /start the run over in place: launch \S+config\.yaml --overwrite/);

  const input = path.join(repoRoot(), "test", "fixtures", "data", "labelled-pairs.jsonl");
  const predicted = await runLaunch(["predict", "--model", base, "--adapter", out, input]);
  assert.equal(predicted.code, 0, predicted.stderr);
  assert.match(predicted.stdout, /accuracy on the 240 labelled examples/);

  const auto = await runLaunch(ftArgs(out, ["--max-steps", "3", "--set", "training.checkpoint_interval_steps=1"], "--auto-resume"));
  assert.equal(auto.code, 0, auto.stderr);
  assert.match(auto.stderr, /--auto-resume: checkpoint \S+ holds no training_state\.safetensors .*; starting \S+ over/);
  assert.ok(fs.existsSync(path.join(newest, "training_state.safetensors")), "the run started over writes resumable checkpoints");
});

test("a resume whose base model changed since (its run started over in place) exits 2 before any process starts, naming both checksums", async () => {
  const ownBase = path.join(root, "base-redone");
  let r = await runLaunch(tinyArgs(ownBase, "--workers", "1", "--max-steps", "2"));
  assert.equal(r.code, 0, r.stderr);
  const out = path.join(root, "ft-base-redone");
  r = await runLaunch([FT_CONFIG, "--output", out, "--set", `finetune.base_model=${ownBase}`, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", "--workers", "1",
    "--max-steps", "2", "--set", "training.checkpoint_interval_steps=2"]);
  assert.equal(r.code, 0, r.stderr);
  // the base run starts over in place with another seed: the same checkpoint directory now holds other weights
  r = await runLaunch(tinyArgs(ownBase, "--workers", "1", "--max-steps", "2", "--seed", "9", "--overwrite"));
  assert.equal(r.code, 0, r.stderr);
  const metricsBefore = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8");
  r = await runLaunch(["--resume", out, "--max-steps", "4", "--quiet"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /was trained on base model .+ with model\.safetensors sha256 [0-9a-f]{64}, but finetune\.base_model \(.+\) now holds sha256 [0-9a-f]{64}/);
  assert.doesNotMatch(r.stderr, /coordinator listening|\[rank \d\]/, "nothing was started");
  assert.equal(fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8"), metricsBefore, "the run directory is as it was");
});
