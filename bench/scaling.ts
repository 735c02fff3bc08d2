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
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { defaultScalingConfig, formatScalingTables, runScalingBench } from "../launch/bench/scaling";
import { median, parseIntList } from "../launch/bench/common";

/** The flags of this script, parsed and checked. */
export interface ScalingBenchArgs {
  workers: number[];
  steps: number;
  preset: string;
  microBatch: number;
  backend: string;
  json: boolean;
  independent: boolean;
  repeats: number;
  balance: "even" | "adaptive";
}

function parseBalance(value: string): "even" | "adaptive" {
  if (value !== "even" && value !== "adaptive") throw new Error(`--balance: expected even or adaptive, got ${value}`);
  return value;
}

function parseRepeats(value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`--repeats: expected an integer >= 1, got ${value}`);
  return value;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): ScalingBenchArgs {
  const a = yargs(argv)
    .usage("npm run bench:scaling -- [flags]\n\nWeak scaling of data-parallel pretraining on examples/pretrain-brown.yaml: tokens/s per worker count, efficiency = tokens/s(N) / (N x tokens/s(1)).")
    .option("workers", { type: "string", default: "1,2", requiresArg: true, describe: "worker counts N, comma-separated", coerce: (v: string) => parseIntList(v, "workers", 1) })
    .option("steps", { type: "number", default: 12, requiresArg: true, describe: "steps per run (the first two are warm-up)" })
    .option("preset", { type: "string", default: "bert-tiny", requiresArg: true, describe: "model preset" })
    .option("micro-batch", { type: "number", default: 16, requiresArg: true, describe: "sequences per worker per step" })
    .option("backend", { type: "string", default: "wasm", requiresArg: true, describe: "TensorFlow.js backend" })
    .option("json", { type: "boolean", default: false, describe: "one JSON line per N (time split: the slowest rank's median)" })
    .option("independent", { type: "boolean", default: false, describe: "also run N single-worker jobs at once for each N > 1: the ceiling without communication" })
    .option("repeats", { type: "number", default: 1, requiresArg: true, describe: "run the whole set R times and print the medians", coerce: parseRepeats })
    .option("balance", { type: "string", default: "even", requiresArg: true, describe: "batch.balance of the multi-worker jobs: even, or adaptive (shares of the global batch by speed)", coerce: parseBalance })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  return {
    workers: a.workers, steps: a.steps, preset: a.preset, microBatch: a["micro-batch"], backend: a.backend,
    json: a.json, independent: a.independent, repeats: a.repeats, balance: a.balance,
  };
}

async function main(): Promise<void> {
  const a = parseArgs(hideBin(process.argv));
  const { preset, steps, repeats, json } = a;
  const micro = a.microBatch;
  const results = [];
  for (let k = 0; k < repeats; k++) {
    const res = await runScalingBench({
      config: defaultScalingConfig(),
      workers: a.workers,
      steps,
      warmupSteps: 2,
      microBatch: micro,
      backend: a.backend,
      set: [`model.preset=${preset}`, "model.hidden_dropout=0", "model.attention_dropout=0"],
      independent: a.independent,
      balance: a.balance,
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

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
