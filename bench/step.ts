/**
 * Training-step benchmark: tokens/s and model-FLOPs utilisation of one BERT MLM step (forward, backward, AdamW),
 * beside the same model shape in PyTorch (../shared/peers/torch_bert_mlm.py) in the same run. A thin wrapper over
 * `launch bench step` (launch/bench/step.ts, where the FLOP formula is documented), keeping this script's flags:
 *
 *   npm run bench:step -- [--backend wasm|cpu|tensorflow|auto] [--steps 10] [--warmup 3] [--json] [--no-torch]
 *                         [--vocab 8192 --hidden 128 --layers 2 --heads 2 --ffn 512 --seq 128 --batch 16]
 *                         [--dropout 0] [--kernels] [--rounds 1]
 *
 * --kernels adds stock-vs-fixed timings of the wasm kernel fixes. --rounds N alternates torch and tfjs N times and
 * reports the median of the per-round ratios (steadier on a shared machine).
 */
import yargs from "yargs";
import type { BackendName } from "../shared/backend/select";
import { runStepBench } from "../launch/bench/step";

async function main(): Promise<void> {
  const argv = await yargs(process.argv.slice(2))
    .option("backend", { type: "string", requiresArg: true, default: "wasm", choices: ["auto", "tensorflow", "wasm", "cpu"] })
    .option("steps", { type: "number", requiresArg: true, default: 10 })
    .option("warmup", { type: "number", requiresArg: true, default: 3 })
    .option("json", { type: "boolean", default: false })
    .option("torch", { type: "boolean", default: true, describe: "also run the PyTorch reference (--no-torch to skip)" })
    .option("kernels", { type: "boolean", default: false })
    .option("rounds", { type: "number", requiresArg: true, default: 1, describe: "alternate torch and tfjs this many times; ratio = median over rounds" })
    .option("dropout", { type: "number", requiresArg: true, default: 0, describe: "dropout rate (the torch reference has none)" })
    .option("vocab", { type: "number", requiresArg: true, default: 8192 })
    .option("hidden", { type: "number", requiresArg: true, default: 128 })
    .option("layers", { type: "number", requiresArg: true, default: 2 })
    .option("heads", { type: "number", requiresArg: true, default: 2 })
    .option("ffn", { type: "number", requiresArg: true, default: 512 })
    .option("seq", { type: "number", requiresArg: true, default: 128 })
    .option("batch", { type: "number", requiresArg: true, default: 16 })
    .strict()
    .parse();
  const emit = (o: Record<string, unknown>): void => {
    if (argv.json) console.log(JSON.stringify(o));
    else console.log(Object.entries(o).map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(4) : v}`).join("  "));
  };
  const res = await runStepBench({
    shape: { vocab: argv.vocab, hidden: argv.hidden, layers: argv.layers, heads: argv.heads, ffn: argv.ffn, seq: argv.seq, batch: argv.batch },
    steps: argv.steps, warmup: argv.warmup, backend: argv.backend as BackendName, torch: argv.torch, kernels: argv.kernels, dropout: argv.dropout, rounds: argv.rounds,
  });
  if (res.torch) emit({ ...res.torch });
  else if (argv.torch) console.error(`torch reference skipped: ${res.torch_skipped}`);
  const { step_ms: _perStep, ...mine } = res.tfjs;
  emit({ ...mine, step_gflop: res.step_gflop, params: res.params, dropout: res.dropout });
  if (res.torch && res.ratio_tokens_per_s !== undefined) {
    if (res.rounds.length > 1) {
      const tokens = res.tokens_per_step;
      res.rounds.forEach((r, i) => emit({
        backend: `${res.tfjs.backend}/torch`, round: i + 1, ratio_tokens_per_s: r.ratio ?? NaN,
        tokens_per_s: tokens / (r.tfjs_step_ms / 1000), torch_tokens_per_s: r.torch_step_ms === undefined ? NaN : tokens / (r.torch_step_ms / 1000),
      }));
    }
    emit({ backend: `${res.tfjs.backend}/torch`, ratio_tokens_per_s: res.ratio_tokens_per_s, tokens_per_s: res.tfjs.tokens_per_s, torch_tokens_per_s: res.torch.tokens_per_s, rounds: res.rounds.length });
  }
  for (const row of res.kernels ?? []) emit({ backend: "wasm-kernel", ...row });
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
