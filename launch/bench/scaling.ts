/**
 * `launch bench scaling [CONFIG] --workers 1,2,4 [--steps N]`: weak scaling of data-parallel training through the
 * real product. For each N it runs `launch --workers N CONFIG` with a fixed micro-batch per worker (global batch =
 * N x micro-batch, no accumulation), reads the run's metrics.jsonl, and reports tokens/s, efficiency =
 * tokens/s(N) / (N x tokens/s(1)), MFU and each rank's time split (compute / exposed communication / data wait /
 * optimizer / idle), medians over the steps after the warm-up. Evaluation and checkpoints are turned off so they
 * do not disturb the timings.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ArgumentsCamelCase, Argv, CommandModule } from "yargs";
import type { RankTimes, StepMetrics } from "../../coordinator/metrics";
import { ConfigError, loadRunConfig, validateForWorld } from "../../shared/config/load";
import { repoRoot } from "../../shared/paths";
import { EXIT_INTERRUPTED, EXIT_OK } from "../../shared/exit-codes";
import { checkInt, checkWritable, checkWritableDir, formatTable, median, parseIntList, writeJsonFile } from "./common";
import { colour, countCharts, writeHtmlReport, type Report, type ReportChart } from "./report";

/** What `runScalingBench` measures. */
export interface ScalingOptions {
  /** Run configuration (YAML). */
  config: string;
  /** Worker counts, one run each (e.g. [1, 2, 4]). */
  workers: number[];
  /** Optimizer steps per run. */
  steps: number;
  /** Leading steps left out of the medians (warm-up). */
  warmupSteps: number;
  /** Sequences per worker per step; default: the config's batch.micro_batch_size. */
  microBatch?: number;
  /**
   * batch.balance of the multi-worker runs. `adaptive` lets the coordinator divide each global batch by the
   * workers' measured speed; the micro-batch cap is then the whole global batch, so every share is one micro-batch.
   */
  balance?: "even" | "adaptive";
  /** Backend override (auto, wasm, cpu, tensorflow). */
  backend?: string;
  /** Extra `a.b=value` overrides for every run. */
  set?: string[];
  /** Keep each run directory under this folder (default: temporary, removed). */
  keepRuns?: string;
  /**
   * Also run, for each N > 1, N independent single-worker jobs at the same time (no ring between them): the
   * machine's own limit on N-fold throughput (shared caches, memory bandwidth, clock), i.e. the efficiency a
   * data-parallel run could reach with free communication.
   */
  independent?: boolean;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
}

/**
 * Median time split of one rank over the timed steps, in ms: the fields of a metrics.jsonl per-rank record plus
 * `other_ms`, the rest of the rank's own step time (step_ms - compute - communication - data wait - optimizer:
 * step plans, reports, bookkeeping).
 */
export interface RankSplit {
  rank: number;
  /** Median sequences the rank trained per step (its share of the global batch). */
  sequences: number;
  step_ms: number;
  compute_ms: number;
  communication_ms: number;
  data_wait_ms: number;
  optimizer_ms: number;
  other_ms: number;
  idle_ms: number;
}

/** A rank's step time not covered by the measured parts (never negative). */
function otherMs(t: RankTimes): number {
  return Math.max(0, t.step_ms - t.compute_ms - t.communication_ms - t.data_wait_ms - t.optimizer_ms);
}

/** One run (one N). */
export interface ScalingRun {
  N: number;
  global_batch: number;
  tokens_per_s: number;
  /** tokens/s(N) / (N x tokens/s(1)); relative to the smallest N measured when 1 is not in the list. */
  efficiency: number;
  step_ms: number;
  mfu: number;
  final_loss: number;
  /** The TensorFlow.js backend rank 0 ran (from its log), e.g. "wasm". */
  backend_used?: string;
  per_rank: RankSplit[];
  /** Every step's metrics.jsonl record (loss, tokens/s, MFU, time split per rank). */
  steps: StepMetrics[];
  run_dir?: string;
}

/** N independent single-worker jobs run at the same time (`--independent`). */
export interface IndependentRun {
  N: number;
  /** Sum of the jobs' median tokens/s over the steps all of them were running. */
  tokens_per_s: number;
  /** tokens_per_s / (N x tokens/s of the single-worker run): the ceiling of a data-parallel run's efficiency here. */
  efficiency: number;
  /** Each job's median tokens/s. */
  jobs_tokens_per_s: number[];
  /** Steps (summed over jobs) inside the window where every job was past its warm-up and still running. */
  steps_in_window: number;
}

/** Everything `launch bench scaling` measured (what --json writes). */
export interface ScalingResult {
  kind: "scaling";
  mode: "weak";
  config: string;
  job: string;
  model: string;
  seq_len: number;
  micro_batch: number;
  /** batch.balance of the runs. */
  balance: "even" | "adaptive";
  /** The configured backend, and what ran when the logs say (e.g. "auto (wasm)"). */
  backend: string;
  steps: number;
  warmup_steps: number;
  /** Steps whose medians are reported: warmup_steps + 1 .. steps. */
  timed_steps: [number, number];
  efficiency_base_n: number;
  cpu_cores: number;
  cpu_model: string;
  date: string;
  runs: ScalingRun[];
  /** With --independent: one entry per N > 1. */
  independent?: IndependentRun[];
}

/** The default config when none is named: the Brown pretraining example. */
export function defaultScalingConfig(): string {
  return path.join(repoRoot(), "examples", "pretrain-brown.yaml");
}

/** The compiled launch CLI next to this file (dist/launch/main.js), so a copied dist runs its own launch. */
function launchScript(): string {
  return path.join(__dirname, "..", "main.js");
}

/** Runs `launch ARGS` as a child; it is in `running` until it exits. Resolves to its exit code. */
function runLaunch(args: string[], running: Set<ChildProcess>): Promise<number> {
  return new Promise((resolve, reject) => {
    // the child's progress goes to stderr so that stdout holds only the table
    const child = spawn(process.execPath, [launchScript(), ...args], { stdio: ["ignore", 2, 2] });
    running.add(child);
    child.on("error", (err) => {
      running.delete(child);
      reject(err);
    });
    child.on("close", (code, signal) => {
      running.delete(child);
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

/** Error from a failed child run, carrying its exit code. */
export class LaunchRunError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = "LaunchRunError";
  }
}

/** The backend a worker's log says it ran ("... backend wasm, peak matmul ..."), if the log says. */
function backendOf(logFile: string): string | undefined {
  try {
    return /\bbackend (\w[\w-]*)/.exec(fs.readFileSync(logFile, "utf8"))?.[1];
  } catch {
    return undefined;
  }
}

function readMetrics(file: string): StepMetrics[] {
  const byStep = new Map<number, StepMetrics>();
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (line.trim() === "") continue;
    const rec = JSON.parse(line) as Partial<StepMetrics>;
    if (typeof rec.step === "number" && Array.isArray(rec.per_rank) && typeof rec.tokens_per_s === "number") byStep.set(rec.step, rec as StepMetrics);
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

/**
 * Validates the options (ConfigError before anything starts), then runs `launch --workers N` for each N and
 * returns the medians and per-step metrics. Throws LaunchRunError when a run fails.
 */
export async function runScalingBench(opts: ScalingOptions): Promise<ScalingResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  checkInt(opts.steps, "steps", 1);
  checkInt(opts.warmupSteps, "warmup-steps", 0);
  if (opts.steps <= opts.warmupSteps) throw new ConfigError(`--steps ${opts.steps} must exceed --warmup-steps ${opts.warmupSteps} (the warm-up steps are left out of the medians)`);
  if (opts.workers.length === 0) throw new ConfigError("--workers: name at least one worker count");
  for (const n of opts.workers) checkInt(n, "workers", 1);
  if (opts.microBatch !== undefined) checkInt(opts.microBatch, "micro-batch", 1);
  checkWritableDir(opts.keepRuns, "keep-runs");
  const userSet = opts.set ?? [];
  const base = loadRunConfig(opts.config, { set: userSet, backend: opts.backend });
  const micro = opts.microBatch ?? base.batch.micro_batch_size;
  const adaptive = opts.balance === "adaptive";
  const runSets = (n: number): string[] => [
    ...userSet,
    `batch.micro_batch_size=${adaptive ? micro * n : micro}`, `batch.global_batch_size=${micro * n}`, `batch.balance=${adaptive ? "adaptive" : "even"}`,
    "training.eval_interval_steps=0", "training.checkpoint_interval_steps=0",
    `schedule.warmup_steps=${Math.min(base.schedule.warmup_steps, 1)}`,
  ];
  // every run's config is validated before the first one starts
  for (const n of opts.workers) {
    const cfg = loadRunConfig(opts.config, { set: runSets(n), backend: opts.backend, maxSteps: opts.steps });
    validateForWorld(cfg, n, opts.config);
  }
  const m = base.model;
  const model = m === undefined ? "from the base checkpoint" : m.preset ?? `hidden ${m.hidden_size ?? "?"}, ${m.num_layers ?? "?"} layers, ${m.num_heads ?? "?"} heads`;
  const runs: ScalingRun[] = [];
  const independentRuns: IndependentRun[] = [];
  if (opts.independent && !opts.workers.includes(1)) throw new ConfigError("--independent needs N = 1 in --workers (its tokens/s is the baseline)");
  const workRoot = opts.keepRuns ?? fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-bench-scaling-"));
  let keep = opts.keepRuns !== undefined; // a failed run's directory (logs, failure.json) is kept for the user
  // SIGINT/SIGTERM: passed on to the running launch (which stops its workers and exits); then this benchmark stops.
  // Without it a SIGTERM (a scheduler, `timeout`) ended this process only, and the child job trained on, orphaned.
  const running = new Set<ChildProcess>();
  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted ??= signal;
    log(`bench scaling: ${signal}: stopping the running job`);
    for (const child of running) child.kill(signal);
  };
  const checkInterrupted = (): void => {
    if (interrupted !== undefined) throw new LaunchRunError(`interrupted by ${interrupted}; the runs were stopped`, EXIT_INTERRUPTED);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    for (const n of opts.workers) {
      checkInterrupted(); // a signal between two runs
      const out = path.join(workRoot, `workers-${n}`);
      fs.rmSync(out, { recursive: true, force: true });
      const args = [opts.config, "--workers", String(n), "--max-steps", String(opts.steps), "--output", out, "--quiet",
        ...runSets(n).flatMap((s) => ["--set", s]), ...(opts.backend ? ["--backend", opts.backend] : [])];
      log(`bench scaling: launch --workers ${n} (${opts.steps} steps, global batch ${micro * n})`);
      const code = await runLaunch(args, running);
      checkInterrupted();
      if (code !== EXIT_OK) {
        keep = true;
        throw new LaunchRunError(`launch --workers ${n} ${opts.config} failed with exit code ${code} (its run directory, kept: ${out})`, code);
      }
      const steps = readMetrics(path.join(out, "metrics.jsonl"));
      const backendUsed = backendOf(path.join(out, "logs", "rank-0.log"));
      const timed = steps.filter((s) => s.step > opts.warmupSteps);
      if (timed.length === 0) throw new Error(`launch --workers ${n}: metrics.jsonl has no step after the warm-up (${steps.length} steps recorded)`);
      const per_rank: RankSplit[] = Array.from({ length: n }, (_, r) => {
        const of = (f: (t: RankTimes) => number): number => median(timed.map((s) => s.per_rank.find((p) => p.rank === r) ?? s.per_rank[r]).filter((t) => t !== undefined).map(f));
        return {
          rank: r, sequences: of((t) => t.sequences ?? NaN), step_ms: of((t) => t.step_ms), compute_ms: of((t) => t.compute_ms), communication_ms: of((t) => t.communication_ms),
          data_wait_ms: of((t) => t.data_wait_ms), optimizer_ms: of((t) => t.optimizer_ms), other_ms: of(otherMs), idle_ms: of((t) => t.idle_ms),
        };
      });
      runs.push({
        N: n, global_batch: micro * n,
        tokens_per_s: median(timed.map((s) => s.tokens_per_s)), efficiency: NaN,
        step_ms: median(timed.map((s) => s.step_ms)), mfu: median(timed.map((s) => s.mfu)),
        final_loss: steps[steps.length - 1]?.loss ?? NaN, ...(backendUsed ? { backend_used: backendUsed } : {}), per_rank, steps,
        ...(opts.keepRuns ? { run_dir: out } : {}),
      });
    }
    if (opts.independent) {
      for (const n of opts.workers.filter((k) => k > 1)) {
        checkInterrupted();
        log(`bench scaling: ${n} independent launch --workers 1 jobs at the same time (${opts.steps} steps each)`);
        const outs = Array.from({ length: n }, (_, j) => path.join(workRoot, `independent-${n}`, `job-${j}`));
        const codes = await Promise.all(outs.map((out) => {
          fs.rmSync(out, { recursive: true, force: true });
          return runLaunch([opts.config, "--workers", "1", "--max-steps", String(opts.steps), "--output", out, "--quiet",
            ...runSets(1).flatMap((s) => ["--set", s]), ...(opts.backend ? ["--backend", opts.backend] : [])], running);
        }));
        checkInterrupted();
        const failed = codes.findIndex((c) => c !== EXIT_OK);
        if (failed >= 0) {
          keep = true;
          throw new LaunchRunError(`independent job ${failed} of ${n} (launch --workers 1 ${opts.config}) failed with exit code ${codes[failed]} (kept: ${outs[failed]})`, codes[failed]);
        }
        independentRuns.push(independentRun(n, outs.map((out) => readMetrics(path.join(out, "metrics.jsonl"))), opts.warmupSteps));
      }
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (!keep) fs.rmSync(workRoot, { recursive: true, force: true });
  }
  const baseRun = runs.find((r) => r.N === 1) ?? [...runs].sort((a, b) => a.N - b.N)[0];
  for (const r of runs) r.efficiency = r.tokens_per_s / ((r.N / baseRun.N) * baseRun.tokens_per_s);
  const single = runs.find((r) => r.N === 1);
  for (const ind of independentRuns) ind.efficiency = single ? ind.tokens_per_s / (ind.N * single.tokens_per_s) : NaN;
  const cpus = os.cpus();
  return {
    kind: "scaling", mode: "weak", config: path.resolve(opts.config), job: base.name, model, seq_len: base.data.max_seq_len, micro_batch: micro, balance: adaptive ? "adaptive" : "even",
    backend: describeBackend(opts.backend ?? base.backend, runs), steps: opts.steps, warmup_steps: opts.warmupSteps, timed_steps: [opts.warmupSteps + 1, opts.steps],
    efficiency_base_n: baseRun.N, cpu_cores: cpus.length, cpu_model: cpus[0]?.model ?? "unknown", date: new Date().toISOString(), runs,
    ...(opts.independent ? { independent: independentRuns } : {}),
  };
}

/**
 * Throughput of jobs that ran side by side, counted only over the window in which all of them were past their
 * warm-up and still running (their starts and ends differ by the process start-up): each job's median tokens/s
 * over its steps in that window, summed.
 */
function independentRun(n: number, jobs: StepMetrics[][], warmupSteps: number): IndependentRun {
  const timed = jobs.map((steps) => steps.filter((s) => s.step > warmupSteps));
  if (timed.some((t) => t.length === 0)) throw new Error(`independent jobs (N = ${n}): a job recorded no step after the warm-up`);
  // metrics.jsonl stamps each record with its wall-clock `time` (when the step's report arrived)
  const at = (s: StepMetrics): number => Date.parse((s as StepMetrics & { time?: string }).time ?? "");
  const from = Math.max(...timed.map((t) => at(t[0]) - t[0].step_ms));
  const to = Math.min(...timed.map((t) => at(t[t.length - 1])));
  const inWindow = timed.map((t) => t.filter((s) => at(s) - s.step_ms >= from && at(s) <= to));
  // No overlap worth the name (a job finished before another started): use every timed step, and say so by the count.
  const used = inWindow.every((t) => t.length > 0) ? inWindow : timed;
  const perJob = used.map((t) => median(t.map((s) => s.tokens_per_s)));
  return { N: n, tokens_per_s: perJob.reduce((a, b) => a + b, 0), efficiency: NaN, jobs_tokens_per_s: perJob, steps_in_window: used === inWindow ? inWindow.reduce((a, t) => a + t.length, 0) : 0 };
}

function describeBackend(configured: string, runs: ScalingRun[]): string {
  const used = [...new Set(runs.map((r) => r.backend_used).filter((b): b is string => b !== undefined))];
  return used.length === 0 || (used.length === 1 && used[0] === configured) ? configured : `${configured} (${used.join(", ")})`;
}

/** The text tables of a scaling result (what `launch bench scaling` prints). */
export function formatScalingTables(res: ScalingResult): string {
  const [from, to] = res.timed_steps;
  const eff = res.efficiency_base_n === 1 ? "tokens/s(N) / (N x tokens/s(1))" : `relative to N=${res.efficiency_base_n} (N=1 not measured)`;
  let s = `weak scaling: fixed micro-batch of ${res.micro_batch} sequences per worker, global batch = N x ${res.micro_batch} (each worker's work per step stays constant; ideal efficiency 1.0)\n`;
  if (res.balance === "adaptive") s += "batch.balance adaptive: the coordinator divides each global batch between the workers by their measured speed (seqs = median share)\n";
  s += `${res.config}: model ${res.model}, seq ${res.seq_len}, backend ${res.backend}, ${res.steps} steps per run, medians of steps ${from}..${to}, ${res.cpu_cores} CPU cores\n`;
  s += `efficiency = ${eff}; MFU = model FLOP/s over the sum of the ranks' measured peak matmul FLOP/s\n\n`;
  s += formatTable(["N", "global batch", "tokens/s", "efficiency", "step ms", "MFU", "final loss"], res.runs.map((r) => [
    String(r.N), String(r.global_batch), r.tokens_per_s.toFixed(0), r.efficiency.toFixed(3), r.step_ms.toFixed(1), `${(r.mfu * 100).toFixed(2)}%`, r.final_loss.toFixed(3),
  ]));
  s += `\ntime split per rank, ms per step (medians of steps ${from}..${to}): compute = forward + backward, comm = exposed all-reduce\n`;
  s += "(after the backward pass), data = waiting for the next batch, optim = optimizer, other = the rest of the rank's step\n";
  s += "(plans, reports), idle = waiting for the slowest rank; step = the rank's own step time (without idle); each column\n";
  s += "is its own median over the steps, so the parts of a row need not add up to its step (the report's charts show every step)\n\n";
  s += formatTable(["N", "rank", "seqs", "step", "compute", "comm", "data", "optim", "other", "idle"], res.runs.flatMap((r) => r.per_rank.map((p) => [
    String(r.N), String(p.rank), Number.isFinite(p.sequences) ? String(p.sequences) : "—", p.step_ms.toFixed(1), p.compute_ms.toFixed(1), p.communication_ms.toFixed(1), p.data_wait_ms.toFixed(1),
    p.optimizer_ms.toFixed(1), p.other_ms.toFixed(1), p.idle_ms.toFixed(1),
  ])));
  if (res.independent !== undefined && res.independent.length > 0) {
    s += "\nthe machine's own limit: N independent single-worker jobs at the same time (no communication); efficiency = their summed\n";
    s += "tokens/s / (N x tokens/s(1)), the most a data-parallel run could reach here. of ceiling = data-parallel efficiency / this\n\n";
    s += formatTable(["N", "tokens/s (sum)", "ceiling efficiency", "data-parallel efficiency", "of ceiling", "steps in window"], res.independent.map((ind) => {
      const dp = res.runs.find((r) => r.N === ind.N);
      return [String(ind.N), ind.tokens_per_s.toFixed(0), ind.efficiency.toFixed(3), dp ? dp.efficiency.toFixed(3) : "—", dp ? (dp.efficiency / ind.efficiency).toFixed(3) : "—", String(ind.steps_in_window)];
    }));
  }
  const over = res.runs.filter((r) => r.N > res.cpu_cores).map((r) => r.N);
  if (over.length > 0) s += `\nnote: N = ${over.join(", ")} exceeds the ${res.cpu_cores} CPU cores here; those workers share cores, so efficiency drops for that reason\n`;
  return s;
}

const SPLIT_PARTS: [(t: RankTimes) => number, string][] = [
  [(t) => t.compute_ms, "compute"], [(t) => t.communication_ms, "exposed comm"], [(t) => t.data_wait_ms, "data wait"],
  [(t) => t.optimizer_ms, "optimizer"], [otherMs, "other"], [(t) => t.idle_ms, "idle"],
];

/** The HTML report of a scaling result: loss curves, tokens/s and efficiency per N, time split per rank over steps. */
export function scalingReport(res: ScalingResult, command: string): Report {
  const [from, to] = res.timed_steps;
  const lossChart: ReportChart = {
    title: "Training loss per step, one line per N",
    config: {
      type: "line",
      data: { datasets: res.runs.map((r, i) => ({ label: `N=${r.N}`, data: r.steps.map((s) => ({ x: s.step, y: s.loss })), borderColor: colour(i), backgroundColor: colour(i, 0.3) })) },
      options: { scales: { x: { type: "linear", ticks: { stepSize: 1 }, title: { display: true, text: "step" } }, y: { title: { display: true, text: "loss" } } } },
    },
  };
  const tpsChart: ReportChart = {
    title: `Throughput per N (medians of steps ${from}..${to}) and scaling efficiency`,
    config: {
      type: "bar",
      data: {
        labels: res.runs.map((r) => `N=${r.N}`),
        datasets: [
          { type: "bar", label: "tokens/s", data: res.runs.map((r) => r.tokens_per_s), backgroundColor: colour(0, 0.7), yAxisID: "y" },
          { type: "line", label: "efficiency", data: res.runs.map((r) => r.efficiency), borderColor: colour(3), backgroundColor: colour(3), yAxisID: "y1" },
        ],
      },
      options: {
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "tokens/s" } },
          y1: { position: "right", min: 0, suggestedMax: 1.1, grid: { drawOnChartArea: false }, title: { display: true, text: "efficiency" } },
        },
      },
    },
  };
  const tpsSteps: ReportChart = {
    title: "Throughput per step, one line per N",
    config: {
      type: "line",
      data: { datasets: res.runs.map((r, i) => ({ label: `N=${r.N}`, data: r.steps.map((s) => ({ x: s.step, y: s.tokens_per_s })), borderColor: colour(i), backgroundColor: colour(i, 0.3) })) },
      options: { scales: { x: { type: "linear", ticks: { stepSize: 1 }, title: { display: true, text: "step" } }, y: { beginAtZero: true, title: { display: true, text: "tokens/s" } } } },
    },
  };
  const splitCharts: ReportChart[] = res.runs.map((r) => ({
    title: `Time split per rank over steps, N=${r.N} (one stacked bar per rank and step, ms)`,
    config: {
      type: "bar",
      data: {
        labels: r.steps.map((s) => `step ${s.step}`),
        datasets: Array.from({ length: r.N }, (_, rank) => SPLIT_PARTS.map(([part, name], k) => ({
          label: `rank ${rank} ${name}`,
          stack: `rank ${rank}`,
          data: r.steps.map((s) => {
            const t = s.per_rank.find((p) => p.rank === rank) ?? s.per_rank[rank];
            return t === undefined ? 0 : part(t);
          }),
          backgroundColor: colour(k, rank % 2 === 0 ? 0.85 : 0.5),
        }))).flat(),
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "ms" } } } },
    },
  }));
  const report: Report = {
    title: `ringtrain weak scaling: ${res.job} (${res.model})`,
    notes: [
      `${command}`,
      `${res.date}; ${res.cpu_cores} CPU cores (${res.cpu_model}); backend ${res.backend}`,
      `Weak scaling: fixed micro-batch of ${res.micro_batch} sequences (seq ${res.seq_len}) per worker, global batch = N x ${res.micro_batch}; ${res.steps} steps per run, medians of steps ${from}..${to}.`,
    ],
    sections: [
      {
        heading: "Throughput and efficiency",
        notes: [`efficiency = tokens/s(N) / (N x tokens/s(${res.efficiency_base_n})) x ${res.efficiency_base_n}; MFU = model FLOP/s over the sum of the ranks' measured peak matmul FLOP/s`],
        tables: [{
          columns: ["N", "global batch", "tokens/s", "efficiency", "step ms", "MFU %", "final loss"],
          rows: res.runs.map((r) => [r.N, r.global_batch, Math.round(r.tokens_per_s), r.efficiency, r.step_ms, r.mfu * 100, r.final_loss]),
        }, ...(res.independent?.length ? [{
          columns: ["N", "independent 1-worker jobs: tokens/s (sum)", "ceiling efficiency (no communication)", "data-parallel efficiency", "of ceiling"],
          rows: res.independent.map((ind) => {
            const dp = res.runs.find((r) => r.N === ind.N);
            return [ind.N, Math.round(ind.tokens_per_s), ind.efficiency, dp?.efficiency ?? NaN, dp ? dp.efficiency / ind.efficiency : NaN];
          }),
        }] : [])],
        charts: [tpsChart, tpsSteps],
      },
      { heading: "Loss", charts: [lossChart] },
      {
        heading: "Time split per rank",
        notes: [
          "compute = forward + backward; exposed comm = all-reduce after the backward pass; data wait = waiting for the next batch; other = the rest of the rank's step (plans, reports); idle = waiting for the slowest rank. A stacked bar's height is the job's step time.",
          `Medians of steps ${from}..${to}, ms per step (each column is its own median, so the parts of a row need not add up to its step ms; the charts below show every step):`,
        ],
        tables: [{
          columns: ["N", "rank", "step ms", "compute", "exposed comm", "data wait", "optimizer", "other", "idle"],
          rows: res.runs.flatMap((r) => r.per_rank.map((p) => [r.N, p.rank, p.step_ms, p.compute_ms, p.communication_ms, p.data_wait_ms, p.optimizer_ms, p.other_ms, p.idle_ms])),
        }],
        charts: splitCharts,
      },
    ],
  };
  return report;
}

/** Arguments of `launch bench scaling`. */
interface ScalingArgs {
  config?: string;
  workers: string;
  steps: number;
  "warmup-steps": number;
  "micro-batch"?: number;
  backend?: string;
  set?: string[];
  json?: string;
  html?: string;
  "keep-runs"?: string;
  independent: boolean;
  balance: "even" | "adaptive";
}

/** The `launch bench scaling` subcommand; `setCode` receives the exit code (a failed run's code is passed on). */
export function scalingCommand(setCode: (code: number) => void): CommandModule<object, ScalingArgs> {
  return {
    command: "scaling [config]",
    describe: "weak scaling: run `launch --workers N` for each N; tokens/s, efficiency, MFU, time split per rank",
    builder: (y: Argv<object>): Argv<ScalingArgs> =>
      y
        .positional("config", { type: "string", describe: "run configuration (default: examples/pretrain-brown.yaml)" })
        .option("workers", { type: "string", default: "1,2", describe: "worker counts, comma-separated (one run each)" })
        .option("steps", { type: "number", default: 12, describe: "optimizer steps per run" })
        .option("warmup-steps", { type: "number", default: 2, describe: "leading steps left out of the medians" })
        .option("micro-batch", { type: "number", describe: "sequences per worker per step (default: the config's micro_batch_size)" })
        .option("backend", { type: "string", choices: ["auto", "wasm", "cpu", "tensorflow"], describe: "override the config's backend" })
        .option("set", { type: "string", array: true, nargs: 1, describe: "override any config field in every run: --set data.cache_dir=/tmp/c" })
        .option("json", { type: "string", describe: "write all results (with every step's metrics) to FILE" })
        .option("html", { type: "string", describe: "write a self-contained HTML report with charts to FILE" })
        .option("keep-runs", { type: "string", describe: "keep the run directories under DIR (default: temporary, removed)" })
        .option("independent", { type: "boolean", default: false, describe: "also run N independent 1-worker jobs at once for each N > 1: the machine's ceiling without communication" })
        .option("balance", { type: "string", choices: ["even", "adaptive"], default: "even", describe: "batch.balance of the runs: adaptive divides each global batch by the workers' measured speed" }) as unknown as Argv<ScalingArgs>,
    handler: async (a: ArgumentsCamelCase<ScalingArgs>): Promise<void> => {
      const workers = parseIntList(a.workers, "workers", 1);
      checkWritable(a.json, "json");
      checkWritable(a.html, "html");
      const config = a.config ?? defaultScalingConfig();
      let res: ScalingResult;
      try {
        res = await runScalingBench({
          config, workers, steps: a.steps, warmupSteps: a["warmup-steps"], microBatch: a["micro-batch"], backend: a.backend, set: a.set, keepRuns: a["keep-runs"], independent: a.independent, balance: a.balance,
        });
      } catch (err) {
        if (err instanceof LaunchRunError) {
          process.stderr.write(`launch bench scaling: ${err.message}\n`);
          setCode(err.exitCode);
          return;
        }
        throw err;
      }
      process.stdout.write(formatScalingTables(res));
      if (a.json !== undefined) {
        writeJsonFile(a.json, res);
        process.stdout.write(`\nresults: ${a.json}\n`);
      }
      if (a.html !== undefined) {
        const report = scalingReport(res, `launch ${process.argv.slice(2).join(" ")}`);
        writeHtmlReport(a.html, report);
        process.stdout.write(`report (${countCharts(report)} charts): ${a.html}\n`);
      }
      setCode(EXIT_OK);
    },
  };
}
