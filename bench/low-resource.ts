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
 *        --pretrain-lr X  --pretrain-warmup N  --pretrain-dropout P  --pretrain-workers N   (the base model)
 *        --continue-to N  --continue-dropout P   (stage 2: resume the base run and continue it to N steps)
 *        --scratch-lr X (random init; default --lr)  --method-lr prefix=1e-2,prompt=1e-2  (per-method overrides)
 *        --finetune-steps 60,200,300   (one value, or one per fraction in ascending order)
 *        --grid "0.01,0.1:full,scratch:1,2,3;1:full,lora,adapter:1"   (groups fractions:methods:seeds instead of
 *                                                                       the full product of --fractions/--methods/--seeds)
 *        --jobs N   (fine-tuning runs in parallel)   --report-only 1   (launch nothing; tabulate the finished runs)
 *        --pooling cls|mean   (what the classifier's pooler reads: [CLS], or the mean of the text's positions)
 *        --dapt-steps N  --dapt-lr X  --dapt-warmup N   (stage 3, domain-adaptive pretraining: continue MLM from the
 *                        base checkpoint on SpamAssassin's text, less the fine-tuning test split; fine-tuning then
 *                        starts from OUT/dapt; scratch runs are unaffected)
 *        --lora-r N  --lora-targets query,value,...   (LoRA rank and target modules; default 8 and query,value)
 *        --adapter-size N   (adapter bottleneck width; default 16)
 *        --adapter-embedding-size N   (width of one more adapter on the embedding output; default 0 = plain Houlsby)
 *        --select-lr "full=1e-4/3e-4/1e-3,adapter=1e-3/5e-3"   (per method: run every lr, evaluate on the validation
 *                        split at the end, and report the test score of the lr with the best validation macro-F1)
 * An existing OUT/pretrain with checkpoints is reused, and so is every finished fine-tuning run whose generated
 * config is unchanged, so an interrupted experiment continues where it stopped. Fine-tuning configs name the base's
 * newest checkpoint directory, so continuing the pretraining makes every pretrained cell run again.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { stringify } from "yaml";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";

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
  /** Pretraining: peak lr, warmup steps, dropout (hidden and attention), workers. */
  pretrainLr: number;
  pretrainWarmup: number;
  pretrainDropout: number;
  pretrainWorkers: number;
  /** Stage 2 of pretraining: resume the base run and continue it to this many steps (0 = no stage 2). */
  continueTo: number;
  /** Dropout of stage 2 (hidden and attention). */
  continueDropout: number;
  /** Fine-tuning lr of the randomly initialised model (default: --lr). */
  scratchLr: number;
  /** Per-method lr overrides, e.g. prefix=1e-2. */
  methodLr: Map<string, number>;
  /** Fine-tuning steps per label fraction (one value for all, or one per --fractions entry). */
  stepsByFraction: Map<number, number>;
  /** Explicit grid: groups of (fractions, methods, seeds); empty = fractions x methods x seeds. */
  grid: { fractions: number[]; methods: string[]; seeds: number[] }[];
  /** Fine-tuning runs in parallel (each a launch with --workers). */
  jobs: number;
  /** finetune.pooling of every fine-tuning run. */
  pooling: "cls" | "mean";
  /** Launch nothing: tabulate the finished runs of the grid, leave the others out. */
  reportOnly: boolean;
  /** Stage 3: domain-adaptive MLM steps on the task's training text (0 = none), its peak lr and warmup. */
  daptSteps: number;
  daptLr: number;
  daptWarmup: number;
  /** LoRA rank and target modules. */
  loraR: number;
  loraTargets: string[];
  /** Adapter bottleneck width. */
  adapterSize: number;
  /** Bottleneck width of the embedding-output adapter (0 = none). */
  adapterEmbeddingSize: number;
  /** Per method: candidate learning rates, chosen per cell by validation macro-F1. */
  selectLr: Map<string, number[]>;
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
  lr: number;
  steps: number;
  /** Validation macro-F1 at the end (--select-lr candidates only). */
  validationMacroF1?: number;
  /** --select-lr: every candidate of the cell (the result is the one with the best validation macro-F1). */
  candidates?: { lr: number; validationMacroF1: number; testMacroF1: number }[];
}

/** The fine-tuning runs' test split (finetune.split_seed's default and test_fraction); DAPT holds out the same. */
const SPLIT_SEED = 1234;
const TEST_FRACTION = 0.2;
/** Generous deadlines: on a shared machine a starved worker must not be declared dead mid-experiment. */
const SHARED_MACHINE = { heartbeat_timeout_ms: 300_000, timeout_ms: 600_000 };

const ALL_METHODS = ["full", "lora", "adapter", "bitfit", "prefix", "prompt", "freeze", "scratch"];

/** A finite number, or an error naming the flag (the value is the raw text: parse-numbers is off). */
function num(flag: string): (value: string | number) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n)) throw new Error(`--${flag}: not a number: ${value}`);
    return n;
  };
}

/** A comma-separated list, trimmed, empty entries dropped. */
function list(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** --method-lr prefix=1e-2,prompt=1e-2 */
function parseMethodLr(value: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const kv of list(value)) {
    const [k, v] = kv.split("=");
    if (!ALL_METHODS.includes(k) || !Number.isFinite(Number(v))) throw new Error(`--method-lr: expected method=lr, got ${kv}`);
    m.set(k, Number(v));
  }
  return m;
}

/** --select-lr full=1e-4/3e-4/1e-3,adapter=1e-3/5e-3 */
function parseSelectLr(value: string): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const kv of list(value)) {
    const [k, v] = kv.split("=");
    const lrs = (v ?? "").split("/").map(Number);
    if (!ALL_METHODS.includes(k) || lrs.length === 0 || lrs.some((x) => !(x > 0))) throw new Error(`--select-lr: expected method=lr/lr/..., got ${kv}`);
    m.set(k, lrs);
  }
  return m;
}

/** --grid "0.01,0.1:full,scratch:1,2,3;1:full,lora:1" = groups of fractions:methods:seeds */
function parseGrid(value: string): Options["grid"] {
  return value.split(";").filter((g) => g.trim() !== "").map((g) => {
    const [f, m, sd] = g.split(":");
    if (sd === undefined) throw new Error(`--grid: expected fractions:methods:seeds, got ${g}`);
    return { fractions: list(f).map(Number), methods: list(m), seeds: list(sd).map(Number) };
  });
}

function parsePooling(value: string): "cls" | "mean" {
  if (value !== "cls" && value !== "mean") throw new Error(`--pooling: expected cls or mean, got ${value}`);
  return value;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value, throws on inconsistent flags. */
export function parseArgs(argv: string[]): Options {
  const a = yargs(argv)
    .usage("npm run experiment:low-resource -- [flags]\n\nPretrains a small BERT on Brown (MLM), fine-tunes it on SpamAssassin with 1%, 10% and 100% of the labels with each method (and from scratch), and writes results.json, results.md and plot.svg into --out.")
    .option("out", { type: "string", default: "runs/low-resource", requiresArg: true, describe: "output directory" })
    .option("preset", { type: "string", default: "bert-tiny", requiresArg: true, describe: "model preset" })
    .option("pretrain-steps", { default: 300, requiresArg: true, describe: "MLM pretraining steps of the base model", coerce: num("pretrain-steps") })
    .option("finetune-steps", { type: "string", default: "60", requiresArg: true, describe: "fine-tuning steps: one value, or one per fraction in ascending order (60,200,300)", coerce: (v: string) => list(v).map(Number) })
    .option("pretrain-lr", { default: 2e-3, requiresArg: true, describe: "pretraining peak lr", coerce: num("pretrain-lr") })
    .option("pretrain-warmup", { requiresArg: true, describe: "pretraining warmup steps (default: min(50, pretrain-steps / 10))", coerce: num("pretrain-warmup") })
    .option("pretrain-dropout", { default: 0.1, requiresArg: true, describe: "pretraining dropout (hidden and attention)", coerce: num("pretrain-dropout") })
    .option("pretrain-workers", { requiresArg: true, describe: "pretraining workers (default: --workers)", coerce: num("pretrain-workers") })
    .option("continue-to", { default: 0, requiresArg: true, describe: "stage 2: resume the base run and continue it to N steps (0: no stage 2)", coerce: num("continue-to") })
    .option("continue-dropout", { default: 0, requiresArg: true, describe: "dropout of stage 2", coerce: num("continue-dropout") })
    .option("scratch-lr", { requiresArg: true, describe: "fine-tuning lr of the randomly initialised model (default: --lr)", coerce: num("scratch-lr") })
    .option("method-lr", { type: "string", requiresArg: true, describe: "per-method lr overrides: prefix=1e-2,prompt=1e-2", coerce: parseMethodLr })
    .option("grid", { type: "string", requiresArg: true, describe: 'groups fractions:methods:seeds instead of the full product of --fractions/--methods/--seeds: "0.01,0.1:full,scratch:1,2,3;1:full,lora,adapter:1"', coerce: parseGrid })
    .option("jobs", { default: 1, requiresArg: true, describe: "fine-tuning runs in parallel", coerce: num("jobs") })
    .option("pooling", { type: "string", default: "cls", requiresArg: true, describe: "what the classifier's pooler reads: cls ([CLS]) or mean (the mean of the text's positions)", coerce: parsePooling })
    .option("dapt-steps", { default: 0, requiresArg: true, describe: "stage 3: domain-adaptive MLM steps on SpamAssassin's training text (0: none)", coerce: num("dapt-steps") })
    .option("dapt-lr", { default: 5e-4, requiresArg: true, describe: "domain-adaptive pretraining peak lr", coerce: num("dapt-lr") })
    .option("dapt-warmup", { requiresArg: true, describe: "domain-adaptive warmup steps (default: min(100, dapt-steps / 10))", coerce: num("dapt-warmup") })
    .option("lora-r", { default: 8, requiresArg: true, describe: "LoRA rank", coerce: num("lora-r") })
    .option("lora-targets", { type: "string", default: "query,value", requiresArg: true, describe: "LoRA target modules, comma-separated", coerce: list })
    .option("adapter-size", { default: 16, requiresArg: true, describe: "adapter bottleneck width", coerce: num("adapter-size") })
    .option("adapter-embedding-size", { default: 0, requiresArg: true, describe: "width of an extra adapter on the embedding output (0 = none)", coerce: num("adapter-embedding-size") })
    .option("select-lr", { type: "string", requiresArg: true, describe: 'per method: run every lr and report the test score of the lr with the best validation macro-F1: "full=1e-4/3e-4/1e-3,adapter=1e-3/5e-3"', coerce: parseSelectLr })
    .option("report-only", { type: "string", default: "0", requiresArg: true, describe: "1 or true: launch nothing, tabulate the finished runs", coerce: (v: string) => v === "1" || v === "true" })
    .option("seeds", { type: "string", default: "1", requiresArg: true, describe: "seeds, comma-separated", coerce: (v: string) => list(v).map(Number) })
    .option("methods", { type: "string", default: ALL_METHODS.join(","), requiresArg: true, describe: "methods, comma-separated", coerce: list })
    .option("fractions", { type: "string", default: "0.01,0.1,1", requiresArg: true, describe: "label fractions, comma-separated", coerce: (v: string) => list(v).map(Number) })
    .option("workers", { default: 1, requiresArg: true, describe: "workers per fine-tuning run", coerce: num("workers") })
    .option("max-seq-len", { default: 64, requiresArg: true, describe: "data.max_seq_len", coerce: num("max-seq-len") })
    .option("vocab-size", { default: 8192, requiresArg: true, describe: "tokenizer vocabulary size", coerce: num("vocab-size") })
    .option("batch", { default: 16, requiresArg: true, describe: "fine-tuning global batch size", coerce: num("batch") })
    .option("lr", { default: 1e-3, requiresArg: true, describe: "fine-tuning lr of full and freeze", coerce: num("lr") })
    .option("peft-lr", { default: 5e-3, requiresArg: true, describe: "fine-tuning lr of the parameter-efficient methods", coerce: num("peft-lr") })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false, "parse-numbers": false })
    .strict()
    .parseSync();
  const stepsList = a["finetune-steps"];
  const o: Options = {
    out: a.out, preset: a.preset, pretrainSteps: a["pretrain-steps"], finetuneSteps: stepsList[stepsList.length - 1], seeds: a.seeds, methods: a.methods,
    fractions: a.fractions, workers: a.workers, maxSeqLen: a["max-seq-len"], vocabSize: a["vocab-size"], batch: a.batch, lr: a.lr, peftLr: a["peft-lr"],
    pretrainLr: a["pretrain-lr"], pretrainWarmup: a["pretrain-warmup"] ?? -1, pretrainDropout: a["pretrain-dropout"], pretrainWorkers: a["pretrain-workers"] ?? 0,
    continueTo: a["continue-to"], continueDropout: a["continue-dropout"], scratchLr: a["scratch-lr"] ?? NaN, methodLr: a["method-lr"] ?? new Map(),
    stepsByFraction: new Map(), grid: a.grid ?? [], jobs: a.jobs, reportOnly: a["report-only"], pooling: a.pooling,
    daptSteps: a["dapt-steps"], daptLr: a["dapt-lr"], daptWarmup: a["dapt-warmup"] ?? -1, loraR: a["lora-r"], loraTargets: a["lora-targets"], adapterSize: a["adapter-size"], adapterEmbeddingSize: a["adapter-embedding-size"],
    selectLr: a["select-lr"] ?? new Map(),
  };
  if (Number.isNaN(o.scratchLr)) o.scratchLr = o.lr;
  if (o.pretrainWorkers === 0) o.pretrainWorkers = o.workers;
  if (o.pretrainWarmup < 0) o.pretrainWarmup = Math.min(50, Math.floor(o.pretrainSteps / 10));
  if (o.daptWarmup < 0) o.daptWarmup = Math.min(100, Math.floor(o.daptSteps / 10));
  if (o.grid.length > 0) {
    // The table's rows and columns are the union of the groups'.
    o.fractions = [...new Set(o.grid.flatMap((g) => g.fractions))].sort((a, b) => a - b);
    o.methods = ALL_METHODS.filter((m) => o.grid.some((g) => g.methods.includes(m)));
    o.seeds = [...new Set(o.grid.flatMap((g) => g.seeds))].sort((a, b) => a - b);
  } else {
    o.grid = [{ fractions: o.fractions, methods: o.methods, seeds: o.seeds }];
  }
  if (stepsList.length > 1 && stepsList.length !== o.fractions.length) throw new Error(`--finetune-steps: give one value or one per fraction (${o.fractions.length})`);
  o.fractions.forEach((f, i) => o.stepsByFraction.set(f, stepsList.length > 1 ? stepsList[i] : o.finetuneSteps));
  for (const g of o.grid) {
    for (const m of g.methods) if (!ALL_METHODS.includes(m)) throw new Error(`--methods: unknown method ${m} (known: ${ALL_METHODS.join(", ")})`);
  }
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
    return continuePretraining(o, dir);
  }
  const cfg = {
    name: "lr-pretrain", output_dir: dir, seed: 42, backend: "wasm",
    model: { preset: o.preset, max_position_embeddings: 128, hidden_dropout: o.pretrainDropout, attention_dropout: o.pretrainDropout },
    tokenizer: { vocab_size: o.vocabSize },
    data: { corpus: "brown", max_seq_len: o.maxSeqLen, validation_fraction: 0.02 },
    batch: { global_batch_size: 32, micro_batch_size: 32 / o.pretrainWorkers },
    optimizer: { lr: o.pretrainLr }, schedule: { warmup_steps: o.pretrainWarmup },
    training: { max_steps: o.pretrainSteps, eval_interval_steps: Math.max(1, Math.floor(o.pretrainSteps / 10)), eval_sequences: 256, checkpoint_interval_steps: Math.max(1, Math.floor(o.pretrainSteps / 8)) },
    communication: SHARED_MACHINE,
  };
  const wall = launch([writeYaml(path.join(o.out, "configs", "pretrain.yaml"), cfg), "--workers", String(o.pretrainWorkers), "--quiet"]);
  process.stderr.write(`experiment: pretrained ${o.preset} on Brown for ${o.pretrainSteps} steps in ${wall.toFixed(0)} s\n`);
  return continuePretraining(o, dir);
}

/** Newest checkpoint step of a run directory (checkpoints/step-NNNNNN), 0 when none. */
function latestStep(dir: string): number {
  const ckpts = path.join(dir, "checkpoints");
  if (!fs.existsSync(ckpts)) return 0;
  const steps = fs.readdirSync(ckpts).map((n) => /^step-(\d+)$/.exec(n)).filter((m) => m !== null && fs.existsSync(path.join(ckpts, m[0], "checkpoint.json"))).map((m) => Number((m as RegExpExecArray)[1]));
  return steps.length > 0 ? Math.max(...steps) : 0;
}

/**
 * Stage 2 (--continue-to N): `launch --resume` the base run to N steps. The lr schedule is recomputed for N total
 * steps (a warm restart at the lr the longer schedule has at the resumed step; AdamW moments are restored), with
 * dropout --continue-dropout and a checkpoint every N/8 steps.
 */
function continuePretraining(o: Options, dir: string): string {
  if (o.continueTo <= 0) return dir;
  const at = latestStep(dir);
  if (at >= o.continueTo) return dir;
  const wall = launch([
    "--resume", dir, "--max-steps", String(o.continueTo), "--workers", String(o.pretrainWorkers), "--quiet",
    "--set", `training.checkpoint_interval_steps=${Math.max(1, Math.floor(o.continueTo / 8))}`,
    "--set", `training.eval_interval_steps=${Math.max(1, Math.floor(o.continueTo / 8))}`,
    "--set", `model.hidden_dropout=${o.continueDropout}`, "--set", `model.attention_dropout=${o.continueDropout}`,
  ]);
  process.stderr.write(`experiment: continued pretraining from step ${at} to ${o.continueTo} in ${wall.toFixed(0)} s\n`);
  return dir;
}

/** The exact newest checkpoint of a run directory (throws when it has none). */
function newestCheckpoint(runDir: string): string {
  const step = latestStep(runDir);
  if (step === 0) throw new Error(`${runDir} has no finished checkpoint`);
  return path.join(runDir, "checkpoints", `step-${String(step).padStart(6, "0")}`);
}

/**
 * Stage 3 (--dapt-steps N): domain-adaptive pretraining. MLM continues from the base checkpoint (`model.init_from`:
 * its weights and vocabulary, a fresh optimizer) on SpamAssassin's text, less the documents the fine-tuning runs
 * score on (`data.holdout` with their split_seed and test_fraction); no label is read. Returns the run directory.
 */
function domainAdapt(o: Options, base: string): string {
  const dir = path.resolve(o.out, "dapt");
  if (latestStep(dir) >= o.daptSteps) {
    process.stderr.write(`experiment: reusing the domain-adapted model in ${dir}\n`);
    return dir;
  }
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
  const cfg = {
    name: "lr-dapt", output_dir: dir, seed: 43, backend: "wasm",
    model: { preset: o.preset, max_position_embeddings: 128, hidden_dropout: o.continueDropout, attention_dropout: o.continueDropout, init_from: base },
    data: { corpus: "spam-assassin", max_seq_len: o.maxSeqLen, validation_fraction: 0.02, holdout: { split_seed: SPLIT_SEED, test_fraction: TEST_FRACTION } },
    batch: { global_batch_size: 32, micro_batch_size: 32 / o.pretrainWorkers },
    optimizer: { lr: o.daptLr }, schedule: { warmup_steps: o.daptWarmup },
    training: { max_steps: o.daptSteps, eval_interval_steps: Math.max(1, Math.floor(o.daptSteps / 8)), eval_sequences: 256, checkpoint_interval_steps: Math.max(1, Math.floor(o.daptSteps / 4)) },
    communication: SHARED_MACHINE,
  };
  const wall = launch([writeYaml(path.join(o.out, "configs", "dapt.yaml"), cfg), "--workers", String(o.pretrainWorkers), "--quiet"]);
  process.stderr.write(`experiment: domain-adaptive pretraining (${o.daptSteps} MLM steps on SpamAssassin's training text) in ${wall.toFixed(0)} s\n`);
  return dir;
}

/** The fine-tuning lr of a method: --method-lr, else --scratch-lr (scratch), --lr (full, freeze) or --peft-lr. */
function lrOf(o: Options, method: string): number {
  const own = o.methodLr.get(method);
  if (own !== undefined) return own;
  if (method === "scratch") return o.scratchLr;
  return method === "full" || method === "freeze" ? o.lr : o.peftLr;
}

function launchAsync(args: string[]): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, "..", "launch", "main.js"), ...args], { stdio: ["ignore", "ignore", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve((Date.now() - t0) / 1000) : reject(new Error(`launch ${args.join(" ")} exited with ${code}`))));
  });
}

/** One fine-tuning run; `lr` given = one candidate of --select-lr (own run directory, validation at the end). */
async function finetune(o: Options, base: string, method: string, fraction: number, seed: number, candidateLr?: number): Promise<RunResult | undefined> {
  const tag = `${method}-f${fraction}-s${seed}${candidateLr !== undefined ? `-lr${candidateLr}` : ""}`;
  const lr = candidateLr ?? lrOf(o, method);
  const dir = path.resolve(o.out, "finetune", tag);
  const steps = o.stepsByFraction.get(fraction) ?? o.finetuneSteps;
  const cfg = {
    name: `lr-${tag}`, output_dir: dir, seed, backend: "wasm", task: "classification",
    finetune: {
      base_model: base, method: method === "scratch" ? "full" : method, init: method === "scratch" ? "random" : "pretrained",
      label_fraction: fraction, test_fraction: TEST_FRACTION, // split_seed: the default, SPLIT_SEED
      ...(method === "adapter" && (o.adapterSize !== 16 || o.adapterEmbeddingSize > 0)
        ? { adapter: { size: o.adapterSize, ...(o.adapterEmbeddingSize > 0 ? { embedding_size: o.adapterEmbeddingSize } : {}) } } : {}),
      ...(method === "lora" && (o.loraR !== 8 || o.loraTargets.join() !== "query,value") ? { lora: { r: o.loraR, alpha: 2 * o.loraR, target_modules: o.loraTargets } } : {}),
      ...(method === "prompt" ? { prompt: { num_virtual_tokens: 10 } } : {}),
      ...(method === "prefix" ? { prefix: { num_virtual_tokens: 10, reparameterize: true } } : {}),
      ...(o.pooling === "mean" ? { pooling: "mean" } : {}),
    },
    data: { corpus: "spam-assassin", max_seq_len: o.maxSeqLen, validation_fraction: 0.05 },
    batch: { global_batch_size: o.batch, micro_batch_size: o.batch / o.workers },
    optimizer: { lr, weight_decay: 0.01 },
    schedule: { warmup_steps: Math.floor(steps / 10) },
    training: { max_steps: steps, eval_interval_steps: candidateLr !== undefined ? steps : 0, ...(candidateLr !== undefined ? { eval_sequences: 0 } : {}), checkpoint_interval_steps: 0 },
    communication: SHARED_MACHINE,
  };
  const yamlFile = writeYaml(path.join(o.out, "configs", `${tag}.yaml`), cfg);
  // A finished run with the same configuration is reused (an interrupted experiment continues where it stopped).
  const doneFile = path.join(dir, "experiment-run.json");
  let wallS: number;
  const yamlText = fs.readFileSync(yamlFile, "utf8");
  const done = fs.existsSync(doneFile) ? (JSON.parse(fs.readFileSync(doneFile, "utf8")) as { yaml: string; wallS: number }) : undefined;
  if (done !== undefined && done.yaml === yamlText && fs.existsSync(path.join(dir, "classification_metrics.json"))) {
    wallS = done.wallS;
  } else if (o.reportOnly) {
    process.stderr.write(`experiment: ${tag}: not finished, left out (--report-only)\n`);
    return undefined;
  } else {
    if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
    wallS = await launchAsync([yamlFile, "--workers", String(o.workers), "--quiet"]);
    fs.writeFileSync(doneFile, JSON.stringify({ yaml: yamlText, wallS }) + "\n");
  }
  const metrics = JSON.parse(fs.readFileSync(path.join(dir, "classification_metrics.json"), "utf8")) as { test: { accuracy: number; macro_f1: number }; validation?: { macro_f1: number } };
  const log = fs.readFileSync(path.join(dir, "logs", "rank-0.log"), "utf8");
  const m = /trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| trainable%: ([\d.]+)/.exec(log);
  const kept = /(\d+) of (\d+) training labels kept/.exec(log);
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { allreduce_bytes?: number });
  const result: RunResult = {
    method, fraction, seed, accuracy: metrics.test.accuracy, macroF1: metrics.test.macro_f1,
    trainable: m ? Number(m[1].replace(/,/g, "")) : NaN, trainablePercent: m ? Number(m[3]) : NaN,
    allreduceBytes: lines[lines.length - 1].allreduce_bytes ?? NaN, wallS, trainExamples: kept ? Number(kept[1]) : NaN,
    lr, steps, validationMacroF1: metrics.validation?.macro_f1,
  };
  process.stderr.write(`experiment: ${tag}: test accuracy ${(100 * result.accuracy).toFixed(2)}%, macro-F1 ${(100 * result.macroF1).toFixed(2)}%, ` +
    (result.validationMacroF1 !== undefined ? `validation macro-F1 ${(100 * result.validationMacroF1).toFixed(2)}%, ` : "") +
    `${result.trainExamples} labels, lr ${result.lr}, ${steps} steps, trainable ${result.trainablePercent}%, ${result.allreduceBytes} B/step, ${wallS.toFixed(0)} s\n`);
  return result;
}

function meanStd(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

function table(o: Options, results: RunResult[]): string {
  const pct = (x: { mean: number; std: number }, n: number): string => `${(100 * x.mean).toFixed(1)}${n > 1 ? ` ± ${(100 * x.std).toFixed(1)}` : ""}`;
  const head = ["method", ...o.fractions.map((f) => `${f * 100}% labels: acc / macro-F1`), "lr", "trainable %", "bytes all-reduced / step", "wall s / run"];
  const rows = o.methods.map((method) => {
    const mine = results.filter((r) => r.method === method);
    const cells = o.fractions.map((f) => {
      const rs = mine.filter((r) => r.fraction === f);
      if (rs.length === 0) return "—";
      return `${pct(meanStd(rs.map((r) => r.accuracy)), rs.length)} / ${pct(meanStd(rs.map((r) => r.macroF1)), rs.length)} (${rs.length})`;
    });
    const any = mine[0];
    const lrs = o.selectLr.has(method) ? `${[...new Set(mine.map((r) => r.lr))].join(", ")} (best on validation of ${o.selectLr.get(method)?.join(" / ")})` : String(lrOf(o, method));
    return [method, ...cells, lrs, any ? any.trainablePercent.toFixed(2) : "—", any ? String(any.allreduceBytes) : "—", any ? meanStd(mine.map((r) => r.wallS)).mean.toFixed(0) : "—"];
  });
  const labels = o.fractions.map((f) => {
    const r = results.find((x) => x.fraction === f);
    return `${f * 100}% = ${r?.trainExamples ?? "?"} labels`;
  });
  return [
    `| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`), "",
    `Test split: 20% of SpamAssassin (stratified, split_seed 1234). ${labels.join(", ")}. Seeds: ${o.seeds.join(", ")}; (n) = seeds in the cell, mean ± sample std over them.`,
    `Model: ${o.preset} pretrained on Brown for ${o.continueTo > 0 ? `${o.pretrainSteps} + ${o.continueTo - o.pretrainSteps}` : o.pretrainSteps} steps (lr ${o.pretrainLr}, warmup ${o.pretrainWarmup}, dropout ${o.pretrainDropout}); ` +
      (o.daptSteps > 0 ? `then ${o.daptSteps} domain-adaptive MLM steps on SpamAssassin's text without the test split (lr ${o.daptLr}, warmup ${o.daptWarmup}; scratch rows do not use it); ` : "") +
      `classifier pooling ${o.pooling === "mean" ? "mean of the text's positions" : "[CLS]"}; ` +
      (o.methods.includes("lora") ? `LoRA r ${o.loraR} on ${o.loraTargets.join(", ")}; ` : "") +
      (o.methods.includes("adapter") ? `adapter size ${o.adapterSize}${o.adapterEmbeddingSize > 0 ? ` (and ${o.adapterEmbeddingSize} on the embedding output)` : ""}; ` : "") +
      `fine-tuning ${o.fractions.map((f) => `${o.stepsByFraction.get(f)} steps at ${f * 100}%`).join(", ")}, batch ${o.batch}, max_seq_len ${o.maxSeqLen}, ${o.workers} worker(s), ${o.jobs} run(s) in parallel.`,
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

async function main(): Promise<void> {
  const o = parseArgs(hideBin(process.argv));
  fs.mkdirSync(o.out, { recursive: true });
  const t0 = Date.now();
  const baseRun = o.reportOnly ? path.resolve(o.out, "pretrain") : pretrain(o);
  // The exact checkpoint, not the run directory: a run directory's newest checkpoint changes when pretraining continues.
  const brownBase = newestCheckpoint(baseRun);
  const base = o.daptSteps > 0 ? newestCheckpoint(o.reportOnly ? path.resolve(o.out, "dapt") : domainAdapt(o, brownBase)) : brownBase;
  process.stderr.write(`experiment: base model ${base}\n`);
  const results: RunResult[] = [];
  const resultsFile = path.join(o.out, "results.json");
  const cells: [number, string, number, number | undefined][] = [];
  for (const g of o.grid) {
    for (const fraction of g.fractions) for (const method of g.methods) for (const seed of g.seeds) {
      for (const lr of o.selectLr.get(method) ?? [undefined]) {
        if (!cells.some(([f, m, s, l]) => f === fraction && m === method && s === seed && l === lr)) cells.push([fraction, method, seed, lr]);
      }
    }
  }
  const candidates: RunResult[] = [];
  // --jobs runs in parallel; each run is independent (own launch, own ports).
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cells.length) {
      const [fraction, method, seed, lr] = cells[next++];
      const r = await finetune(o, base, method, fraction, seed, lr);
      if (r === undefined) continue;
      if (lr !== undefined) {
        candidates.push(r);
        continue;
      }
      results.push(r);
      fs.writeFileSync(resultsFile, JSON.stringify({ options: { ...o, methodLr: Object.fromEntries(o.methodLr), stepsByFraction: Object.fromEntries(o.stepsByFraction) }, results }, null, 2) + "\n");
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.jobs) }, worker));
  // --select-lr: per (method, fraction, seed), the candidate with the best validation macro-F1 (ties: the lower lr).
  const groups = new Map<string, RunResult[]>();
  for (const c of candidates) groups.set(`${c.method}/${c.fraction}/${c.seed}`, [...(groups.get(`${c.method}/${c.fraction}/${c.seed}`) ?? []), c]);
  for (const group of groups.values()) {
    const best = group.slice().sort((a, b) => (b.validationMacroF1 ?? -1) - (a.validationMacroF1 ?? -1) || a.lr - b.lr)[0];
    process.stderr.write(`experiment: ${best.method} ${best.fraction * 100}% seed ${best.seed}: lr ${best.lr} chosen on validation (` +
      group.map((c) => `${c.lr}: ${(100 * (c.validationMacroF1 ?? NaN)).toFixed(2)}`).join(", ") + `); its test macro-F1 ${(100 * best.macroF1).toFixed(2)}%\n`);
    results.push({ ...best, candidates: group.map((c) => ({ lr: c.lr, validationMacroF1: c.validationMacroF1 ?? NaN, testMacroF1: c.macroF1 })) });
  }
  if (candidates.length > 0) fs.writeFileSync(resultsFile, JSON.stringify({ options: { ...o, methodLr: Object.fromEntries(o.methodLr), stepsByFraction: Object.fromEntries(o.stepsByFraction), selectLr: Object.fromEntries(o.selectLr) }, results }, null, 2) + "\n");
  const md = `# Low-resource fine-tuning (SpamAssassin, pretrained on Brown)\n\n${table(o, results)}\n\n${o.reportOnly ? "Tabulated with --report-only from the finished runs." : `Total wall time ${((Date.now() - t0) / 60000).toFixed(1)} min.`}\n`;
  fs.writeFileSync(path.join(o.out, "results.md"), md);
  fs.writeFileSync(path.join(o.out, "plot.svg"), plot(o, results));
  process.stdout.write(md + `\n(results.json, results.md, plot.svg in ${path.resolve(o.out)})\n`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`experiment: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
