/**
 * `npm run bench:scaling [-- --workers 1,2 --steps 12 --preset bert-tiny --json]`
 *
 * Weak scaling of data-parallel pretraining through the real product: for each N, `launch --workers N` trains
 * with a fixed per-worker micro-batch (global batch = N x micro), and the run's metrics.jsonl gives tokens/s
 * and the per-rank time split. Efficiency = tokens/s(N) / (N x tokens/s(1)). Medians over the steps after the
 * first two (warm-up). On this 2-core machine every worker is single-threaded (wasm), so N = 2 uses both cores.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { repoRoot } from "../shared/paths";

interface Row {
  N: number;
  tokens_per_s: number;
  efficiency: number;
  step_ms: number;
  compute_ms: number;
  communication_ms: number;
  data_wait_ms: number;
  optimizer_ms: number;
  idle_ms: number;
  mfu: number;
}

interface MetricsLine {
  step: number;
  tokens_per_s: number;
  step_ms: number;
  mfu: number;
  per_rank: { compute_ms: number; communication_ms: number; data_wait_ms: number; optimizer_ms: number; idle_ms: number }[];
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function main(): void {
  const workers = arg("workers", "1,2").split(",").map(Number);
  const steps = Number(arg("steps", "12"));
  const preset = arg("preset", "bert-tiny");
  const micro = Number(arg("micro-batch", "16"));
  const json = process.argv.includes("--json");
  const config = path.join(repoRoot(), "examples", "pretrain-brown.yaml");
  const rows: Row[] = [];
  for (const n of workers) {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), `ringtrain-scaling-${n}-`));
    const args = [
      path.join(repoRoot(), "dist", "launch", "main.js"), config, "--workers", String(n), "--max-steps", String(steps), "--output", out, "--quiet",
      "--set", `model.preset=${preset}`, "--set", `batch.micro_batch_size=${micro}`, "--set", `batch.global_batch_size=${micro * n}`,
      "--set", "training.eval_interval_steps=0", "--set", "training.checkpoint_interval_steps=0", "--set", "schedule.warmup_steps=1",
      "--set", "model.hidden_dropout=0", "--set", "model.attention_dropout=0", "--backend", arg("backend", "wasm"),
    ];
    const r = spawnSync(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"] });
    if (r.status !== 0) throw new Error(`launch --workers ${n} failed with ${r.status}`);
    const lines = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as MetricsLine);
    const timed = lines.filter((l) => l.step > 2);
    const rankMedian = (f: (p: MetricsLine["per_rank"][number]) => number): number => median(timed.map((l) => Math.max(...l.per_rank.map(f))));
    rows.push({
      N: n,
      tokens_per_s: median(timed.map((l) => l.tokens_per_s)),
      efficiency: NaN,
      step_ms: median(timed.map((l) => l.step_ms)),
      compute_ms: rankMedian((p) => p.compute_ms),
      communication_ms: rankMedian((p) => p.communication_ms),
      data_wait_ms: rankMedian((p) => p.data_wait_ms),
      optimizer_ms: rankMedian((p) => p.optimizer_ms),
      idle_ms: rankMedian((p) => p.idle_ms),
      mfu: median(timed.map((l) => l.mfu)),
    });
    fs.rmSync(out, { recursive: true, force: true });
  }
  const base = rows.find((r) => r.N === 1)?.tokens_per_s;
  for (const r of rows) r.efficiency = base ? r.tokens_per_s / (r.N * base) : NaN;
  if (json) {
    for (const r of rows) process.stdout.write(JSON.stringify({ ...r, preset, micro_batch: micro, steps }) + "\n");
    return;
  }
  process.stdout.write(`\nweak scaling, ${preset}, seq 128, micro-batch ${micro} per worker, ${steps} steps (medians of steps 3..${steps}), ${os.cpus().length} cores\n`);
  process.stdout.write("   N   tokens/s  efficiency   step ms  compute  comm  data  optim  idle    MFU\n");
  for (const r of rows) {
    process.stdout.write(
      `${String(r.N).padStart(4)} ${r.tokens_per_s.toFixed(0).padStart(10)} ${r.efficiency.toFixed(3).padStart(11)} ${r.step_ms.toFixed(0).padStart(9)} ` +
        `${r.compute_ms.toFixed(0).padStart(8)} ${r.communication_ms.toFixed(0).padStart(5)} ${r.data_wait_ms.toFixed(0).padStart(5)} ${r.optimizer_ms.toFixed(0).padStart(6)} ` +
        `${r.idle_ms.toFixed(0).padStart(5)} ${(r.mfu * 100).toFixed(1).padStart(5)}%\n`,
    );
  }
}

main();
