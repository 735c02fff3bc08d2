/** Bad configurations stop `launch` before any process starts, with exit code 2 and a message naming the field. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { runLaunch, tempDir, TINY_CONFIG } from "./helpers/launch";
import { applyConfigOverrides, ConfigError } from "../shared/config/load";

function writeConfig(dir: string, edit: (text: string) => string): string {
  const file = path.join(dir, "bad.yaml");
  fs.writeFileSync(file, edit(fs.readFileSync(TINY_CONFIG, "utf8")));
  return file;
}

const cases: { name: string; edit: (t: string) => string; args?: string[]; expect: RegExp }[] = [
  { name: "unknown field", edit: (t) => t.replace("  num_heads: 2", "  num_heads: 2\n  num_haeds: 4"), expect: /field model: unknown field 'num_haeds'/ },
  { name: "wrong type", edit: (t) => t.replace("global_batch_size: 12", "global_batch_size: twelve"), expect: /field batch\.global_batch_size: .*expected number/ },
  { name: "missing file", edit: (t) => t.replace("corpus: brown", "corpus: files\n  paths: [no/such/corpus.jsonl]"), expect: /field data\.paths\[0\]: file or folder not found: .*no\/such\/corpus\.jsonl/ },
  { name: "batch not divisible by micro-batch x workers", edit: (t) => t, args: ["--workers", "5"], expect: /field batch\.global_batch_size: 12 is not divisible by micro_batch_size \(2\) x workers \(5\)/ },
  { name: "invalid YAML", edit: (t) => t.replace("seed: 7", "seed: [7"), expect: /bad\.yaml:\d+:\d+: invalid YAML/ },
  { name: "native backend not installed", edit: (t) => t.replace("backend: wasm", "backend: tensorflow"), expect: /field backend: 'tensorflow' needs @tensorflow\/tfjs-node-gpu or @tensorflow\/tfjs-node/ },
  { name: "--set of an unknown field", edit: (t) => t, args: ["--set", "optimizer.lrr=1e-3"], expect: /field optimizer: unknown field 'lrr'/ },
  { name: "--set of a wrong type", edit: (t) => t, args: ["--set", "seed=seven"], expect: /field seed: .*expected number/i },
  { name: "missing required field", edit: (t) => t.replace(/training:\n  max_steps: 3\n/, "training:\n"), expect: /field training\.max_steps: required field is missing/ },
];

for (const c of cases) {
  test(`bad config (${c.name}) exits 2 before starting anything`, async () => {
    const dir = tempDir("badcfg");
    const runDir = path.join(dir, "run");
    const file = writeConfig(dir, c.edit);
    const r = await runLaunch([file, "--output", runDir, ...(c.args ?? [])]);
    assert.equal(r.code, 2, `expected exit 2, got ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, c.expect);
    assert.match(r.stderr, /bad\.yaml/, "the message names the file");
    assert.equal(fs.existsSync(runDir), false, "nothing was started or written");
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

test("the example configs validate (dry run)", async () => {
  const examples = path.join(path.dirname(path.dirname(TINY_CONFIG)), "..", "examples");
  for (const f of fs.readdirSync(examples).filter((n) => n.endsWith(".yaml"))) {
    const r = await runLaunch([path.join(examples, f), "--dry-run", "--workers", "2"]);
    assert.equal(r.code, 0, `${f}: ${r.stderr}`);
    const plan = JSON.parse(r.stdout) as { world: { worldSize: number } };
    assert.equal(plan.world.worldSize, 2);
  }
});

test("a warmup longer than a --max-steps run is a warning, not an error (as in HF)", async () => {
  const examples = path.join(path.dirname(path.dirname(TINY_CONFIG)), "..", "examples");
  const r = await runLaunch([path.join(examples, "pretrain-brown.yaml"), "--dry-run", "--workers", "2", "--max-steps", "5"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: .*pretrain-brown\.yaml: schedule\.warmup_steps 20 exceeds training\.max_steps 5: the learning rate rises for the whole run; the last update uses 20% of optimizer\.lr/);
  const plan = JSON.parse(r.stdout) as { config: { training: { max_steps: number } } };
  assert.equal(plan.config.training.max_steps, 5);
});

test("--gpus with a CPU-only backend warns that the workers run on the CPU, and still plans the run", async () => {
  // TINY_CONFIG sets backend: wasm, so this holds whether or not a native binding is installed.
  const r = await runLaunch([TINY_CONFIG, "--dry-run", "--gpus", "2"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: --gpus 2: the workers will run on the CPU: backend is 'wasm'/);
  const plan = JSON.parse(r.stdout) as { world: { worldSize: number; useGpus: boolean } };
  assert.deepEqual([plan.world.worldSize, plan.world.useGpus], [2, true]);
  const workers = await runLaunch([TINY_CONFIG, "--dry-run", "--workers", "2"]);
  assert.doesNotMatch(workers.stderr, /warning: --gpus/);
});

test("applyConfigOverrides (launch and launch k8s): named flags, then each --set in order, values parsed as YAML", () => {
  const obj: Record<string, unknown> = { training: { max_steps: 3 }, model: "bert-tiny" };
  applyConfigOverrides(obj, { maxSteps: 9, seed: 4, set: ["optimizer.lr=1e-3", "data.paths=[a.txt, b.txt]", "training.max_steps=11", "name='007'"] }, "x.yaml");
  assert.deepEqual(obj, { training: { max_steps: 11 }, model: "bert-tiny", seed: 4, optimizer: { lr: 0.001 }, data: { paths: ["a.txt", "b.txt"] }, name: "007" });
  const refused = (set: string[], re: RegExp): void => assert.throws(() => applyConfigOverrides({ model: "bert-tiny" }, { set }, "x.yaml"), (e: Error) => e instanceof ConfigError && re.test(e.message));
  refused(["model.preset=bert-mini"], /^x\.yaml: cannot override 'model\.preset': 'model' is not a mapping$/);
  refused(["model"], /^--set 'model': expected field\.path=value$/);
  refused(["=3"], /^--set '=3': expected field\.path=value$/);
  refused(["__proto__.polluted=1"], /'__proto__' is not a config field/);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("--set may come before the config and repeat; the plan shows the overridden fields", async () => {
  const r = await runLaunch(["--set", "training.max_steps=2", TINY_CONFIG, "--set", "optimizer.lr=0.004", "--dry-run", "--workers", "2"]);
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { config: { training: { max_steps: number }; optimizer: { lr: number } } };
  assert.deepEqual([plan.config.training.max_steps, plan.config.optimizer.lr], [2, 0.004]);
});
