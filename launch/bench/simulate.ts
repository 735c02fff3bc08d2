/**
 * `launch bench simulate`: predicted step time, exposed communication and weak-scaling efficiency of data-parallel
 * BERT training at 8 ... 1024 GPUs (launch/bench/simulate-model.ts; method and assumptions in docs/SCALING.md).
 *
 *   launch bench simulate --model bert-base --gpus 8,64,1024 --bandwidth-gbit 100 --topology hierarchical --overlap
 *   launch bench simulate --compute-from measure --model bert-tiny --vocab 8192 --micro-batch 16 --gpus 2,4
 *       --gpus-per-node 4 --fit allreduce.jsonl --cores 2 --json report.json
 */
import * as fs from "node:fs";
import * as os from "node:os";
import type { Argv, CommandModule } from "yargs";
import { ConfigError } from "../../shared/config/load";
import type { BackendName } from "../../shared/backend/select";
import { checkWritable, writeJsonFile } from "./common";
import { measureCompute } from "./simulate-measure";
import {
  fitAlphaBeta, flopsComputeProfile, gradientTensors, H100_ASSUMPTIONS, SIM_PRESETS, simulateStep, workloadConfig, ZERO_SOFTWARE,
  type AllReduceSample, type ComputeProfile, type FitResult, type NetworkSpec, type PhaseTimes, type SimResult, type SimSpec,
  type SimWorkload, type SoftwareCost,
} from "./simulate-model";

/** The flags of `launch bench simulate` as yargs parses them. */
export interface SimulateFlags {
  model: string;
  vocab: number;
  seq: number;
  "micro-batch": number;
  accumulation: number;
  gpus: string;
  "gpus-per-node": number;
  "bandwidth-gbit": number;
  "latency-us": number;
  "intra-bandwidth-gbit": number;
  "intra-latency-us": number;
  topology: string;
  overlap: boolean;
  "bucket-bytes": number;
  compression: string;
  "compute-from": string;
  "peak-tflops": number;
  mfu: number;
  fit?: string;
  "fit-cores": number;
  cores?: number;
  backend: string;
  reps: number;
  json?: string;
}

/** What a simulation prints and writes with --json. */
export interface SimulationReport {
  workload: SimWorkload;
  network: NetworkSpec;
  software: SoftwareCost;
  fit?: FitResult;
  compute: ComputeProfile;
  overlap: boolean;
  bucketBytes: number;
  wireBytesPerElement: number;
  gradientBytes: number;
  /** CPU cores the simulated workers share (oversubscription max(1, N/cores)); absent: one device per worker. */
  cores?: number;
  results: SimResult[];
}

function bad(flag: string, why: string): never {
  throw new ConfigError(`--${flag} ${why}`);
}

function positive(flag: string, v: number, opts: { integer?: boolean; allowInfinity?: boolean; allowZero?: boolean } = {}): number {
  const ok = (opts.allowInfinity && v === Infinity) || (Number.isFinite(v) && (opts.allowZero ? v >= 0 : v > 0) && (!opts.integer || Number.isInteger(v)));
  if (!ok) bad(flag, `must be a ${opts.allowZero ? "non-negative" : "positive"} ${opts.integer ? "integer" : "number"}, got ${String(v)}`);
  return v;
}

/** Reads all-reduce samples (JSON array, JSONL as written by bench/allreduce.js --json, or {samples|rows: [...]}) or a saved fit. */
export function loadFitFile(file: string, cores: number): FitResult {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    bad("fit", `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const values: unknown[] = [];
  try {
    const whole = JSON.parse(text) as unknown;
    values.push(...(Array.isArray(whole) ? whole : [whole]));
  } catch {
    for (const [i, line] of text.split("\n").entries()) {
      if (line.trim() === "") continue;
      try {
        values.push(JSON.parse(line) as unknown);
      } catch {
        bad("fit", `${file}:${i + 1} is not JSON`);
      }
    }
  }
  const samples: AllReduceSample[] = [];
  const take = (v: unknown): FitResult | null => {
    if (typeof v !== "object" || v === null) return null;
    const o = v as Record<string, unknown>;
    if (typeof o.alphaUs === "number" && typeof o.betaNsPerByte === "number" && typeof o.bucketUs === "number") {
      return { alphaUs: o.alphaUs, betaNsPerByte: o.betaNsPerByte, bucketUs: o.bucketUs, rmsRelError: Number(o.rmsRelError ?? NaN), samples: Number(o.samples ?? 0), cores: Number(o.cores ?? cores) };
    }
    if (typeof o.fit === "object" && o.fit !== null) return take(o.fit);
    for (const key of ["samples", "rows"]) if (Array.isArray(o[key])) for (const r of o[key] as unknown[]) take(r);
    const n = typeof o.N === "number" ? o.N : o.n;
    if (typeof n === "number" && typeof o.bytes === "number" && typeof o.seconds === "number") {
      if (typeof o.impl === "string" && !o.impl.startsWith("ringtrain")) return null; // Gloo rows, the TCP limit line
      samples.push({ n, bytes: o.bytes, seconds: o.seconds });
    }
    return null;
  };
  for (const v of values) {
    const saved = take(v);
    if (saved) return saved;
  }
  try {
    return fitAlphaBeta(samples, cores);
  } catch (err) {
    bad("fit", `${file}: ${(err as Error).message}`);
  }
}

/** Reads a compute profile (a ComputeProfile, or any JSON object with one under `compute`) for a model of `layers` layers. */
export function loadComputeFile(file: string, layers: number): ComputeProfile {
  let o: unknown;
  try {
    o = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
  } catch (err) {
    bad("compute-from", `cannot read a JSON compute profile from ${file} (${err instanceof Error ? err.message.split("\n")[0] : String(err)})`);
  }
  const rec = (typeof o === "object" && o !== null && "compute" in o ? (o as { compute: unknown }).compute : o) as Record<string, unknown> | null;
  const phase = (v: unknown, what: string): PhaseTimes => {
    const p = v as Partial<PhaseTimes> | null;
    if (typeof p !== "object" || p === null || !(Number(p.forwardMs) >= 0) || !(Number(p.backwardMs) >= 0)) bad("compute-from", `${file}: ${what} needs forwardMs and backwardMs >= 0`);
    return { forwardMs: Number(p.forwardMs), backwardMs: Number(p.backwardMs) };
  };
  if (typeof rec !== "object" || rec === null) bad("compute-from", `${file}: not a compute profile`);
  const ls = Array.isArray(rec.layers) ? rec.layers.map((l, i) => phase(l, `layers[${i}]`)) : [];
  if (ls.length !== 1 && ls.length !== layers) bad("compute-from", `${file}: has ${ls.length} layers; the model has ${layers} (or give 1 to repeat)`);
  if (!(Number(rec.optimizerMs) >= 0)) bad("compute-from", `${file}: optimizerMs must be a number >= 0`);
  return {
    embeddings: phase(rec.embeddings, "embeddings"),
    layers: ls.length === layers ? ls : Array.from({ length: layers }, () => ({ ...ls[0] })),
    head: phase(rec.head, "head"),
    optimizerMs: Number(rec.optimizerMs),
    source: `file ${file}${typeof rec.source === "string" ? ` (${rec.source})` : ""}`,
  };
}

/** Checks the flags and builds the simulation inputs; throws ConfigError naming the flag. */
export async function resolveSimulation(a: SimulateFlags): Promise<{ spec: SimSpec; gpus: number[]; fit?: FitResult; cores?: number }> {
  if (SIM_PRESETS[a.model] === undefined) bad("model", `must be one of ${Object.keys(SIM_PRESETS).join(", ")}, got '${a.model}'`);
  const workload: SimWorkload = {
    preset: a.model,
    vocabSize: positive("vocab", a.vocab, { integer: true }),
    seqLen: positive("seq", a.seq, { integer: true }),
    microBatch: positive("micro-batch", a["micro-batch"], { integer: true }),
    accumulation: positive("accumulation", a.accumulation, { integer: true }),
  };
  if (workload.seqLen > 8192) bad("seq", `must be at most 8192, got ${workload.seqLen}`);
  const g = positive("gpus-per-node", a["gpus-per-node"], { integer: true });
  const gpus = String(a.gpus).split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (gpus.length === 0) bad("gpus", "needs at least one GPU count, e.g. 8,16,32");
  for (const n of gpus) {
    if (!Number.isInteger(n) || n < 1) bad("gpus", `must be a comma-separated list of positive integers, got '${a.gpus}'`);
    if (n > g && n % g !== 0) bad("gpus", `${n} is not a whole number of nodes of --gpus-per-node ${g}`);
  }
  if (a.topology !== "ring" && a.topology !== "hierarchical") bad("topology", `must be ring or hierarchical, got '${a.topology}'`);
  const network: NetworkSpec = {
    gpusPerNode: g,
    topology: a.topology,
    inter: { bandwidthGbit: positive("bandwidth-gbit", a["bandwidth-gbit"], { allowInfinity: true }), latencyUs: positive("latency-us", a["latency-us"], { allowZero: true }) },
    intra: { bandwidthGbit: positive("intra-bandwidth-gbit", a["intra-bandwidth-gbit"], { allowInfinity: true }), latencyUs: positive("intra-latency-us", a["intra-latency-us"], { allowZero: true }) },
  };
  const bucketBytes = positive("bucket-bytes", a["bucket-bytes"], { integer: true });
  if (bucketBytes < 4) bad("bucket-bytes", `must be at least 4, got ${bucketBytes}`);
  const wire = { none: 4, fp16: 2, bf16: 2 }[a.compression];
  if (wire === undefined) bad("compression", `must be none, fp16 or bf16, got '${a.compression}'`);
  const cores = a.cores === undefined ? undefined : positive("cores", a.cores, { integer: true });
  const fitCores = positive("fit-cores", a["fit-cores"], { integer: true, allowInfinity: true });
  const fit = a.fit === undefined ? undefined : loadFitFile(a.fit, fitCores);
  const layers = workloadConfig(workload).numHiddenLayers;
  let compute: ComputeProfile;
  if (a["compute-from"] === "h100") {
    compute = flopsComputeProfile(workload, { ...H100_ASSUMPTIONS, peakTflops: positive("peak-tflops", a["peak-tflops"]), mfu: positive("mfu", a.mfu) });
    if (a.mfu > 1) bad("mfu", `must be at most 1, got ${a.mfu}`);
  } else if (a["compute-from"] === "measure") {
    if (!["auto", "wasm", "cpu", "tensorflow"].includes(a.backend)) bad("backend", `must be auto, wasm, cpu or tensorflow, got '${a.backend}'`);
    compute = (await measureCompute(workload, { backend: a.backend as BackendName, reps: positive("reps", a.reps, { integer: true }) })).profile;
  } else compute = loadComputeFile(a["compute-from"], layers);
  const spec: SimSpec = {
    workload, compute, network, software: fit ?? ZERO_SOFTWARE, bucketBytes, overlap: a.overlap, wireBytesPerElement: wire,
    oversubscription: cores === undefined ? undefined : (n) => Math.max(1, Math.min(n, g) / cores),
  };
  return { spec, gpus, fit, cores };
}

/** Runs the simulation for every GPU count. */
export function runSimulation(spec: SimSpec, gpus: readonly number[], extra: { fit?: FitResult; cores?: number } = {}): SimulationReport {
  const elements = gradientTensors(workloadConfig(spec.workload)).reduce((s, t) => s + t.elements, 0);
  return {
    workload: spec.workload, network: spec.network, software: spec.software ?? ZERO_SOFTWARE, fit: extra.fit, compute: spec.compute,
    overlap: spec.overlap, bucketBytes: spec.bucketBytes, wireBytesPerElement: spec.wireBytesPerElement ?? 4,
    gradientBytes: elements * (spec.wireBytesPerElement ?? 4), cores: extra.cores, results: gpus.map((n) => simulateStep(spec, n)),
  };
}

/** The report as a plain-text table. */
export function formatSimulation(r: SimulationReport): string {
  const net = r.network;
  const bw = (l: { bandwidthGbit: number; latencyUs: number }): string => `${Number.isFinite(l.bandwidthGbit) ? `${l.bandwidthGbit} Gbit/s` : "unlimited"}, ${l.latencyUs} µs`;
  const lines = [
    `${r.workload.preset} (vocab ${r.workload.vocabSize}), seq ${r.workload.seqLen}, micro-batch ${r.workload.microBatch} x ${r.workload.accumulation ?? 1} per GPU; ` +
      `gradients ${(r.gradientBytes / 1e6).toFixed(1)} MB, buckets of ${(r.bucketBytes / 1e6).toFixed(1)} MB, overlap ${r.overlap ? "on" : "off"}`,
    `network: ${net.topology}, ${net.gpusPerNode} GPUs/node; inter-node per GPU ${bw(net.inter)}; intra-node ${bw(net.intra)}`,
    `software per hop α ${r.software.alphaUs.toFixed(1)} µs, β ${r.software.betaNsPerByte.toFixed(3)} ns/B, per bucket γ ${r.software.bucketUs.toFixed(0)} µs` +
      (r.fit ? ` (fit to ${r.fit.samples} samples, rms rel. error ${(100 * r.fit.rmsRelError).toFixed(1)} %, cores ${r.fit.cores})` : " (ideal: wire only)") +
      (r.cores !== undefined ? `; workers share ${r.cores} cores` : ""),
    `compute: ${r.compute.source}`,
    "",
    `${"GPUs".padStart(6)} ${"nodes".padStart(6)} ${"step ms".padStart(10)} ${"compute".padStart(9)} ${"optim".padStart(7)} ${"comm".padStart(9)} ${"exposed".padStart(9)} ${"buckets".padStart(8)} ${"efficiency".padStart(11)} ${"tokens/s".padStart(12)}`,
  ];
  for (const x of r.results) {
    lines.push(
      `${String(x.gpus).padStart(6)} ${String(x.nodes).padStart(6)} ${x.stepMs.toFixed(2).padStart(10)} ${x.computeMs.toFixed(2).padStart(9)} ${x.optimizerMs.toFixed(2).padStart(7)} ` +
        `${x.commMs.toFixed(2).padStart(9)} ${x.exposedCommMs.toFixed(2).padStart(9)} ${String(x.buckets).padStart(8)} ${x.efficiency.toFixed(3).padStart(11)} ${Math.round(x.tokensPerS).toString().padStart(12)}`,
    );
  }
  return lines.join("\n") + "\n";
}

/** The `simulate` subcommand of `launch bench`. `setCode` receives the exit code (bad flags throw ConfigError: exit 2). */
export function simulateCommand(setCode: (code: number) => void): CommandModule<object, SimulateFlags> {
  return {
    command: "simulate",
    describe: "predict step time and scaling efficiency at 8 ... 1024 GPUs (docs/SCALING.md)",
    builder: (y: Argv<object>): Argv<SimulateFlags> =>
      y
        .option("model", { type: "string", default: "bert-base", describe: `model shape: ${Object.keys(SIM_PRESETS).join(", ")}` })
        .option("vocab", { type: "number", default: 30522, describe: "vocabulary size" })
        .option("seq", { type: "number", default: 128, describe: "sequence length" })
        .option("micro-batch", { type: "number", default: 32, describe: "sequences per GPU per micro-batch" })
        .option("accumulation", { type: "number", default: 1, describe: "micro-batches per optimizer step" })
        .option("gpus", { type: "string", default: "8,16,32,64,128,256,512,1024", describe: "comma-separated GPU counts" })
        .option("gpus-per-node", { type: "number", default: 8 })
        .option("bandwidth-gbit", { type: "number", default: 400, describe: "inter-node NIC bandwidth per GPU, Gbit/s" })
        .option("latency-us", { type: "number", default: 5, describe: "inter-node latency per ring hop, µs" })
        .option("intra-bandwidth-gbit", { type: "number", default: 3600, describe: "intra-node bandwidth per GPU and direction, Gbit/s (NVLink 4: 450 GB/s)" })
        .option("intra-latency-us", { type: "number", default: 2, describe: "intra-node latency per ring hop, µs" })
        .option("topology", { type: "string", default: "ring", describe: "ring (flat, one channel per NIC) or hierarchical (intra reduce-scatter, inter ring, intra all-gather)" })
        .option("overlap", { type: "boolean", default: false, describe: "all-reduce buckets during the backward pass as their gradients appear" })
        .option("bucket-bytes", { type: "number", default: 25_000_000, describe: "fusion bucket size in bytes" })
        .option("compression", { type: "string", default: "none", describe: "wire format: none (fp32), fp16 or bf16" })
        .option("compute-from", { type: "string", default: "h100", describe: "h100 (FLOPs at --peak-tflops x --mfu), measure (time the model here), or a JSON FILE" })
        .option("peak-tflops", { type: "number", default: H100_ASSUMPTIONS.peakTflops, describe: "peak dense TFLOP/s for --compute-from h100 (H100 SXM BF16: 989)" })
        .option("mfu", { type: "number", default: H100_ASSUMPTIONS.mfu, describe: "model-FLOPs utilisation for --compute-from h100" })
        .option("fit", { type: "string", describe: "all-reduce times (JSON/JSONL, e.g. node dist/bench/allreduce.js --json) to fit α, β, γ" })
        .option("fit-cores", { type: "number", default: os.cpus().length, describe: "CPU cores of the machine that measured --fit" })
        .option("cores", { type: "number", describe: "CPU cores the simulated workers share (validation on this machine); default: one device each" })
        .option("backend", { type: "string", default: "auto", describe: "tfjs backend for --compute-from measure" })
        .option("reps", { type: "number", default: 3, describe: "timed repetitions for --compute-from measure" })
        .option("json", { type: "string", describe: "also write the report as JSON to FILE (no FILE, or -: print the JSON instead of the table)" }) as unknown as Argv<SimulateFlags>,
    handler: async (a) => {
      const json = (a as unknown as SimulateFlags).json;
      const toStdout = json === "" || json === "-";
      if (!toStdout) checkWritable(json, "json"); // before a --compute-from measure spends its time
      const { spec, gpus, fit, cores } = await resolveSimulation(a as unknown as SimulateFlags);
      const report = runSimulation(spec, gpus, { fit, cores });
      if (toStdout) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      else {
        process.stdout.write(formatSimulation(report));
        if (json !== undefined) writeJsonFile(json, report);
      }
      setCode(0);
    },
  };
}
