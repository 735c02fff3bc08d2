/**
 * The bench/*.js entry points parse their flags with yargs in strict mode: --help describes the flags and exits 0,
 * an unknown flag or a flag without its value exits non-zero naming it, and the invocations the docs quote parse
 * to what they meant. Nothing here starts benchmark work: --help and the errors exit while parsing, and the
 * parse checks require the module in a child (`node -e`), where main() does not run (it runs only as the main module).
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";

const BENCH = path.join(__dirname, "..", "bench");

/** Each converted script, a flag its --help must mention, and a flag that takes a value (undefined: positionals only). */
const SCRIPTS: { name: string; known: string; valued?: string }[] = [
  { name: "allreduce", known: "--no-gloo", valued: "--sizes" },
  { name: "compression", known: "--methods", valued: "--steps" },
  { name: "low-resource", known: "--select-lr", valued: "--grid" },
  { name: "overlap", known: "--bucket-bytes", valued: "--preset" },
  { name: "reliability", known: "--runs", valued: "--runs" },
  { name: "scaling", known: "--independent", valued: "--steps" },
  { name: "simulate-validate", known: "--rates", valued: "--workers" },
  { name: "timeline-overhead", known: "buckets" },
  { name: "tokenizer", known: "vocabSize" },
  { name: "sum", known: "--block-kib", valued: "--mib" },
];

const TIMEOUT = { timeout: 20_000, killSignal: "SIGKILL" as const, encoding: "utf8" as const };

const script = (name: string): string => path.join(BENCH, `${name}.js`);

/** parseArgs of a bench script on argv, in a child where the script's main() does not run. */
function parse(name: string, argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const code = `const r = require(${JSON.stringify(script(name))}).parseArgs(process.argv.slice(1));` +
    "process.stdout.write(JSON.stringify(r, (k, v) => (v instanceof Map ? Object.fromEntries(v) : v)));";
  return spawnSync(process.execPath, ["-e", code, "--", ...argv], TIMEOUT);
}

for (const s of SCRIPTS) {
  test(`bench/${s.name}.js --help exits 0 and describes ${s.known}`, () => {
    const r = spawnSync(process.execPath, [script(s.name), "--help"], TIMEOUT);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(s.known));
  });

  test(`bench/${s.name}.js rejects an unknown flag, naming it`, () => {
    const r = spawnSync(process.execPath, [script(s.name), "--no-such-flag", "1"], TIMEOUT);
    assert.notEqual(r.status, 0);
    assert.notEqual(r.status, null, "timed out: the flag was not rejected while parsing");
    assert.match(r.stderr, /no-such-flag/);
  });

  if (s.valued !== undefined) {
    const flag = s.valued;
    test(`bench/${s.name}.js rejects ${flag} without a value, naming it`, () => {
      const r = parse(s.name, [flag]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`Not enough arguments following: ${flag.slice(2)}`));
    });
  }
}

/** The parsed options of argv, or a failed assertion with the child's stderr. */
function parsed(name: string, argv: string[]): Record<string, unknown> {
  const r = parse(name, argv);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test("the invocations the docs quote parse as they meant", () => {
  // docs/SCALING.md, and what bench/simulate-validate.js runs itself
  const ar = parsed("allreduce", ["--json", "--no-gloo", "--sizes", "1048576,4194304", "--ranks", "2,4", "--iters", "12", "--warmup", "2"]);
  assert.deepEqual([ar.json, ar.gloo, ar.sizes, ar.ranks, ar.iters, ar.warmup], [true, false, [1048576, 4194304], [2, 4], 12, 2]);
  const ar2 = parsed("allreduce", ["--sizes", "4194304", "--transport", "http2-raw,http2-socket", "--node-args", "--trace-gc --max-semi-space-size=64"]);
  assert.deepEqual([ar2.gloo, ar2.transports, ar2.nodeArgs], [true, ["http2-raw", "http2-socket"], ["--trace-gc", "--max-semi-space-size=64"]]);
  // docs/PERFORMANCE.md
  const sc = parsed("scaling", ["--steps", "20", "--repeats", "5", "--independent"]);
  assert.deepEqual([sc.steps, sc.repeats, sc.independent, sc.workers, sc.balance, sc.microBatch], [20, 5, true, [1, 2], "even", 16]);
  const ov = parsed("overlap", ["--preset", "bert-mini", "--steps", "8", "--repeats", "3", "--bucket-bytes", "2000000"]);
  assert.deepEqual(ov, { preset: "bert-mini", steps: 8, micro: 16, bucketBytes: 2000000, backend: "wasm", repeats: 3, json: false });
  const co = parsed("compression", ["--out", "runs/c", "--steps", "150", "--seq", "64", "--eval-interval", "50", "--window", "25", "--methods", "none,topk-0.01,powersgd-4"]);
  assert.deepEqual(co, { options: { out: "runs/c", steps: 150, workers: 2, preset: "bert-tiny", seq: 64, batch: 32, micro: 16, lr: 2e-3, evalInterval: 50, evalSequences: 128, window: 25, seed: 42, methods: ["none", "topk-0.01", "powersgd-4"] } });
  assert.deepEqual(parsed("compression", ["--report", "runs/c"]), { report: "runs/c" });
  // docs/RELIABILITY.md, docs/SCALING.md
  assert.deepEqual(parsed("reliability", ["--runs", "3"]), { runs: 3, json: false });
  const sv = parsed("simulate-validate", ["--steps", "10", "--reps", "3", "--workers", "2,4", "--rates", "1gbit,100mbit"]);
  assert.deepEqual([sv.steps, sv.reps, sv.workers, sv.rates, sv.json], [10, 3, [2, 4], ["1gbit", "100mbit"], ""]);
  // docs/RESULTS.md
  const lr = parsed("low-resource", ["--out", "runs/dapt", "--pretrain-steps", "1000", "--continue-to", "7500", "--pretrain-workers", "2", "--pooling", "mean",
    "--dapt-steps", "2000", "--dapt-lr", "1e-3", "--lr", "3e-4", "--scratch-lr", "1e-3", "--peft-lr", "5e-3", "--method-lr", "prefix=2e-2",
    "--grid", "0.01:full,scratch:1,2,3;1:full,lora,adapter:1", "--finetune-steps", "200,600", "--jobs", "2", "--select-lr", "full=1e-4/3e-4"]);
  assert.deepEqual(
    [lr.pretrainSteps, lr.continueTo, lr.pretrainWorkers, lr.pooling, lr.daptSteps, lr.daptWarmup, lr.lr, lr.scratchLr, lr.peftLr, lr.methodLr, lr.fractions, lr.methods, lr.seeds, lr.stepsByFraction, lr.jobs, lr.selectLr],
    [1000, 7500, 2, "mean", 2000, 100, 3e-4, 1e-3, 5e-3, { prefix: 2e-2 }, [0.01, 1], ["full", "lora", "adapter", "scratch"], [1, 2, 3], { "0.01": 200, "1": 600 }, 2, { full: [1e-4, 3e-4] }],
  );
  assert.deepEqual(parsed("tokenizer", ["8192", "1"]), { vocabSize: 8192, threads: 1 });
  assert.deepEqual(parsed("timeline-overhead", ["100"]), { steps: 100, buckets: 4 });
});

test("the hand parsers' value checks keep their messages", () => {
  const cases: [string, string[], RegExp][] = [
    ["low-resource", ["--grid", "1:full"], /--grid: expected fractions:methods:seeds, got 1:full/],
    ["low-resource", ["--select-lr", "full=0"], /--select-lr: expected method=lr\/lr\/\.\.\., got full=0/],
    ["low-resource", ["--method-lr", "nope=1"], /--method-lr: expected method=lr, got nope=1/],
    ["low-resource", ["--pooling", "max"], /--pooling: expected cls or mean, got max/],
    ["low-resource", ["--lr", "abc"], /--lr: not a number: abc/],
    ["compression", ["--methods", "topk-x"], /unknown method 'topk-x'/],
    ["compression", ["--report", "runs/c", "--steps", "3"], /--report DIR is used alone/],
    ["scaling", ["--balance", "x"], /--balance: expected even or adaptive, got x/],
    ["scaling", ["--repeats", "0"], /--repeats: expected an integer >= 1, got 0/],
    ["scaling", ["--step", "20"], /Unknown argument: step/],
    ["tokenizer", ["8192", "0"], /usage: node dist\/bench\/tokenizer.js/],
  ];
  for (const [name, argv, message] of cases) {
    const r = parse(name, argv);
    assert.notEqual(r.status, 0, `${name} ${argv.join(" ")}`);
    assert.match(r.stderr, message, `${name} ${argv.join(" ")}`);
  }
});

for (const name of ["step", "cluster"]) {
  test(`bench/${name}.js rejects --steps without a value instead of running with the default`, () => {
    const r = spawnSync(process.execPath, [script(name), "--steps"], TIMEOUT);
    assert.notEqual(r.status, 0);
    assert.notEqual(r.status, null, "timed out: the missing value was not rejected while parsing");
    assert.match(r.stderr, /Not enough arguments following: steps/);
  });
}
