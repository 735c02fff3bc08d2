/**
 * `npm run bench:overlap [-- --preset bert-mini --steps 10 --repeats 2 --bucket-bytes 2000000 --micro-batch 16]`
 *
 * What overlapping the all-reduce with the backward pass buys, through the real product (`launch --workers N`
 * on examples/pretrain-brown.yaml, weak scaling: a fixed micro-batch per worker). Per repeat, side by side in
 * one run: N = 1, N = 2 with `communication.overlap: true` (ring in its own thread, buckets start as their
 * gradients appear), N = 2 with overlap off (ring after the backward pass). Prints per configuration the
 * median tokens/s, step time, the all-reduce's whole wall time, the EXPOSED all-reduce time as a share of the
 * step (what the rank with the longest compute of the step, which sets the step time, waited for the all-reduce
 * after its backward pass; the other ranks' waits also hold time spent waiting for that straggler), the
 * compute imbalance between ranks, and efficiency = tokens/s(2) / (2 x tokens/s(1)) against the N = 1 run of
 * the same repeat. Medians over steps after the first two, then over repeats.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { repoRoot } from "../shared/paths";
import { medianFinite } from "../launch/bench/common";

interface Line {
  step: number;
  tokens_per_s: number;
  step_ms: number;
  per_rank: { compute_ms: number; communication_ms: number; allreduce_wall_ms?: number; optimizer_ms: number }[];
}

interface Row {
  label: string;
  workers: number;
  overlap: boolean;
  tokensPerS: number[];
  imbalanceMs: number[];
  stepMs: number[];
  exposedMs: number[];
  wallMs: number[];
  computeMs: number[];
  efficiency: number[];
}

/** What one launch runs. */
interface RunOptions {
  preset: string;
  steps: number;
  micro: number;
  bucketBytes: number;
  backend: string;
}

/** The flags of this script, parsed and checked. */
export interface OverlapBenchArgs extends RunOptions {
  repeats: number;
  json: boolean;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): OverlapBenchArgs {
  const a = yargs(argv)
    .usage("npm run bench:overlap -- [flags]\n\nWhat overlapping the all-reduce with the backward pass buys: N = 1, N = 2 with overlap on, N = 2 with overlap off, side by side.")
    .option("preset", { type: "string", default: "bert-mini", requiresArg: true, describe: "model preset" })
    .option("steps", { type: "number", default: 10, requiresArg: true, describe: "steps per run (medians over the steps after the first two)" })
    .option("micro-batch", { type: "number", default: 16, requiresArg: true, describe: "sequences per worker per step" })
    .option("bucket-bytes", { type: "number", default: 2000000, requiresArg: true, describe: "communication.bucket_bytes" })
    .option("backend", { type: "string", default: "wasm", requiresArg: true, describe: "TensorFlow.js backend" })
    .option("repeats", { type: "number", default: 2, requiresArg: true, describe: "repeats of the three configurations (medians over them)" })
    .option("json", { type: "boolean", default: false, describe: "one JSON line per configuration instead of the table" })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  return { preset: a.preset, steps: a.steps, micro: a["micro-batch"], bucketBytes: a["bucket-bytes"], backend: a.backend, repeats: a.repeats, json: a.json };
}

/** Runs one launch and returns the medians of its steps after warm-up. */
function runOnce(workers: number, overlap: boolean, o: RunOptions): { tps: number; step: number; exposed: number; wall: number; compute: number; imbalance: number } {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `ringtrain-overlap-${workers}-`));
  const args = [
    path.join(repoRoot(), "dist", "launch", "main.js"), path.join(repoRoot(), "examples", "pretrain-brown.yaml"),
    "--workers", String(workers), "--max-steps", String(o.steps), "--output", out, "--quiet", "--backend", o.backend,
    "--set", `model.preset=${o.preset}`, "--set", `batch.micro_batch_size=${o.micro}`, "--set", `batch.global_batch_size=${o.micro * workers}`,
    "--set", "training.eval_interval_steps=0", "--set", "training.checkpoint_interval_steps=0", "--set", "schedule.warmup_steps=1",
    "--set", "model.hidden_dropout=0", "--set", "model.attention_dropout=0",
    "--set", `communication.overlap=${overlap}`, "--set", `communication.bucket_bytes=${o.bucketBytes}`,
  ];
  const r = spawnSync(process.execPath, args, { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`launch --workers ${workers} (overlap ${overlap}) failed with exit code ${r.status}`);
  const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Line).filter((l) => l.step > 2);
  fs.rmSync(out, { recursive: true, force: true });
  const slowest = (f: (p: Line["per_rank"][number]) => number): number => medianFinite(lines.map((l) => Math.max(...l.per_rank.map(f))));
  const straggler = (l: Line): Line["per_rank"][number] => l.per_rank.reduce((a, b) => (b.compute_ms > a.compute_ms ? b : a));
  return {
    tps: medianFinite(lines.map((l) => l.tokens_per_s)), step: medianFinite(lines.map((l) => l.step_ms)),
    exposed: medianFinite(lines.map((l) => straggler(l).communication_ms)), wall: slowest((p) => p.allreduce_wall_ms ?? p.communication_ms),
    compute: slowest((p) => p.compute_ms),
    imbalance: medianFinite(lines.map((l) => Math.max(...l.per_rank.map((p) => p.compute_ms)) - Math.min(...l.per_rank.map((p) => p.compute_ms)))),
  };
}

function main(): void {
  const { repeats, json, ...o } = parseArgs(hideBin(process.argv));
  const rows: Row[] = [
    { label: "N=1", workers: 1, overlap: true, tokensPerS: [], imbalanceMs: [], stepMs: [], exposedMs: [], wallMs: [], computeMs: [], efficiency: [] },
    { label: "N=2 overlap on", workers: 2, overlap: true, tokensPerS: [], imbalanceMs: [], stepMs: [], exposedMs: [], wallMs: [], computeMs: [], efficiency: [] },
    { label: "N=2 overlap off", workers: 2, overlap: false, tokensPerS: [], imbalanceMs: [], stepMs: [], exposedMs: [], wallMs: [], computeMs: [], efficiency: [] },
  ];
  process.stderr.write(`bench:overlap ${o.preset}, micro-batch ${o.micro}/worker, ${o.steps} steps, bucket ${o.bucketBytes} B, ${repeats} repeat(s), load ${os.loadavg()[0].toFixed(1)}\n`);
  for (let rep = 0; rep < repeats; rep++) {
    let base = NaN;
    for (const row of rows) {
      const r = runOnce(row.workers, row.overlap, o);
      if (row.workers === 1) base = r.tps;
      row.tokensPerS.push(r.tps);
      row.stepMs.push(r.step);
      row.exposedMs.push(r.exposed);
      row.wallMs.push(r.wall);
      row.computeMs.push(r.compute);
      row.imbalanceMs.push(r.imbalance);
      row.efficiency.push(r.tps / (row.workers * base));
      process.stderr.write(`  repeat ${rep + 1} ${row.label}: ${r.tps.toFixed(0)} tokens/s, step ${r.step.toFixed(0)} ms, exposed all-reduce ${r.exposed.toFixed(0)} ms of ${r.wall.toFixed(0)} ms, compute imbalance ${r.imbalance.toFixed(0)} ms\n`);
    }
  }
  if (json) {
    for (const r of rows) process.stdout.write(JSON.stringify({ ...o, label: r.label, tokens_per_s: medianFinite(r.tokensPerS), step_ms: medianFinite(r.stepMs), exposed_ms: medianFinite(r.exposedMs), allreduce_wall_ms: medianFinite(r.wallMs), compute_ms: medianFinite(r.computeMs), compute_imbalance_ms: medianFinite(r.imbalanceMs), efficiency: medianFinite(r.efficiency) }) + "\n");
    return;
  }
  process.stdout.write("| configuration | tokens/s | step ms | compute ms (slowest rank) | compute imbalance ms | all-reduce wall ms | exposed ms | exposed % of step | efficiency |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const r of rows) {
    const step = medianFinite(r.stepMs);
    const exposed = medianFinite(r.exposedMs);
    process.stdout.write(`| ${r.label} | ${medianFinite(r.tokensPerS).toFixed(0)} | ${step.toFixed(0)} | ${medianFinite(r.computeMs).toFixed(0)} | ${r.workers > 1 ? medianFinite(r.imbalanceMs).toFixed(0) : "-"} | ${r.workers > 1 ? medianFinite(r.wallMs).toFixed(0) : "-"} | ${r.workers > 1 ? exposed.toFixed(0) : "-"} | ${r.workers > 1 ? ((100 * exposed) / step).toFixed(1) + " %" : "-"} | ${medianFinite(r.efficiency).toFixed(2)} |\n`);
  }
}

if (require.main === module) main();
