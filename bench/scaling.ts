/**
 * `npm run bench:scaling [-- --workers 1,2 --steps 12 --preset bert-tiny --micro-batch 16 --backend wasm --json --independent --repeats 1]`
 *
 * Weak scaling of data-parallel pretraining through the real product on examples/pretrain-brown.yaml: a thin
 * wrapper over `launch bench scaling` (launch/bench/scaling.ts) with this script's flags and defaults (bert-tiny,
 * micro-batch 16 per worker, dropout off). Efficiency = tokens/s(N) / (N x tokens/s(1)); medians over the steps
 * after the first two (warm-up). --json prints one JSON line per N (time split: the slowest rank's median).
 * --independent also runs N single-worker jobs at once for each N > 1: the machine's ceiling without communication.
 * --repeats R runs the whole set R times and prints the medians (one repeat can be off by a third on a shared host).
 * --balance adaptive runs the multi-worker jobs with batch.balance: adaptive (shares of the global batch by speed).
 */
import { defaultScalingConfig, formatScalingTables, runScalingBench } from "../launch/bench/scaling";
import { median, parseIntList } from "../launch/bench/common";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

function parseBalance(value: string): "even" | "adaptive" {
  if (value !== "even" && value !== "adaptive") throw new Error(`--balance: expected even or adaptive, got ${value}`);
  return value;
}

async function main(): Promise<void> {
  const preset = arg("preset", "bert-tiny");
  const micro = Number(arg("micro-batch", "16"));
  const steps = Number(arg("steps", "12"));
  const repeats = Number(arg("repeats", "1"));
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats: expected an integer >= 1, got ${arg("repeats", "1")}`);
  const json = process.argv.includes("--json");
  const results = [];
  for (let k = 0; k < repeats; k++) {
    const res = await runScalingBench({
      config: defaultScalingConfig(),
      workers: parseIntList(arg("workers", "1,2"), "workers", 1),
      steps,
      warmupSteps: 2,
      microBatch: micro,
      backend: arg("backend", "wasm"),
      set: [`model.preset=${preset}`, "model.hidden_dropout=0", "model.attention_dropout=0"],
      independent: process.argv.includes("--independent"),
      balance: parseBalance(arg("balance", "even")),
    });
    results.push(res);
    if (!json) {
      process.stdout.write(`\n${repeats > 1 ? `repeat ${k + 1} of ${repeats}\n` : ""}` + formatScalingTables(res));
      continue;
    }
    for (const r of res.runs) {
      const ind = res.independent?.find((x) => x.N === r.N);
      const slowest = (f: (p: (typeof r.per_rank)[number]) => number): number => Math.max(...r.per_rank.map(f));
      process.stdout.write(JSON.stringify({
        N: r.N, tokens_per_s: r.tokens_per_s, efficiency: r.efficiency, step_ms: r.step_ms,
        compute_ms: slowest((p) => p.compute_ms), communication_ms: slowest((p) => p.communication_ms), data_wait_ms: slowest((p) => p.data_wait_ms),
        optimizer_ms: slowest((p) => p.optimizer_ms), idle_ms: slowest((p) => p.idle_ms), mfu: r.mfu, preset, micro_batch: micro, steps,
        ...(repeats > 1 ? { repeat: k + 1 } : {}),
        ...(ind ? { independent_tokens_per_s: ind.tokens_per_s, independent_efficiency: ind.efficiency } : {}),
      }) + "\n");
    }
  }
  if (repeats > 1 && !json) {
    // On a shared machine one repeat can be off by a third; the medians over repeats are the figures to quote.
    const ns = results[0].runs.map((r) => r.N).filter((n) => n > 1);
    process.stdout.write(`\nmedians over ${repeats} repeats (each repeat: N = 1, then each N${results[0].independent ? ", then the independent jobs" : ""}):\n`);
    for (const n of ns) {
      const eff = results.map((res) => res.runs.find((r) => r.N === n)?.efficiency ?? NaN);
      const ceil = results.map((res) => res.independent?.find((x) => x.N === n)?.efficiency ?? NaN);
      const line = `N=${n}: efficiency ${eff.map((e) => e.toFixed(3)).join(" ")} -> median ${median(eff).toFixed(3)}`;
      const extra = results[0].independent ? `; ceiling ${ceil.map((e) => e.toFixed(3)).join(" ")} -> median ${median(ceil).toFixed(3)}; of ceiling ${eff.map((e, i) => (e / ceil[i]).toFixed(3)).join(" ")} -> median ${median(eff.map((e, i) => e / ceil[i])).toFixed(3)}` : "";
      process.stdout.write(line + extra + "\n");
    }
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
