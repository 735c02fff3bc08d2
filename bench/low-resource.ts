/**
 * The low-resource experiment (npm run experiment:low-resource -- [flags]):
 *   1. pretrain a small BERT on the Brown corpus with MLM (launch, real workers and ring);
 *   2. fine-tune it on SpamAssassin (ham vs spam) keeping 1%, 10% and 100% of the training labels, with each method,
 *      and train the same architecture from random initialisation ("scratch") on the same labels; several seeds;
 *   3. write results.json, results.md (method x label fraction -> test accuracy / macro-F1 with spread over seeds,
 *      trainable %, bytes all-reduced per step, wall time) and plot.svg into the output directory.
 * Every run is a real `launch` (coordinator + worker processes); the numbers are read back from the run directories.
 *
 * Flags: --out DIR  --preset NAME  --pretrain-steps N  --finetune-steps N  --seeds 1,2,3  --methods full,lora,...
 *        --fractions 0.01,0.1,1  --workers N  --max-seq-len N  --vocab-size N  --batch N  --lr X  --peft-lr X
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";

interface Options {
  out: string;
  preset: string;
  pretrainSteps: number;
  finetuneSteps: number;
  seeds: number[];
  methods: string[];
  fractions: number[];
  workers: number;
  maxSeqLen: number;
  vocabSize: number;
  batch: number;
  lr: number;
  peftLr: number;
}

/** One fine-tuning run's outcome. */
interface RunResult {
  method: string;
  fraction: number;
  seed: number;
  accuracy: number;
  macroF1: number;
  trainablePercent: number;
  trainable: number;
  allreduceBytes: number;
  wallS: number;
  trainExamples: number;
}

/** Generous deadlines: on a shared machine a starved worker must not be declared dead mid-experiment. */
const SHARED_MACHINE = { heartbeat_timeout_ms: 300_000, timeout_ms: 600_000 };

const ALL_METHODS = ["full", "lora", "adapter", "bitfit", "prefix", "prompt", "freeze", "scratch"];

function parseArgs(argv: string[]): Options {
  const o: Options = {
    out: "runs/low-resource", preset: "bert-tiny", pretrainSteps: 300, finetuneSteps: 60, seeds: [1], methods: ALL_METHODS,
    fractions: [0.01, 0.1, 1], workers: 1, maxSeqLen: 64, vocabSize: 8192, batch: 16, lr: 1e-3, peftLr: 5e-3,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`flag ${flag} needs a value`);
    const list = (): string[] => value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const num = (): number => {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`${flag}: not a number: ${value}`);
      return n;
    };
    switch (flag) {
      case "--out": o.out = value; break;
      case "--preset": o.preset = value; break;
      case "--pretrain-steps": o.pretrainSteps = num(); break;
      case "--finetune-steps": o.finetuneSteps = num(); break;
      case "--seeds": o.seeds = list().map(Number); break;
      case "--methods": o.methods = list(); break;
      case "--fractions": o.fractions = list().map(Number); break;
      case "--workers": o.workers = num(); break;
      case "--max-seq-len": o.maxSeqLen = num(); break;
      case "--vocab-size": o.vocabSize = num(); break;
      case "--batch": o.batch = num(); break;
      case "--lr": o.lr = num(); break;
      case "--peft-lr": o.peftLr = num(); break;
      default: throw new Error(`unknown flag ${flag}`);
    }
  }
  for (const m of o.methods) if (!ALL_METHODS.includes(m)) throw new Error(`--methods: unknown method ${m} (known: ${ALL_METHODS.join(", ")})`);
  return o;
}

function launch(args: string[]): number {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [path.join(__dirname, "..", "launch", "main.js"), ...args], { stdio: ["ignore", "ignore", "inherit"] });
  if (r.status !== 0) throw new Error(`launch ${args.join(" ")} exited with ${r.status}`);
  return (Date.now() - t0) / 1000;
}

function writeYaml(file: string, cfg: Record<string, unknown>): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, stringify(cfg));
  return file;
}

function pretrain(o: Options): string {
  const dir = path.resolve(o.out, "pretrain");
  if (fs.existsSync(path.join(dir, "checkpoints"))) {
    process.stderr.write(`experiment: reusing the pretrained model in ${dir}\n`);
    return dir;
  }
  const cfg = {
    name: "lr-pretrain", output_dir: dir, seed: 42, backend: "wasm",
    model: { preset: o.preset, max_position_embeddings: 128 },
    tokenizer: { vocab_size: o.vocabSize },
    data: { corpus: "brown", max_seq_len: o.maxSeqLen, validation_fraction: 0.02 },
    batch: { global_batch_size: 32, micro_batch_size: 16 },
    optimizer: { lr: 2e-3 }, schedule: { warmup_steps: Math.min(50, Math.floor(o.pretrainSteps / 10)) },
    training: { max_steps: o.pretrainSteps, eval_interval_steps: Math.max(1, Math.floor(o.pretrainSteps / 4)), eval_sequences: 128, checkpoint_interval_steps: 0 },
    communication: SHARED_MACHINE,
  };
  const wall = launch([writeYaml(path.join(o.out, "configs", "pretrain.yaml"), cfg), "--workers", String(o.workers), "--quiet"]);
  process.stderr.write(`experiment: pretrained ${o.preset} on Brown for ${o.pretrainSteps} steps in ${wall.toFixed(0)} s\n`);
  return dir;
}

function finetune(o: Options, base: string, method: string, fraction: number, seed: number): RunResult {
  const tag = `${method}-f${fraction}-s${seed}`;
  const dir = path.resolve(o.out, "finetune", tag);
  const full = method === "full" || method === "scratch" || method === "freeze";
  const cfg = {
    name: `lr-${tag}`, output_dir: dir, seed, backend: "wasm", task: "classification",
    finetune: {
      base_model: base, method: method === "scratch" ? "full" : method, init: method === "scratch" ? "random" : "pretrained",
      label_fraction: fraction, test_fraction: 0.2,
      ...(method === "prompt" ? { prompt: { num_virtual_tokens: 10 } } : {}),
      ...(method === "prefix" ? { prefix: { num_virtual_tokens: 10, reparameterize: true } } : {}),
    },
    data: { corpus: "spam-assassin", max_seq_len: o.maxSeqLen, validation_fraction: 0.05 },
    batch: { global_batch_size: o.batch, micro_batch_size: o.batch / o.workers },
    optimizer: { lr: full ? o.lr : o.peftLr, weight_decay: 0.01 },
    schedule: { warmup_steps: Math.floor(o.finetuneSteps / 10) },
    training: { max_steps: o.finetuneSteps, eval_interval_steps: 0, checkpoint_interval_steps: 0 },
    communication: SHARED_MACHINE,
  };
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
  const wallS = launch([writeYaml(path.join(o.out, "configs", `${tag}.yaml`), cfg), "--workers", String(o.workers), "--quiet"]);
  const metrics = JSON.parse(fs.readFileSync(path.join(dir, "classification_metrics.json"), "utf8")) as { test: { accuracy: number; macro_f1: number } };
  const log = fs.readFileSync(path.join(dir, "logs", "rank-0.log"), "utf8");
  const m = /trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)/.exec(log);
  const kept = /(\d+) of (\d+) training labels kept/.exec(log);
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { allreduce_bytes?: number });
  const result: RunResult = {
    method, fraction, seed, accuracy: metrics.test.accuracy, macroF1: metrics.test.macro_f1,
    trainable: m ? Number(m[1].replace(/,/g, "")) : NaN, trainablePercent: m ? Number(m[3]) : NaN,
    allreduceBytes: lines[lines.length - 1].allreduce_bytes ?? NaN, wallS, trainExamples: kept ? Number(kept[1]) : NaN,
  };
  process.stderr.write(`experiment: ${tag}: test accuracy ${(100 * result.accuracy).toFixed(2)}%, macro-F1 ${(100 * result.macroF1).toFixed(2)}%, ` +
    `${result.trainExamples} labels, trainable ${result.trainablePercent}%, ${result.allreduceBytes} B/step, ${wallS.toFixed(0)} s\n`);
  return result;
}

function meanStd(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

function table(o: Options, results: RunResult[]): string {
  const pct = (x: { mean: number; std: number }, n: number): string => `${(100 * x.mean).toFixed(1)}${n > 1 ? ` ± ${(100 * x.std).toFixed(1)}` : ""}`;
  const head = ["method", ...o.fractions.map((f) => `${f * 100}% labels: acc / macro-F1`), "trainable %", "bytes all-reduced / step", "wall s / run"];
  const rows = o.methods.map((method) => {
    const mine = results.filter((r) => r.method === method);
    const cells = o.fractions.map((f) => {
      const rs = mine.filter((r) => r.fraction === f);
      if (rs.length === 0) return "—";
      return `${pct(meanStd(rs.map((r) => r.accuracy)), rs.length)} / ${pct(meanStd(rs.map((r) => r.macroF1)), rs.length)}`;
    });
    const any = mine[0];
    return [method, ...cells, any ? any.trainablePercent.toFixed(2) : "—", any ? String(any.allreduceBytes) : "—", any ? meanStd(mine.map((r) => r.wallS)).mean.toFixed(0) : "—"];
  });
  const labels = o.fractions.map((f) => {
    const r = results.find((x) => x.fraction === f);
    return `${f * 100}% = ${r?.trainExamples ?? "?"} labels`;
  });
  return [
    `| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`), "",
    `Test split: 20% of SpamAssassin (stratified, split_seed 1234). ${labels.join(", ")}. Seeds: ${o.seeds.join(", ")} (mean ± sample std over seeds).`,
    `Model: ${o.preset} pretrained on Brown for ${o.pretrainSteps} steps; fine-tuning ${o.finetuneSteps} steps of ${o.batch} examples, max_seq_len ${o.maxSeqLen}, ${o.workers} worker(s).`,
  ].join("\n");
}

/** A line plot of test macro-F1 against the label fraction (log scale), one line per method, error bars = std. */
function plot(o: Options, results: RunResult[]): string {
  const W = 640;
  const H = 400;
  const L = 60;
  const R = 140;
  const T = 30;
  const B = 50;
  const xs = o.fractions.map((f) => Math.log10(f));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const px = (f: number): number => L + ((Math.log10(f) - x0) / Math.max(1e-9, x1 - x0)) * (W - L - R);
  const py = (v: number): number => T + (1 - v) * (H - T - B);
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle">SpamAssassin test macro-F1 vs share of training labels</text>`,
  ];
  for (let v = 0; v <= 1.0001; v += 0.1) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/>`, `<text x="${L - 6}" y="${py(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`);
  }
  for (const f of o.fractions) parts.push(`<text x="${px(f)}" y="${H - B + 18}" text-anchor="middle">${f * 100}%</text>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">training labels kept (log scale)</text>`);
  o.methods.forEach((method, i) => {
    const c = colors[i % colors.length];
    const pts = o.fractions
      .map((f) => ({ f, s: results.filter((r) => r.method === method && r.fraction === f).map((r) => r.macroF1) }))
      .filter((p) => p.s.length > 0)
      .map((p) => ({ f: p.f, ...meanStd(p.s) }));
    if (pts.length === 0) return;
    parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${px(p.f)},${py(p.mean)}`).join(" ")}"/>`);
    for (const p of pts) {
      parts.push(`<circle cx="${px(p.f)}" cy="${py(p.mean)}" r="3" fill="${c}"/>`);
      if (p.std > 0) parts.push(`<line x1="${px(p.f)}" x2="${px(p.f)}" y1="${py(p.mean - p.std)}" y2="${py(p.mean + p.std)}" stroke="${c}"/>`);
    }
    parts.push(`<rect x="${W - R + 12}" y="${T + 18 * i}" width="12" height="3" fill="${c}"/>`, `<text x="${W - R + 30}" y="${T + 18 * i + 5}">${method}</text>`);
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  fs.mkdirSync(o.out, { recursive: true });
  const t0 = Date.now();
  const base = pretrain(o);
  const results: RunResult[] = [];
  const resultsFile = path.join(o.out, "results.json");
  for (const fraction of o.fractions) {
    for (const method of o.methods) {
      for (const seed of o.seeds) {
        results.push(finetune(o, base, method, fraction, seed));
        fs.writeFileSync(resultsFile, JSON.stringify({ options: o, results }, null, 2) + "\n");
      }
    }
  }
  const md = `# Low-resource fine-tuning (SpamAssassin, pretrained on Brown)\n\n${table(o, results)}\n\nTotal wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.\n`;
  fs.writeFileSync(path.join(o.out, "results.md"), md);
  fs.writeFileSync(path.join(o.out, "plot.svg"), plot(o, results));
  process.stdout.write(md + `\n(results.json, results.md, plot.svg in ${path.resolve(o.out)})\n`);
}

main();
