/**
 * `npm run bench:compression [-- flags]`: the effect of gradient compression on convergence and traffic.
 *
 * Every method trains the same model from the same seed on the same data (Brown, MLM) with the same schedule,
 * through the real product (`launch --workers N`: coordinator, worker processes, gRPC ring); only
 * `communication.compression` (fp16/bf16 on the wire) or `communication.gradient_compression` (top-k or PowerSGD
 * with error feedback) differs. From each run's metrics.jsonl: the training MLM loss curve (window means), the
 * validation loss at every evaluation, bytes all-reduced per step (before wire compression) and tokens/s.
 * Writes results.json and results.md into --out and prints the markdown.
 *
 * Flags: --out DIR  --steps N  --workers N  --preset NAME  --seq N  --batch N (global)  --micro N  --lr X
 *        --eval-interval N  --eval-sequences N  --window N  --seed N
 *        --methods none,fp16,bf16,topk-0.01,topk-0.1,powersgd-1,powersgd-4 (topk-R: ratio R; powersgd-K: rank K)
 *        --report DIR (alone: print the tables of DIR/results.json again, training nothing)
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { medianFinite } from "../launch/bench/common";

interface Options {
  out: string;
  steps: number;
  workers: number;
  preset: string;
  seq: number;
  batch: number;
  micro: number;
  lr: number;
  evalInterval: number;
  evalSequences: number;
  window: number;
  seed: number;
  methods: string[];
}

interface MetricsLine {
  step: number;
  loss: number;
  tokens_per_s: number;
  allreduce_bytes?: number;
  eval?: { loss: number };
}

/** One method's outcome. */
interface Result {
  method: string;
  communication: Record<string, unknown>;
  finalTrainLoss: number;
  trainCurve: { from: number; to: number; loss: number }[];
  validation: { step: number; loss: number }[];
  bytesPerStep: number;
  tokensPerS: number;
  wallS: number;
}

/** A finite number, or an error naming the flag (the value is the raw text: parse-numbers is off). */
function num(flag: string): (value: string | number) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new Error(`--${flag}: not a number: ${value}`);
    return n;
  };
}

/** Parses argv (without node and the script): the options of a run, or `--report DIR` alone. Exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): { options: Options } | { report: string } {
  const a = yargs(argv)
    .usage("npm run bench:compression -- [flags]\n\nThe effect of gradient compression on convergence and traffic: every method trains the same model from the same seed on the same data; writes results.json and results.md into --out and prints the markdown.")
    .option("out", { type: "string", default: "runs/bench-compression", requiresArg: true, describe: "output directory" })
    .option("steps", { default: 200, requiresArg: true, describe: "training steps per method", coerce: num("steps") })
    .option("workers", { default: 2, requiresArg: true, describe: "workers (launch --workers)", coerce: num("workers") })
    .option("preset", { type: "string", default: "bert-tiny", requiresArg: true, describe: "model preset" })
    .option("seq", { default: 128, requiresArg: true, describe: "sequence length", coerce: num("seq") })
    .option("batch", { default: 32, requiresArg: true, describe: "global batch size", coerce: num("batch") })
    .option("micro", { default: 16, requiresArg: true, describe: "micro-batch size", coerce: num("micro") })
    .option("lr", { default: 2e-3, requiresArg: true, describe: "AdamW peak learning rate (linear decay)", coerce: num("lr") })
    .option("eval-interval", { default: 50, requiresArg: true, describe: "steps between validation evaluations", coerce: num("eval-interval") })
    .option("eval-sequences", { default: 128, requiresArg: true, describe: "held-out sequences per evaluation", coerce: num("eval-sequences") })
    .option("window", { default: 25, requiresArg: true, describe: "steps per training-loss window (the last one is the final train loss)", coerce: num("window") })
    .option("seed", { default: 42, requiresArg: true, describe: "seed of every run", coerce: num("seed") })
    .option("methods", {
      type: "string", default: "none,fp16,bf16,topk-0.01,topk-0.1,powersgd-1,powersgd-4", requiresArg: true,
      describe: "methods, comma-separated: none, fp16, bf16, topk-RATIO, powersgd-RANK",
      coerce: (value: string): string[] => {
        const methods = value.split(",").map((m) => m.trim()).filter((m) => m !== "");
        for (const m of methods) communicationFor(m); // validates the names before anything runs
        return methods;
      },
    })
    .option("report", { type: "string", requiresArg: true, describe: "alone: print the tables of DIR/results.json again, training nothing" })
    .check((args) => {
      if (args.report !== undefined && argv.some((t) => t.startsWith("--") && t !== "--report" && !t.startsWith("--report="))) throw new Error("--report DIR is used alone");
      return true;
    })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false, "parse-numbers": false })
    .strict()
    .parseSync();
  if (a.report !== undefined) return { report: a.report };
  return {
    options: {
      out: a.out, steps: a.steps, workers: a.workers, preset: a.preset, seq: a.seq, batch: a.batch, micro: a.micro, lr: a.lr,
      evalInterval: a["eval-interval"], evalSequences: a["eval-sequences"], window: a.window, seed: a.seed, methods: a.methods,
    },
  };
}

/** The communication section of a method name. */
function communicationFor(method: string): Record<string, unknown> {
  if (method === "none" || method === "fp16" || method === "bf16") return { compression: method };
  const topk = /^topk-(\d*\.?\d+)$/.exec(method);
  if (topk) return { compression: "none", gradient_compression: { method: "topk", topk_ratio: Number(topk[1]) } };
  const psgd = /^powersgd-(\d+)$/.exec(method);
  if (psgd) return { compression: "none", gradient_compression: { method: "powersgd", powersgd_rank: Number(psgd[1]) } };
  throw new Error(`unknown method '${method}' (none, fp16, bf16, topk-RATIO, powersgd-RANK)`);
}


function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

function run(o: Options, method: string): Result {
  const dir = path.resolve(o.out, method);
  fs.rmSync(dir, { recursive: true, force: true });
  const communication = { ...communicationFor(method), timeout_ms: 600_000, heartbeat_timeout_ms: 300_000 };
  const cfg = {
    name: `compression-${method}`, output_dir: dir, seed: o.seed, backend: "wasm",
    model: { preset: o.preset, max_position_embeddings: Math.max(128, o.seq) },
    tokenizer: { vocab_size: 8192, min_frequency: 2 },
    data: { corpus: "brown", max_seq_len: o.seq, validation_fraction: 0.05 },
    batch: { global_batch_size: o.batch, micro_batch_size: o.micro },
    optimizer: { lr: o.lr, weight_decay: 0.01, grad_clip_norm: 1.0 },
    schedule: { warmup_steps: Math.min(20, Math.floor(o.steps / 10)), decay: "linear" },
    training: { max_steps: o.steps, eval_interval_steps: o.evalInterval, eval_sequences: o.evalSequences, checkpoint_interval_steps: 0 },
    communication,
  };
  const file = path.resolve(o.out, "configs", `${method}.yaml`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, stringify(cfg));
  const t0 = Date.now();
  process.stderr.write(`bench:compression: ${method} (${o.steps} steps, ${o.workers} workers) ...\n`);
  const r = spawnSync(process.execPath, [path.join(__dirname, "..", "launch", "main.js"), file, "--workers", String(o.workers), "--quiet"], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`launch ${file} exited with ${r.status}`);
  const wallS = (Date.now() - t0) / 1000;
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as MetricsLine)
    .filter((l) => typeof l.loss === "number");
  const trainCurve: Result["trainCurve"] = [];
  for (let from = 1; from <= o.steps; from += o.window) {
    const to = Math.min(o.steps, from + o.window - 1);
    const w = lines.filter((l) => l.step >= from && l.step <= to).map((l) => l.loss);
    if (w.length > 0) trainCurve.push({ from, to, loss: mean(w) });
  }
  const last = lines.filter((l) => l.step > o.steps - o.window).map((l) => l.loss);
  const result: Result = {
    method, communication, wallS,
    finalTrainLoss: mean(last),
    trainCurve,
    validation: lines.filter((l) => l.eval !== undefined).map((l) => ({ step: l.step, loss: l.eval!.loss })),
    bytesPerStep: medianFinite(lines.map((l) => l.allreduce_bytes ?? NaN)),
    tokensPerS: medianFinite(lines.filter((l) => l.step > 2).map((l) => l.tokens_per_s)),
  };
  process.stderr.write(`bench:compression: ${method}: train ${result.finalTrainLoss.toFixed(3)}, validation ${result.validation.at(-1)?.loss.toFixed(3)}, ${result.bytesPerStep} B/step, ${wallS.toFixed(0)} s\n`);
  return result;
}

function markdown(o: Options, results: Result[]): string {
  const base = results.find((r) => r.method === "none");
  const fmt = (x: number | undefined, d = 3): string => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));
  const wire = (r: Result): number => (r.method === "fp16" || r.method === "bf16" ? r.bytesPerStep / 2 : r.bytesPerStep);
  const lines: string[] = [];
  lines.push(`${o.preset}, Brown MLM, seq ${o.seq}, global batch ${o.batch} (${o.workers} workers x ${o.batch / o.workers}), AdamW lr ${o.lr}, ` +
    `linear decay, ${o.steps} steps, seed ${o.seed}, wasm, ${os.cpus().length} cores. Train loss: mean of the last ${o.window} steps; ` +
    `validation: ${o.evalSequences} held-out sequences, fixed masks.`);
  lines.push("");
  const evalSteps = [...new Set(results.flatMap((r) => r.validation.map((v) => v.step)))].sort((a, b) => a - b);
  lines.push(`| method | train loss | ${evalSteps.map((s) => `val @${s}`).join(" | ")} | Δ val vs none | bytes all-reduced / step | at wire precision / step | vs none | tokens/s |`);
  lines.push(`|---|---|${evalSteps.map(() => "---").join("|")}|---|---|---|---|---|`);
  for (const r of results) {
    const v = evalSteps.map((s) => fmt(r.validation.find((x) => x.step === s)?.loss));
    const dv = base ? r.validation.at(-1)!.loss - base.validation.at(-1)!.loss : NaN;
    const ratio = base ? wire(r) / base.bytesPerStep : NaN;
    lines.push(`| ${r.method} | ${fmt(r.finalTrainLoss)} | ${v.join(" | ")} | ${base ? (dv >= 0 ? "+" : "") + fmt(dv) : "-"} | ${r.bytesPerStep.toLocaleString("en-US")} | ` +
      `${Math.round(wire(r)).toLocaleString("en-US")} | ${ratio < 0.1 ? `1/${(1 / ratio).toFixed(0)}` : fmt(ratio, 2)} | ${fmt(r.tokensPerS, 0)} |`);
  }
  lines.push("");
  lines.push(`Training MLM loss, mean per window of ${o.window} steps:`);
  lines.push("");
  const windows = results[0].trainCurve.map((w) => `${w.from}-${w.to}`);
  lines.push(`| method | ${windows.join(" | ")} |`);
  lines.push(`|---|${windows.map(() => "---").join("|")}|`);
  for (const r of results) lines.push(`| ${r.method} | ${r.trainCurve.map((w) => fmt(w.loss)).join(" | ")} |`);
  return lines.join("\n") + "\n";
}

function main(): void {
  const args = parseArgs(hideBin(process.argv));
  // `--report DIR`: render DIR/results.json again (e.g. of an interrupted run) without training anything.
  if ("report" in args) {
    const saved = JSON.parse(fs.readFileSync(path.resolve(args.report, "results.json"), "utf8")) as { options: Options; results: Result[] };
    process.stdout.write(markdown(saved.options, saved.results));
    return;
  }
  const o = args.options;
  const results: Result[] = [];
  for (const m of o.methods) {
    results.push(run(o, m));
    fs.writeFileSync(path.resolve(o.out, "results.json"), JSON.stringify({ options: o, results }, null, 2));
    fs.writeFileSync(path.resolve(o.out, "results.md"), markdown(o, results));
  }
  process.stdout.write(markdown(o, results));
}

if (require.main === module) main();
