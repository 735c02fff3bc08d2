import * as path from "node:path";
import { repoRoot } from "../shared/paths";
import { EXIT_OK } from "../shared/exit-codes";
import { launchTraining } from "./train";
import { fillMask } from "./fill-mask";

/** The README's first command: a short real pretraining run on Brown with N workers, then fill-mask. */
export async function runDemo(opts: { workers: number; maxSteps: number; output: string }): Promise<number> {
  const config = path.join(repoRoot(), "examples", "pretrain-brown.yaml");
  process.stderr.write(`demo: pretraining bert-tiny on the Brown corpus with ${opts.workers} workers for ${opts.maxSteps} steps (${config})\n`);
  const code = await launchTraining({
    config,
    workers: opts.workers,
    overwrite: true, // the demo's run directory is replaced on every run
    overrides: { maxSteps: opts.maxSteps, output: opts.output, set: ["schedule.warmup_steps=10", `training.eval_interval_steps=${Math.max(1, Math.floor(opts.maxSteps / 3))}`] },
  });
  if (code !== EXIT_OK) return code;
  const sentences = ["the jury said the [MASK] was well conducted .", "he went back to the [MASK] to get his coat .", "it was the [MASK] time that she had seen him ."];
  const results = await fillMask(opts.output, sentences, { topK: 5, backend: "auto" });
  process.stdout.write("\nfill-mask with the trained model:\n");
  for (const r of results) {
    process.stdout.write(`  ${r.text}\n    -> ${r.candidates.map((c) => `${c.token} (${(c.prob * 100).toFixed(1)}%)`).join(", ")}\n`);
  }
  // the same frequent tokens for every sentence is expected this early, not a bug: say so
  process.stdout.write(
    `\n(${opts.maxSteps} steps leave bert-tiny on the unigram plateau of masked-LM pretraining: it predicts frequent tokens,\n` +
      ` much the same for every sentence, while its loss falls. Leaving it takes many thousands of steps (docs/RESULTS.md:\n` +
      ` still on it at 1,000); train longer with npm run launch -- --workers 2 examples/pretrain-brown.yaml --max-steps N)\n`,
  );
  return EXIT_OK;
}
