/**
 * `launch bench step`: tokens/s and model-FLOPs utilisation of one BERT MLM training step (forward, backward,
 * AdamW) in this process, optionally beside the same model shape in PyTorch (../shared/peers/torch_bert_mlm.py,
 * --torch) measured in the same run.
 *
 * Model FLOPs per step = 3 x forward, forward = 2*B*T*L*(4H^2 + 2HF) (linear layers) + 4*L*B*T^2*H (attention
 * scores and context) + 2*M*H^2 + 2*M*H*V (MLM head on the M masked positions) — the formula of torch_bert_mlm.py,
 * so both sides count the same work. MFU = achieved FLOP/s / the backend's own measured peak (1024^3 matmul).
 * Both sides run one thread (torch: --threads 1 and OPENBLAS_NUM_THREADS=1; tfjs-wasm is single-threaded in Node).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { ArgumentsCamelCase, Argv, CommandModule } from "yargs";
import { selectBackend, type BackendName } from "../../shared/backend/select";
import { asInputError } from "../input-error";
import { setWasmFixes } from "../../shared/backend/wasm-fixes";
import { BERT_PRESETS, bertConfig, type BertPresetName } from "../../shared/model/config";
import { BertModel } from "../../shared/model/bert";
import { countParams } from "../../shared/model/params";
import { Rng } from "../../shared/rng";
import { repoRoot } from "../../shared/paths";
import { EXIT_OK } from "../../shared/exit-codes";
import type { Batch } from "../../shared/train/batch";
import { Trainer } from "../../shared/train/trainer";
import { checkInt, checkWritable, formatTable, median, syntheticMlmBatch, writeJsonFile } from "./common";
import { colour, countCharts, writeHtmlReport, type Report } from "./report";

/** The model and batch shape of the benchmark. */
export interface StepShape {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  ffn: number;
  seq: number;
  batch: number;
}

/** What `runStepBench` measures. */
export interface StepOptions {
  shape: StepShape;
  /** Name of the preset the shape came from (for the report), if any. */
  preset?: string;
  steps: number;
  warmup: number;
  backend: BackendName;
  /** Also run the PyTorch reference. */
  torch: boolean;
  torchScript?: string;
  /** Also time the wasm kernel fixes against the stock kernels (wasm only). */
  kernels?: boolean;
  /** Dropout rate (the torch reference has none). */
  dropout?: number;
  /**
   * Alternate the two sides this many times (torch, tfjs, torch, tfjs, ...; default 1). On a shared, noisy
   * machine a ratio taken from one pair can be off by a third; the median of per-round ratios is steadier.
   */
  rounds?: number;
}

/** One round of an alternating measurement: each side's median step time and their tokens/s ratio. */
export interface StepRound {
  tfjs_step_ms: number;
  torch_step_ms?: number;
  /** tfjs tokens/s over torch tokens/s in this round. */
  ratio?: number;
}

/** One side's measurement. */
export interface StepSide {
  backend: string;
  threads: number;
  tokens_per_s: number;
  step_ms_median: number;
  step_ms_mean: number;
  /** Fastest timed step (the torch side: fastest over rounds). */
  step_ms_min?: number;
  peak_gflops: number;
  mfu: number;
  /** Every timed step, ms (tfjs side). */
  step_ms?: number[];
  loss_last?: number;
  blas?: string;
}

/** Stock vs fixed timing of one wasm kernel. */
export interface KernelRow {
  kernel: string;
  stock_ms: number;
  fixed_ms: number;
  speedup: number;
}

/** Everything `launch bench step` measured (what --json writes). */
export interface StepResult {
  kind: "step";
  date: string;
  cpu_cores: number;
  cpu_model: string;
  preset?: string;
  shape: StepShape;
  steps: number;
  warmup: number;
  dropout: number;
  tokens_per_step: number;
  step_gflop: number;
  params: number;
  tfjs: StepSide;
  torch?: StepSide;
  /** Why the PyTorch side was not measured (not asked, or unavailable). */
  torch_skipped?: string;
  /** tfjs tokens/s over torch tokens/s: the median of the per-round ratios. */
  ratio_tokens_per_s?: number;
  /** Each round's medians (one entry unless --rounds). */
  rounds: StepRound[];
  kernels?: KernelRow[];
}

/** The shape of a preset (intermediate = 4 x hidden, vocab 8192, sequence 128, batch 16 unless given). */
export function presetShape(preset: BertPresetName, o: Partial<Pick<StepShape, "vocab" | "seq" | "batch">> = {}): StepShape {
  const p = BERT_PRESETS[preset];
  return { vocab: o.vocab ?? 8192, hidden: p.hiddenSize, layers: p.numHiddenLayers, heads: p.numAttentionHeads, ffn: 4 * p.hiddenSize, seq: o.seq ?? 128, batch: o.batch ?? 16 };
}

/** Model FLOPs of one training step (3 x forward) with `masked` MLM targets. */
export function stepFlop(s: StepShape, masked: number): number {
  const bt = s.batch * s.seq;
  const fwd =
    2 * bt * s.layers * (4 * s.hidden * s.hidden + 2 * s.hidden * s.ffn) +
    s.layers * 2 * (2 * s.batch * s.seq * s.seq * s.hidden) +
    2 * masked * s.hidden * s.hidden +
    2 * masked * s.hidden * s.vocab;
  return 3 * fwd;
}

/** Like the torch script's batches: ids in [2, V), exactly round(0.15 * B*T) positions masked with id 1. */
function makeBatch(s: StepShape, seed: number): Batch {
  return syntheticMlmBatch(new Rng(seed), s.batch, s.seq, s.vocab, { firstId: 2, maskId: 1 });
}

/** Median GFLOP/s of a 1024^3 matmul on the active backend. */
function peakGflops(): number {
  const a = tf.randomNormal([1024, 1024]);
  const b = tf.randomNormal([1024, 1024]);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    // (never return a typed array from tidy: it walks every element looking for tensors)
    tf.tidy(() => void tf.matMul(a, b).dataSync());
    if (i >= 2) times.push(performance.now() - t0);
  }
  tf.dispose([a, b]);
  return (2 * 1024 ** 3) / (median(times) / 1000) / 1e9;
}

/** The PyTorch reference script's default place: shared/peers/ beside the repository (not needed by the product). */
export function defaultTorchScript(): string {
  return path.join(repoRoot(), "..", "shared", "peers", "torch_bert_mlm.py");
}

function runTorch(script: string, s: StepShape, steps: number, warmup: number, flop: number): StepSide | string {
  if (!existsSync(script)) return `${script} not found`;
  const shapeArgs = ["--vocab", s.vocab, "--hidden", s.hidden, "--layers", s.layers, "--heads", s.heads, "--ffn", s.ffn, "--seq", s.seq, "--batch", s.batch].map(String);
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1" };
  const run = (mode: string) =>
    spawnSync("/usr/bin/python3", [script, "--threads", "1", "--mode", mode, "--steps", String(steps), "--warmup", String(warmup), ...shapeArgs], { env, encoding: "utf8" });
  const train = run("train");
  if (train.status !== 0) return `torch failed: ${(train.stderr || train.error?.message || "").trim().split("\n").pop()}`;
  const mm = run("matmul");
  const out = JSON.parse(train.stdout.trim().split("\n").pop() as string) as Record<string, unknown>;
  const peak = mm.status === 0 ? Number((JSON.parse(mm.stdout.trim().split("\n").pop() as string) as Record<string, unknown>)["matmul_gflops"]) : NaN;
  const ms = Number(out["step_ms_median"]);
  const tokens = s.batch * s.seq;
  return {
    backend: "torch", threads: 1, tokens_per_s: tokens / (ms / 1000), step_ms_median: ms, step_ms_mean: Number(out["step_ms_mean"]), step_ms_min: Number(out["step_ms_min"]),
    peak_gflops: peak, mfu: flop / (ms / 1000) / 1e9 / peak, blas: String(out["blas"]),
  };
}

/** Times fn (median of reps after one warm-up), in ms. */
function timeMs(fn: () => void, reps = 5): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function kernelBench(): KernelRow[] {
  const x = tf.randomNormal([2048, 512]);
  const dy = tf.randomNormal([2048, 128]);
  const emb = tf.randomNormal([8192, 128]);
  const ids = tf.randomUniformInt([2048], 0, 8192);
  const q = tf.randomNormal([32, 128, 64]);
  const cases: [string, () => void][] = [
    ["matmul dW = x^T dy [2048,512]^T[2048,128]", () => tf.tidy(() => void tf.matMul(x, dy, true, false).dataSync())],
    ["matmul dX = dy W^T [2048,128][512,128]^T", () => tf.tidy(() => void tf.matMul(dy, tf.slice(x, [0, 0], [512, 128]), false, true).dataSync())],
    ["batched attention [32,128,64][32,128,64]^T", () => tf.tidy(() => void tf.matMul(q, q, false, true).dataSync())],
    ["unstack 32 of [32,128,64]", () => tf.tidy(() => void tf.unstack(q))],
    ["gather 2048 rows of [8192,128]", () => tf.tidy(() => void tf.gather(emb, ids).dataSync())],
    ["sum over rows [2048,512]", () => tf.tidy(() => void tf.sum(x, 0).dataSync())],
    // wasm kernels run synchronously: no read-back needed (reading a fresh 4 MB result costs more than the transpose)
    ["transpose [8192,128]", () => tf.tidy(() => void tf.transpose(emb))],
    ["clone (Identity) [2048,512] x 20", () => tf.tidy(() => void Array.from({ length: 20 }, () => tf.clone(x)))],
  ];
  const rows: KernelRow[] = [];
  for (const [name, fn] of cases) {
    setWasmFixes(false);
    const stock = timeMs(fn, 3);
    setWasmFixes(true);
    const fixed = timeMs(fn, 3);
    rows.push({ kernel: name, stock_ms: +stock.toFixed(2), fixed_ms: +fixed.toFixed(2), speedup: +(stock / fixed).toFixed(1) });
  }
  tf.dispose([x, dy, emb, ids, q]);
  return rows;
}

/**
 * Runs the benchmark: the torch side first (when asked), then tfjs on the selected backend in this process; with
 * `rounds` > 1 the two alternate, and the ratio is the median of the rounds' ratios.
 */
export async function runStepBench(o: StepOptions): Promise<StepResult> {
  const shape = o.shape;
  for (const [k, v] of Object.entries(shape)) checkInt(v, k, 1);
  // the synthetic batches draw token ids from [2, vocab) (0 and 1 are padding and [MASK]): at least one real token
  checkInt(shape.vocab, "vocab", 3);
  checkInt(o.steps, "steps", 1);
  checkInt(o.warmup, "warmup", 0);
  const tokens = shape.batch * shape.seq;
  const masked = Math.round(0.15 * tokens);
  const flop = stepFlop(shape, masked);
  const roundCount = o.rounds ?? 1;
  checkInt(roundCount, "rounds", 1);
  let torchSkipped: string | undefined = o.torch ? undefined : "not asked (--torch)";
  const torchRounds: StepSide[] = [];
  const measureTorch = (): void => {
    if (torchSkipped !== undefined) return; // not asked, or unavailable: no retry every round
    const side = runTorch(o.torchScript ?? defaultTorchScript(), shape, o.steps, o.warmup, flop);
    if (typeof side === "string") torchSkipped = side;
    else torchRounds.push(side);
  };
  // the backend first: a missing one is bad input, found before the torch side spends its minutes
  const backend = await selectBackend(o.backend).catch((e: unknown) => {
    throw asInputError(e, "bench step: --backend: ");
  });
  measureTorch();

  const peak = peakGflops();
  const dropout = o.dropout ?? 0;
  const cfg = bertConfig(
    { hiddenSize: shape.hidden, numHiddenLayers: shape.layers, numAttentionHeads: shape.heads, intermediateSize: shape.ffn },
    shape.vocab,
    { maxPositionEmbeddings: Math.max(512, shape.seq), hiddenDropoutProb: dropout, attentionProbsDropoutProb: dropout },
  );
  const model = BertModel.create(cfg, 0, { pooler: false });
  try {
    const trainer = new Trainer(model, { schedule: { peakLr: 1e-4, warmupSteps: 0, totalSteps: 1e9, decay: "constant" }, adamw: { weightDecay: 0.01 }, dropoutSeed: 1 });
    const batches = [0, 1, 2, 3].map((i) => makeBatch(shape, 100 + i));
    const times: number[] = [];
    const rounds: StepRound[] = [];
    let loss = NaN;
    let i = 0;
    for (let r = 0; r < roundCount; r++) {
      if (r > 0) measureTorch();
      const warm = r === 0 ? o.warmup : 0;
      const mine: number[] = [];
      for (let j = 0; j < warm + o.steps; j++, i++) {
        const t0 = performance.now();
        loss = (await trainer.trainStep([batches[i % batches.length]])).mlmLoss;
        if (j >= warm) mine.push(performance.now() - t0);
      }
      times.push(...mine);
      const round: StepRound = { tfjs_step_ms: median(mine) };
      const theirs = torchRounds[r];
      if (theirs !== undefined) {
        round.torch_step_ms = theirs.step_ms_median;
        round.ratio = theirs.step_ms_median / round.tfjs_step_ms;
      }
      rounds.push(round);
    }
    let torch: StepSide | undefined;
    if (torchRounds.length > 0) {
      const ms = median(torchRounds.map((t) => t.step_ms_median));
      const torchPeak = median(torchRounds.map((t) => t.peak_gflops));
      const mean = torchRounds.reduce((a, t) => a + t.step_ms_mean, 0) / torchRounds.length;
      const fastest = Math.min(...torchRounds.map((t) => t.step_ms_min ?? Infinity));
      torch = { ...torchRounds[0], tokens_per_s: tokens / (ms / 1000), step_ms_median: ms, step_ms_mean: mean, step_ms_min: fastest, peak_gflops: torchPeak, mfu: flop / (ms / 1000) / 1e9 / torchPeak };
    }
    const ms = median(times);
    const tfjs: StepSide = {
      backend: `tfjs-${backend}`, threads: 1, tokens_per_s: tokens / (ms / 1000), step_ms_median: ms,
      step_ms_mean: times.reduce((a, b) => a + b, 0) / times.length, step_ms_min: Math.min(...times), peak_gflops: peak, mfu: flop / (ms / 1000) / 1e9 / peak, step_ms: times, loss_last: loss,
    };
    const kernels = o.kernels && backend === "wasm" ? kernelBench() : undefined;
    const cpus = os.cpus();
    return {
      kind: "step", date: new Date().toISOString(), cpu_cores: cpus.length, cpu_model: cpus[0]?.model ?? "unknown", ...(o.preset ? { preset: o.preset } : {}),
      shape, steps: o.steps, warmup: o.warmup, dropout, tokens_per_step: tokens, step_gflop: flop / 1e9, params: countParams(model.specs), tfjs,
      rounds,
      ...(torch === undefined
        ? { torch_skipped: torchSkipped ?? "not measured" }
        : { torch, ratio_tokens_per_s: median(rounds.flatMap((x) => (x.ratio === undefined ? [] : [x.ratio]))) }),
      ...(kernels ? { kernels } : {}),
    };
  } finally {
    model.dispose();
  }
}

/** The table `launch bench step` prints. */
export function formatStepTable(r: StepResult): string {
  const s = r.shape;
  let out = `one training step (forward, backward, AdamW) of ${r.preset ?? "a BERT encoder"}: ${s.layers} layers, hidden ${s.hidden}, ${s.heads} heads, ffn ${s.ffn}, vocab ${s.vocab}; `
    + `batch ${s.batch} x seq ${s.seq} = ${r.tokens_per_step} tokens, ${r.step_gflop.toFixed(2)} GFLOP per step, ${(r.params / 1e6).toFixed(2)}M params\n`;
  out += `medians of ${r.steps} steps after ${r.warmup} warm-up; MFU = model FLOP/s / the backend's measured peak (1024^3 matmul); one thread per side\n\n`;
  const sides = [r.tfjs, ...(r.torch ? [r.torch] : [])];
  out += formatTable(["backend", "tokens/s", "step ms", "fastest step ms", "peak GFLOP/s", "MFU"], sides.map((x) => [
    x.backend, x.tokens_per_s.toFixed(0), x.step_ms_median.toFixed(1), x.step_ms_min?.toFixed(1) ?? "—", x.peak_gflops.toFixed(1), `${(x.mfu * 100).toFixed(1)}%`,
  ]));
  if (r.rounds.length > 1) {
    out += `\n${r.rounds.length} alternating rounds (each side's median step ms, ratio of tokens/s):\n`;
    out += formatTable(["round", `${r.tfjs.backend} ms`, "torch ms", "ratio"], r.rounds.map((x, i) => [
      String(i + 1), x.tfjs_step_ms.toFixed(1), x.torch_step_ms?.toFixed(1) ?? "—", x.ratio?.toFixed(3) ?? "—",
    ]));
  }
  if (r.ratio_tokens_per_s !== undefined) {
    const of = r.rounds.length > 1 ? ` (median of ${r.rounds.filter((x) => x.ratio !== undefined).length} rounds)` : "";
    out += `\n${r.tfjs.backend} / torch tokens/s: ${r.ratio_tokens_per_s.toFixed(2)}${of}\n`;
  }
  if (r.torch_skipped !== undefined && !r.torch_skipped.startsWith("not asked")) out += `\ntorch reference skipped: ${r.torch_skipped}\n`;
  return out;
}

/** The HTML report of a step result: tokens/s and MFU per side, step time over the timed steps. */
export function stepReport(r: StepResult, command: string): Report {
  const sides = [r.tfjs, ...(r.torch ? [r.torch] : [])];
  const s = r.shape;
  return {
    title: `ringtrain training-step benchmark: ${r.preset ?? `hidden ${s.hidden}, ${s.layers} layers`}`,
    notes: [
      command,
      `${r.date}; ${r.cpu_cores} CPU cores (${r.cpu_model}); one thread per side`,
      `batch ${s.batch} x seq ${s.seq} = ${r.tokens_per_step} tokens per step, ${r.step_gflop.toFixed(2)} GFLOP per step, ${r.params} parameters; medians of ${r.steps} steps after ${r.warmup} warm-up`,
      r.torch_skipped ? `PyTorch reference not measured: ${r.torch_skipped}` : "PyTorch reference measured in the same run.",
    ],
    sections: [{
      heading: "Throughput and MFU",
      notes: ["MFU = model FLOP/s / the backend's own measured peak (median 1024^3 matmul)"],
      tables: [{
        columns: ["backend", "tokens/s", "step ms (median)", "step ms (mean)", "peak GFLOP/s", "MFU %"],
        rows: sides.map((x) => [x.backend, Math.round(x.tokens_per_s), x.step_ms_median, x.step_ms_mean, x.peak_gflops, x.mfu * 100]),
      }],
      charts: [
        { title: "tokens/s", config: { type: "bar", data: { labels: sides.map((x) => x.backend), datasets: [{ label: "tokens/s", data: sides.map((x) => x.tokens_per_s), backgroundColor: sides.map((_, i) => colour(i, 0.75)) }] }, options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } } } },
        { title: "MFU (%)", config: { type: "bar", data: { labels: sides.map((x) => x.backend), datasets: [{ label: "MFU %", data: sides.map((x) => x.mfu * 100), backgroundColor: sides.map((_, i) => colour(i, 0.75)) }] }, options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } } } },
        {
          title: `${r.tfjs.backend}: time of each timed step (ms)`,
          config: {
            type: "line",
            data: { datasets: [{ label: "step ms", data: (r.tfjs.step_ms ?? []).map((ms, i) => ({ x: r.warmup + i + 1, y: ms })), borderColor: colour(0), backgroundColor: colour(0, 0.3) }] },
            options: { scales: { x: { type: "linear", ticks: { stepSize: 1 }, title: { display: true, text: "step" } }, y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
          },
        },
      ],
    }],
  };
}

/** Arguments of `launch bench step`. */
interface StepArgs {
  preset: string;
  steps: number;
  warmup: number;
  batch: number;
  seq: number;
  vocab: number;
  backend: string;
  torch: boolean;
  rounds: number;
  json?: string;
  html?: string;
}

/** The `launch bench step` subcommand. */
export function stepCommand(setCode: (code: number) => void): CommandModule<object, StepArgs> {
  return {
    command: "step",
    describe: "tokens/s and MFU of one training step in this process, optionally beside PyTorch (--torch)",
    builder: (y: Argv<object>): Argv<StepArgs> =>
      y
        .option("preset", { type: "string", default: "bert-tiny", choices: Object.keys(BERT_PRESETS), describe: "model shape" })
        .option("steps", { type: "number", default: 10, describe: "timed steps" })
        .option("warmup", { type: "number", default: 3, describe: "untimed steps first" })
        .option("batch", { type: "number", default: 16, describe: "sequences per step" })
        .option("seq", { type: "number", default: 128, describe: "sequence length" })
        .option("vocab", { type: "number", default: 8192 })
        .option("backend", { type: "string", default: "auto", choices: ["auto", "tensorflow", "wasm", "cpu"] })
        .option("torch", { type: "boolean", default: false, describe: "also run the PyTorch reference (needs /usr/bin/python3 with torch)" })
        .option("rounds", { type: "number", default: 1, describe: "alternate the two sides this many times; the ratio is the median over rounds" })
        .option("json", { type: "string", describe: "write the results to FILE" })
        .option("html", { type: "string", describe: "write a self-contained HTML report with charts to FILE" }) as unknown as Argv<StepArgs>,
    handler: async (a: ArgumentsCamelCase<StepArgs>): Promise<void> => {
      checkWritable(a.json, "json");
      checkWritable(a.html, "html");
      const shape = presetShape(a.preset as BertPresetName, { vocab: a.vocab, seq: a.seq, batch: a.batch });
      const res = await runStepBench({ shape, preset: a.preset, steps: a.steps, warmup: a.warmup, backend: a.backend as BackendName, torch: a.torch, rounds: a.rounds });
      process.stdout.write(formatStepTable(res));
      if (a.json !== undefined) {
        writeJsonFile(a.json, res);
        process.stdout.write(`results: ${a.json}\n`);
      }
      if (a.html !== undefined) {
        const report = stepReport(res, `launch ${process.argv.slice(2).join(" ")}`);
        writeHtmlReport(a.html, report);
        process.stdout.write(`report (${countCharts(report)} charts): ${a.html}\n`);
      }
      setCode(EXIT_OK);
    },
  };
}
