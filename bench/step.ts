/**
 * Training-step benchmark: tokens/s and model-FLOPs utilisation of one BERT MLM step (forward, backward, AdamW),
 * beside the same model shape in PyTorch (/work/shared/peers/torch_bert_mlm.py) in the same run.
 *
 *   npm run bench:step -- [--backend wasm|cpu|tensorflow|auto] [--steps 10] [--warmup 3] [--json] [--no-torch]
 *                         [--vocab 8192 --hidden 128 --layers 2 --heads 2 --ffn 512 --seq 128 --batch 16]
 *                         [--dropout 0] [--kernels]
 *
 * Model FLOPs per step = 3 x forward, forward = 2*B*T*L*(4H^2 + 2HF) (linear layers) + 4*L*B*T^2*H (attention
 * scores and context) + 2*M*H^2 + 2*M*H*V (MLM head on the M masked positions) — the formula of torch_bert_mlm.py,
 * so both sides count the same work. MFU = achieved FLOP/s / the backend's own measured peak (1024^3 matmul).
 * Both sides run one thread (torch: --threads 1 and OPENBLAS_NUM_THREADS=1; tfjs-wasm is single-threaded in Node).
 * --kernels adds stock-vs-fixed timings of the wasm kernel fixes.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import yargs from "yargs";
import { selectBackend, type BackendName } from "../shared/backend/select";
import { setWasmFixes } from "../shared/backend/wasm-fixes";
import { bertConfig } from "../shared/model/config";
import { BertModel } from "../shared/model/bert";
import { countParams } from "../shared/model/params";
import { Rng } from "../shared/rng";
import type { Batch } from "../shared/train/batch";
import { Trainer } from "../shared/train/trainer";

const TORCH_SCRIPT = "/work/shared/peers/torch_bert_mlm.py";

interface Shape {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  ffn: number;
  seq: number;
  batch: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function stepFlop(s: Shape, masked: number): number {
  const bt = s.batch * s.seq;
  const fwd =
    2 * bt * s.layers * (4 * s.hidden * s.hidden + 2 * s.hidden * s.ffn) +
    s.layers * 2 * (2 * s.batch * s.seq * s.seq * s.hidden) +
    2 * masked * s.hidden * s.hidden +
    2 * masked * s.hidden * s.vocab;
  return 3 * fwd;
}

/** Like the torch script's batches: ids in [2, V), exactly round(0.15 * B*T) positions masked with id 1. */
function makeBatch(s: Shape, seed: number): Batch {
  const rng = new Rng(seed);
  const n = s.batch * s.seq;
  const inputIds = new Int32Array(n);
  for (let i = 0; i < n; i++) inputIds[i] = 2 + rng.int(s.vocab - 2);
  const mlmLabels = new Int32Array(n).fill(-100);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  rng.shuffle(order);
  for (const p of order.subarray(0, Math.round(0.15 * n))) {
    mlmLabels[p] = inputIds[p];
    inputIds[p] = 1;
  }
  return { batchSize: s.batch, seqLen: s.seq, inputIds, tokenTypeIds: new Int32Array(n), attentionMask: new Int32Array(n).fill(1), mlmLabels };
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

function runTorch(s: Shape, steps: number, warmup: number): Record<string, unknown> | string {
  if (!existsSync(TORCH_SCRIPT)) return `${TORCH_SCRIPT} not found`;
  const shapeArgs = ["--vocab", s.vocab, "--hidden", s.hidden, "--layers", s.layers, "--heads", s.heads, "--ffn", s.ffn, "--seq", s.seq, "--batch", s.batch].map(String);
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1" };
  const run = (mode: string) =>
    spawnSync("/usr/bin/python3", [TORCH_SCRIPT, "--threads", "1", "--mode", mode, "--steps", String(steps), "--warmup", String(warmup), ...shapeArgs], { env, encoding: "utf8" });
  const train = run("train");
  if (train.status !== 0) return `torch failed: ${(train.stderr || train.error?.message || "").trim().split("\n").pop()}`;
  const mm = run("matmul");
  const out = JSON.parse(train.stdout.trim().split("\n").pop() as string) as Record<string, unknown>;
  if (mm.status === 0) out["matmul_gflops"] = (JSON.parse(mm.stdout.trim().split("\n").pop() as string) as Record<string, unknown>)["matmul_gflops"];
  return out;
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

function kernelBench(): Record<string, unknown>[] {
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
  ];
  const rows: Record<string, unknown>[] = [];
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

async function main(): Promise<void> {
  const argv = await yargs(process.argv.slice(2))
    .option("backend", { type: "string", default: "wasm", choices: ["auto", "tensorflow", "wasm", "cpu"] })
    .option("steps", { type: "number", default: 10 })
    .option("warmup", { type: "number", default: 3 })
    .option("json", { type: "boolean", default: false })
    .option("torch", { type: "boolean", default: true, describe: "also run the PyTorch reference (--no-torch to skip)" })
    .option("kernels", { type: "boolean", default: false })
    .option("dropout", { type: "number", default: 0, describe: "dropout rate (the torch reference has none)" })
    .option("vocab", { type: "number", default: 8192 })
    .option("hidden", { type: "number", default: 128 })
    .option("layers", { type: "number", default: 2 })
    .option("heads", { type: "number", default: 2 })
    .option("ffn", { type: "number", default: 512 })
    .option("seq", { type: "number", default: 128 })
    .option("batch", { type: "number", default: 16 })
    .strict()
    .parse();
  const shape: Shape = { vocab: argv.vocab, hidden: argv.hidden, layers: argv.layers, heads: argv.heads, ffn: argv.ffn, seq: argv.seq, batch: argv.batch };
  const emit = (o: Record<string, unknown>): void => {
    if (argv.json) console.log(JSON.stringify(o));
    else console.log(Object.entries(o).map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(4) : v}`).join("  "));
  };
  const tokens = shape.batch * shape.seq;
  const masked = Math.round(0.15 * tokens);
  const flop = stepFlop(shape, masked);

  let torch: Record<string, unknown> | string | null = null;
  if (argv.torch) {
    torch = runTorch(shape, argv.steps, argv.warmup);
    if (typeof torch === "string") console.error(`torch reference skipped: ${torch}`);
    else {
      const ms = torch["step_ms_median"] as number;
      const peak = torch["matmul_gflops"] as number | undefined;
      emit({
        backend: "torch",
        threads: 1,
        tokens_per_s: tokens / (ms / 1000),
        step_ms_median: ms,
        step_ms_mean: torch["step_ms_mean"] as number,
        peak_gflops: peak ?? NaN,
        mfu: peak ? flop / (ms / 1000) / 1e9 / peak : NaN,
        blas: String(torch["blas"]),
      });
    }
  }

  const backend = await selectBackend(argv.backend as BackendName);
  const peak = peakGflops();
  const cfg = bertConfig(
    { hiddenSize: shape.hidden, numHiddenLayers: shape.layers, numAttentionHeads: shape.heads, intermediateSize: shape.ffn },
    shape.vocab,
    { maxPositionEmbeddings: Math.max(512, shape.seq), hiddenDropoutProb: argv.dropout, attentionProbsDropoutProb: argv.dropout },
  );
  const model = BertModel.create(cfg, 0, { pooler: false });
  const trainer = new Trainer(model, { schedule: { peakLr: 1e-4, warmupSteps: 0, totalSteps: 1e9, decay: "constant" }, adamw: { weightDecay: 0.01 }, dropoutSeed: 1 });
  const batches = [0, 1, 2, 3].map((i) => makeBatch(shape, 100 + i));
  const times: number[] = [];
  let loss = NaN;
  for (let i = 0; i < argv.warmup + argv.steps; i++) {
    const t0 = performance.now();
    loss = (await trainer.trainStep([batches[i % batches.length]])).mlmLoss;
    if (i >= argv.warmup) times.push(performance.now() - t0);
  }
  const ms = median(times);
  const mine = {
    backend: `tfjs-${backend}`,
    threads: 1,
    tokens_per_s: tokens / (ms / 1000),
    step_ms_median: ms,
    step_ms_mean: times.reduce((a, b) => a + b, 0) / times.length,
    peak_gflops: peak,
    mfu: flop / (ms / 1000) / 1e9 / peak,
    step_gflop: flop / 1e9,
    params: countParams(model.specs),
    loss_last: loss,
    dropout: argv.dropout,
  };
  emit(mine);
  if (torch !== null && typeof torch !== "string") {
    const torchTps = tokens / ((torch["step_ms_median"] as number) / 1000);
    emit({ backend: `tfjs-${backend}/torch`, ratio_tokens_per_s: mine.tokens_per_s / torchTps, tokens_per_s: mine.tokens_per_s, torch_tokens_per_s: torchTps });
  }
  if (argv.kernels && backend === "wasm") for (const row of kernelBench()) emit({ backend: "wasm-kernel", ...row });
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
