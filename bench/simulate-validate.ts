/**
 * Validation of the scaling simulator against real runs on this machine (npm run bench:simulate; docs/SCALING.md).
 *
 *   node dist/bench/simulate-validate.js [--model bert-tiny --vocab 8192 --micro 16 --seq 128 --steps 10
 *       --workers 2,4 --rates 1gbit,100mbit --sizes 262144,1048576,4194304,6291456,16777216 --reps 3 --json FILE]
 *
 * 1. All-reduce times of ringtrain's ring over loopback TCP (bench/allreduce.js --json --unix-sockets false, N = 2 and 4;
 *    TCP, as between machines, not the Unix sockets same-host neighbours use by default) -> least-squares fit of
 *    the software α, β, γ, with the per-byte cost multiplied by max(1, N / cores) (ranks sharing cores).
 * 2. For every case, right before and right after its real run (so the prediction sees the machine load of the
 *    run; the mean of the two is used): the compute profile (launch/bench/simulate-measure.ts) measured in k
 *    concurrent processes, k = the case's worker count. A synchronous step waits for its slowest worker, so the
 *    slowest process's profile is used, scaled to the median over repetitions of the slowest time per repetition. This is how
 *    2 cores are accounted for: 4 workers on 2 cores each get about half a core, and so do the 4 measuring
 *    processes; the simulator takes that measured per-worker compute as is.
 * 3. Prediction (simulateStep, no overlap: the measured runs do not overlap) and the real run: `launch --workers N`
 *    on loopback, or 2 network-namespace "nodes" (test/helpers/netns.ts, uniquely named, always removed) with 1
 *    worker each pinned to its own core and every veth capped with `tc tbf`. Measured step time = median of
 *    metrics.jsonl step_ms over steps 3..S. Traffic never leaves loopback and the private namespaces.
 */
import { spawn, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { repoRoot } from "../shared/paths";
import { measureCompute } from "../launch/bench/simulate-measure";
import {
  fitAlphaBeta, microBatchMs, simulateStep, type AllReduceSample, type ComputeProfile, type FitResult, type NetworkSpec, type PhaseTimes, type SimWorkload,
} from "../launch/bench/simulate-model";
import { NetnsCluster, netnsUnavailable } from "../test/helpers/netns";
import { median } from "../launch/bench/common";

const DIST = path.join(__dirname, "..");

/** The flags of this script, parsed and checked. */
export interface SimulateValidateArgs {
  workload: SimWorkload;
  steps: number;
  reps: number;
  workers: number[];
  /** tc tbf rates of the 2-namespace cases ("none" and empty entries dropped). */
  rates: string[];
  /** All-reduce message sizes, comma-separated (passed to bench/allreduce.js --sizes). */
  sizes: string;
  /** Write the results as JSON to this file ("" = don't). */
  json: string;
  /** Child mode (internal): measure the compute profile of this JSON workload and print it. */
  measureChild?: string;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): SimulateValidateArgs {
  const a = yargs(argv)
    .usage("npm run bench:simulate -- [flags]\n\nValidates the scaling simulator against real runs on this machine: fits the all-reduce cost, measures the compute profile, and compares predicted with measured step times (loopback, and 2 capped network namespaces when run as root).")
    .option("model", { type: "string", default: "bert-tiny", requiresArg: true, describe: "model preset" })
    .option("vocab", { type: "number", default: 8192, requiresArg: true, describe: "tokenizer vocabulary size" })
    .option("seq", { type: "number", default: 128, requiresArg: true, describe: "sequence length" })
    .option("micro", { type: "number", default: 16, requiresArg: true, describe: "sequences per worker per step" })
    .option("steps", { type: "number", default: 10, requiresArg: true, describe: "steps per real run (medians of steps 3..S)" })
    .option("reps", { type: "number", default: 3, requiresArg: true, describe: "repetitions of each compute measurement" })
    .option("workers", { type: "string", default: "2,4", requiresArg: true, describe: "worker counts of the loopback cases, comma-separated", coerce: (v: string) => v.split(",").filter(Boolean).map(Number) })
    .option("rates", {
      type: "string", default: "1gbit,100mbit", requiresArg: true, describe: "tc tbf rates of the 2-namespace cases, comma-separated (none: no namespace cases)",
      coerce: (v: string): string[] => {
        const rates = v.split(",").map((r) => r.trim()).filter((r) => r !== "" && r !== "none");
        for (const r of rates) rateGbit(r); // a typo fails now, not after the all-reduce measurements
        return rates;
      },
    })
    .option("sizes", { type: "string", default: "262144,1048576,4194304,6291456,16777216", requiresArg: true, describe: "all-reduce message sizes in bytes for the fit, comma-separated" })
    .option("json", { type: "string", default: "", requiresArg: true, describe: "also write the results as JSON to FILE" })
    .option("measure-child", { type: "string", requiresArg: true, hidden: true, describe: "internal: measure the compute profile of this JSON workload" })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  return {
    workload: { preset: a.model, vocabSize: a.vocab, seqLen: a.seq, microBatch: a.micro },
    steps: a.steps, reps: a.reps, workers: a.workers, rates: a.rates, sizes: a.sizes, json: a.json,
    ...(a["measure-child"] !== undefined ? { measureChild: a["measure-child"] } : {}),
  };
}


interface Case {
  label: string;
  workers: number;
  /** tc tbf rate for the 2-namespace case; undefined: loopback. */
  rate?: string;
}

interface Measured {
  stepMs: number;
  computeMs: number;
  commMs: number;
  /** All-reduce time of the rank that arrived last (min over ranks): the collective without waiting for a slower rank. */
  commLastMs: number;
  optimizerMs: number;
  dataWaitMs: number;
  steps: number;
}

interface Row {
  case: string;
  workers: number;
  predicted: { stepMs: number; computeMs: number; commMs: number; optimizerMs: number };
  measured: Measured;
  errorPct: number;
  loadavg: number[];
  /** Measured compute + optimizer per step (slowest worker) before and after the run: the drift during it. */
  computeBeforeMs: number;
  computeAfterMs: number;
}

/** tc rate ("100mbit", "1gbit", "500kbit") in Gbit/s. */
function rateGbit(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)bit$/i.exec(rate);
  if (!m) throw new Error(`--rates: cannot read '${rate}' (use e.g. 100mbit, 1gbit)`);
  return Number(m[1]) * { k: 1e-6, m: 1e-3, g: 1 }[m[2].toLowerCase() as "k" | "m" | "g"];
}

// ---- child mode: one compute measurement, printed as JSON ---------------------------------------------------

async function measureChild(workload: string, reps: number): Promise<void> {
  const w = JSON.parse(workload) as SimWorkload;
  const { profile, detail } = await measureCompute(w, { backend: "wasm", reps, dropout: 0 });
  process.stdout.write(JSON.stringify({ profile, reps: detail.layersMeasured === profile.layers.length ? detail.fwdBwdRepsMsL : [] }) + "\n");
}

/** Scales every phase of a profile by f (the optimizer too). */
function scaleProfile(p: ComputeProfile, f: number, source: string): ComputeProfile {
  const ph = (x: PhaseTimes): PhaseTimes => ({ forwardMs: x.forwardMs * f, backwardMs: x.backwardMs * f });
  return { embeddings: ph(p.embeddings), layers: p.layers.map(ph), head: ph(p.head), optimizerMs: p.optimizerMs * f, source };
}

/**
 * Measures the compute profile in k concurrent processes (pinned to `cpus[i]` when given). A synchronous step
 * waits for its slowest worker, so the profile is that of the slowest process, scaled so that its forward+backward
 * equals the median over repetitions of the slowest process's time in that repetition (the expected straggler).
 */
async function measureConcurrent(w: SimWorkload, k: number, reps: number, cpus?: string[]): Promise<ComputeProfile> {
  const runs = Array.from({ length: k }, (_, i) => new Promise<{ profile: ComputeProfile; reps: number[] }>((resolve, reject) => {
    const argv = [process.execPath, __filename, "--measure-child", JSON.stringify(w), "--reps", String(reps)];
    const cmd = cpus ? ["taskset", "-c", cpus[i], ...argv] : argv;
    const p = spawn(cmd[0], cmd.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.on("exit", (code) => (code === 0 ? resolve(JSON.parse(out.trim().split("\n").pop() as string) as { profile: ComputeProfile; reps: number[] }) : reject(new Error(`compute measurement exited ${code}`))));
  }));
  const ps = await Promise.all(runs);
  const total = (p: ComputeProfile): number => microBatchMs(p) + p.optimizerMs;
  const slowest = ps.reduce((a, b) => (total(b.profile) > total(a.profile) ? b : a)).profile;
  const n = Math.min(...ps.map((p) => p.reps.length));
  const straggler = n > 0 ? median(Array.from({ length: n }, (_, r) => Math.max(...ps.map((p) => p.reps[r])))) / microBatchMs(slowest) : 1;
  const f = Math.max(1, straggler);
  return scaleProfile(slowest, f, `${slowest.source}, ${k} concurrent process${k > 1 ? "es" : ""}${cpus ? " pinned" : ""}: slowest (${ps.map((p) => total(p.profile).toFixed(0)).join(", ")} ms) x straggler ${f.toFixed(2)}`);
}

/** Phase-wise mean of two profiles (compute measured before and after a run). */
function meanProfile(a: ComputeProfile, b: ComputeProfile): ComputeProfile {
  const ph = (x: PhaseTimes, y: PhaseTimes): PhaseTimes => ({ forwardMs: (x.forwardMs + y.forwardMs) / 2, backwardMs: (x.backwardMs + y.backwardMs) / 2 });
  return {
    embeddings: ph(a.embeddings, b.embeddings), layers: a.layers.map((l, i) => ph(l, b.layers[i])), head: ph(a.head, b.head),
    optimizerMs: (a.optimizerMs + b.optimizerMs) / 2, source: `mean of before (${a.source}) and after (${b.source})`,
  };
}

// ---- the real runs ------------------------------------------------------------------------------------------

interface MetricsLine {
  step: number;
  step_ms: number;
  per_rank: { compute_ms: number; communication_ms: number; optimizer_ms: number; data_wait_ms: number }[];
}

function readMetrics(file: string): Measured {
  const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as MetricsLine).filter((l) => l.step > 2);
  const rank = (f: (p: MetricsLine["per_rank"][number]) => number): number => median(lines.map((l) => Math.max(...l.per_rank.map(f))));
  return {
    stepMs: median(lines.map((l) => l.step_ms)), computeMs: rank((p) => p.compute_ms), commMs: rank((p) => p.communication_ms),
    commLastMs: median(lines.map((l) => Math.min(...l.per_rank.map((p) => p.communication_ms)))),
    optimizerMs: rank((p) => p.optimizer_ms), dataWaitMs: rank((p) => p.data_wait_ms), steps: lines.length,
  };
}

function runArgs(w: SimWorkload, workers: number, globalWorkers: number, steps: number, out: string): string[] {
  return [
    path.join(DIST, "launch", "main.js"), path.join(repoRoot(), "examples", "pretrain-brown.yaml"), "--workers", String(workers), "--max-steps", String(steps),
    "--output", out, "--overwrite", "--quiet", "--backend", "wasm",
    "--set", `model.preset=${w.preset}`, "--set", `tokenizer.vocab_size=${w.vocabSize}`, "--set", `data.max_seq_len=${w.seqLen}`,
    "--set", `batch.micro_batch_size=${w.microBatch}`, "--set", `batch.global_batch_size=${w.microBatch * globalWorkers}`,
    "--set", "training.eval_interval_steps=0", "--set", "training.checkpoint_interval_steps=0", "--set", "schedule.warmup_steps=1",
    "--set", "model.hidden_dropout=0", "--set", "model.attention_dropout=0",
    // TCP between the workers, as the fit above and as between machines (not the same-host Unix sockets)
    "--set", "communication.unix_sockets=false",
  ];
}

function runLoopback(w: SimWorkload, n: number, steps: number, root: string): Measured {
  const out = path.join(root, `loopback-${n}`);
  const r = spawnSync(process.execPath, runArgs(w, n, n, steps, out), { cwd: repoRoot(), stdio: ["ignore", "inherit", "inherit"], timeout: 900_000 });
  if (r.status !== 0) throw new Error(`launch --workers ${n} exited ${r.status}`);
  return readMetrics(path.join(out, "metrics.jsonl"));
}

async function runNamespaces(w: SimWorkload, rate: string, steps: number, root: string): Promise<Measured> {
  const nodes = 2;
  const out = path.join(root, `netns-${rate}`);
  const cluster = new NetnsCluster(nodes, (i) => [`rtsim-${i}`], rate);
  try {
    const token = crypto.randomBytes(24).toString("hex");
    const coordinator = `${cluster.nodes[0].ip}:29400`;
    const exits = cluster.nodes.map((node, i) => {
      const argv = ["taskset", "-c", String(i % os.cpus().length), process.execPath, ...runArgs(w, 1, nodes, steps, out),
        "--nodes", String(nodes), "--node-rank", String(i), "--coordinator", coordinator, "--advertise-host", node.ip, "--job-id", `simval-${process.pid}`];
      const child = cluster.spawn(i, argv, { env: { ...process.env, RINGTRAIN_TOKEN: token }, cwd: repoRoot(), log: path.join(root, `netns-${rate}-node${i}.log`) });
      return new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    });
    let timer: NodeJS.Timeout | undefined;
    const codes = await Promise.race([Promise.all(exits), new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), 900_000)))]);
    clearTimeout(timer);
    if (codes === "timeout" || codes.some((c) => c !== 0)) {
      const logs = [0, 1].map((i) => fs.readFileSync(path.join(root, `netns-${rate}-node${i}.log`), "utf8").slice(-1500)).join("\n---\n");
      throw new Error(`namespace run at ${rate}: ${codes === "timeout" ? "timed out" : `exit codes ${codes.join(",")}`}\n${logs}`);
    }
    return readMetrics(path.join(out, "metrics.jsonl"));
  } finally {
    cluster.destroy();
  }
}

// ---- driver -------------------------------------------------------------------------------------------------

function measureAllReduce(sizes: string, ranks: number[]): AllReduceSample[] {
  const r = spawnSync(process.execPath, [path.join(DIST, "bench", "allreduce.js"), "--json", "--no-gloo", "--unix-sockets", "false", "--sizes", sizes, "--ranks", ranks.join(","), "--iters", "12", "--warmup", "2"],
    { encoding: "utf8", timeout: 900_000, stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`bench/allreduce.js exited ${r.status}`);
  const samples: AllReduceSample[] = [];
  for (const line of r.stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const o = JSON.parse(line) as { N?: number; bytes?: number; seconds?: number; impl?: string };
    if (o.impl?.startsWith("ringtrain") && o.N && o.bytes && o.seconds) samples.push({ n: o.N, bytes: o.bytes, seconds: o.seconds });
  }
  return samples;
}

async function main(a: SimulateValidateArgs): Promise<void> {
  const { workload: w, steps, reps, workers, rates } = a;
  const cores = os.cpus().length;
  const why = rates.length > 0 ? netnsUnavailable() : undefined;
  if (why) process.stderr.write(`namespace cases skipped: ${why}\n`);
  const cases: Case[] = [
    ...workers.map((n) => ({ label: `loopback, ${n} workers`, workers: n })),
    ...(why ? [] : rates.map((rate) => ({ label: `2 namespaces, tbf ${rate}`, workers: 2, rate }))),
  ];

  process.stderr.write(`measuring all-reduce times (N = ${[...new Set([2, ...workers])].join(", ")}) ...\n`);
  const samples = measureAllReduce(a.sizes, [...new Set([2, ...workers.filter((n) => n >= 2)])]);
  const fit: FitResult = fitAlphaBeta(samples, cores);
  process.stderr.write(`fit: α ${fit.alphaUs.toFixed(1)} µs, β ${fit.betaNsPerByte.toFixed(3)} ns/B (x max(1, N/${cores})), γ ${fit.bucketUs.toFixed(0)} µs; rms rel. error ${(100 * fit.rmsRelError).toFixed(1)} %\n`);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-simval-"));
  const rows: Row[] = [];
  try {
    for (const c of cases) {
      process.stderr.write(`${c.label}: measuring compute in ${c.workers} concurrent processes ...\n`);
      const pins = c.rate ? Array.from({ length: c.workers }, (_, i) => String(i % cores)) : undefined;
      const before = await measureConcurrent(w, c.workers, reps, pins);
      process.stderr.write(`${c.label}: compute before ${microBatchMs(before).toFixed(0)} ms; running launch ...\n`);
      const m = c.rate ? await runNamespaces(w, c.rate, steps, root) : runLoopback(w, c.workers, steps, root);
      process.stderr.write(`${c.label}: measured step ${m.stepMs.toFixed(0)} ms; measuring compute again ...\n`);
      const after = await measureConcurrent(w, c.workers, reps, pins);
      const compute = meanProfile(before, after);
      const network: NetworkSpec = c.rate
        ? { gpusPerNode: 1, topology: "ring", inter: { bandwidthGbit: rateGbit(c.rate), latencyUs: 0 }, intra: { bandwidthGbit: Infinity, latencyUs: 0 } }
        : { gpusPerNode: c.workers, topology: "ring", inter: { bandwidthGbit: Infinity, latencyUs: 0 }, intra: { bandwidthGbit: Infinity, latencyUs: 0 } };
      // Loopback: all workers share the cores; namespaces: each "node" is pinned to a core of its own.
      const oversubscription = c.rate ? () => 1 : (n: number) => Math.max(1, n / cores);
      const p = simulateStep({ workload: w, compute, network, software: fit, bucketBytes: 25_000_000, overlap: false, oversubscription }, c.workers);
      const row: Row = {
        case: c.label, workers: c.workers,
        predicted: { stepMs: p.stepMs, computeMs: p.computeMs, commMs: p.commMs, optimizerMs: p.optimizerMs },
        measured: m, errorPct: (100 * (p.stepMs - m.stepMs)) / m.stepMs, loadavg: os.loadavg(),
        computeBeforeMs: microBatchMs(before) + before.optimizerMs, computeAfterMs: microBatchMs(after) + after.optimizerMs,
      };
      rows.push(row);
      process.stderr.write(`${c.label}: predicted ${p.stepMs.toFixed(0)} ms, measured ${m.stepMs.toFixed(0)} ms (${row.errorPct.toFixed(1)} %)\n`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }

  const result = { workload: w, steps, cores, fit, allreduceSamples: samples, rows };
  const jsonFile = a.json;
  if (jsonFile !== "") fs.writeFileSync(jsonFile, JSON.stringify(result, null, 2) + "\n");
  const f1 = (x: number): string => x.toFixed(0);
  process.stdout.write(`\n${w.preset} (vocab ${w.vocabSize}), seq ${w.seqLen}, micro-batch ${w.microBatch} per worker, ${steps} steps (medians of steps 3..${steps}), ${cores} cores\n`);
  process.stdout.write(`fit to ${samples.length} all-reduce times: α ${fit.alphaUs.toFixed(1)} µs, β ${fit.betaNsPerByte.toFixed(3)} ns/B x max(1, N/${cores}), γ ${fit.bucketUs.toFixed(0)} µs (rms rel. error ${(100 * fit.rmsRelError).toFixed(1)} %)\n\n`);
  process.stdout.write("| case | predicted step ms | (compute / all-reduce / optimizer) | measured step ms | (compute / all-reduce of the last rank / optimizer / data) | error |\n|---|---:|---|---:|---|---:|\n");
  for (const r of rows) {
    const p = r.predicted;
    const m = r.measured;
    process.stdout.write(`| ${r.case} | ${f1(p.stepMs)} | ${f1(p.computeMs)} / ${f1(p.commMs)} / ${f1(p.optimizerMs)} | ${f1(m.stepMs)} | ${f1(m.computeMs)} / ${f1(m.commLastMs)} / ${f1(m.optimizerMs)} / ${f1(m.dataWaitMs)} | ${r.errorPct >= 0 ? "+" : ""}${r.errorPct.toFixed(1)} % |\n`);
  }
  process.stdout.write(`load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}\n`);
}

if (require.main === module) {
  const args = parseArgs(hideBin(process.argv));
  if (args.measureChild !== undefined) {
    measureChild(args.measureChild, args.reps).catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
  } else {
    main(args).catch((e: unknown) => {
      process.stderr.write(`bench:simulate: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exit(1);
    });
  }
}
