/**
 * `npm run bench:scaling [-- --workers 1,2 --steps 12 --preset bert-tiny --micro-batch 16 --backend wasm --json]`
 *
 * Weak scaling of data-parallel pretraining through the real product on examples/pretrain-brown.yaml: a thin
 * wrapper over `launch bench scaling` (launch/bench/scaling.ts) with this script's flags and defaults (bert-tiny,
 * micro-batch 16 per worker, dropout off). Efficiency = tokens/s(N) / (N x tokens/s(1)); medians over the steps
 * after the first two (warm-up). --json prints one JSON line per N (time split: the slowest rank's median).
 */
import { defaultScalingConfig, formatScalingTables, runScalingBench } from "../launch/bench/scaling";
import { parseIntList } from "../launch/bench/common";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const preset = arg("preset", "bert-tiny");
  const micro = Number(arg("micro-batch", "16"));
  const steps = Number(arg("steps", "12"));
  const res = await runScalingBench({
    config: defaultScalingConfig(),
    workers: parseIntList(arg("workers", "1,2"), "workers", 1),
    steps,
    warmupSteps: 2,
    microBatch: micro,
    backend: arg("backend", "wasm"),
    set: [`model.preset=${preset}`, "model.hidden_dropout=0", "model.attention_dropout=0"],
  });
  if (!process.argv.includes("--json")) {
    process.stdout.write("\n" + formatScalingTables(res));
    return;
  }
  for (const r of res.runs) {
    const slowest = (f: (p: (typeof r.per_rank)[number]) => number): number => Math.max(...r.per_rank.map(f));
    process.stdout.write(JSON.stringify({
      N: r.N, tokens_per_s: r.tokens_per_s, efficiency: r.efficiency, step_ms: r.step_ms,
      compute_ms: slowest((p) => p.compute_ms), communication_ms: slowest((p) => p.communication_ms), data_wait_ms: slowest((p) => p.data_wait_ms),
      optimizer_ms: slowest((p) => p.optimizer_ms), idle_ms: slowest((p) => p.idle_ms), mfu: r.mfu, preset, micro_batch: micro, steps,
    }) + "\n");
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
