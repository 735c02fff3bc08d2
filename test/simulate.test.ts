/**
 * The scaling simulator (launch/bench/simulate-model.ts) and its CLI (`launch bench simulate`): the alpha-beta fit,
 * the ring and hierarchical formulas against hand-computed values, limits (infinite bandwidth), overlap, and the
 * command line's output and exit codes. No timing assertions: every number here is arithmetic.
 */
import { test } from "node:test";
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  allReduceSeconds, fitAlphaBeta, flopsComputeProfile, forwardFlops, gradientTensors, planSimBuckets, simulateStep, workloadConfig,
  type ComputeProfile, type NetworkSpec, type SimSpec, type SimWorkload,
} from "../launch/bench/simulate-model";
import { countParams, bertParamSpecs } from "../shared/model/params";
import { trainingFlops } from "../shared/model/flops";

const close = (a: number, b: number, rel = 1e-9): void => assert.ok(Math.abs(a - b) <= rel * Math.max(Math.abs(a), Math.abs(b), 1e-30), `${a} != ${b}`);

const net = (o: Partial<NetworkSpec> & { interGbit?: number; intraGbit?: number; interUs?: number; intraUs?: number } = {}): NetworkSpec => ({
  gpusPerNode: o.gpusPerNode ?? 8,
  topology: o.topology ?? "ring",
  inter: { bandwidthGbit: o.interGbit ?? 100, latencyUs: o.interUs ?? 5 },
  intra: { bandwidthGbit: o.intraGbit ?? 3600, latencyUs: o.intraUs ?? 2 },
});

test("the alpha-beta fit recovers alpha, beta and the per-bucket cost from generated times", () => {
  const truth = { alpha: 37e-6, beta: 1.7e-9, gamma: 410e-6 };
  for (const cores of [Infinity, 2]) {
    const samples = [];
    for (const n of [2, 4, 8]) {
      for (const bytes of [4096, 65536, 1 << 20, 16 << 20]) {
        const seconds = 2 * (n - 1) * truth.alpha + ((2 * (n - 1)) / n) * bytes * truth.beta * Math.max(1, n / cores) + truth.gamma;
        samples.push({ n, bytes, seconds });
      }
    }
    const fit = fitAlphaBeta(samples, cores);
    close(fit.alphaUs, truth.alpha * 1e6, 1e-6);
    close(fit.betaNsPerByte, truth.beta * 1e9, 1e-6);
    close(fit.bucketUs, truth.gamma * 1e6, 1e-6);
    assert.ok(fit.rmsRelError < 1e-9);
  }
  // Never negative: times that fall with N would need alpha < 0; the fit drops alpha instead.
  const fit = fitAlphaBeta([{ n: 2, bytes: 1e6, seconds: 3e-3 }, { n: 4, bytes: 1e6, seconds: 2e-3 }, { n: 2, bytes: 4e6, seconds: 9e-3 }]);
  assert.ok(fit.alphaUs >= 0 && fit.betaNsPerByte >= 0 && fit.bucketUs >= 0);
  assert.throws(() => fitAlphaBeta([{ n: 2, bytes: 1, seconds: 1 }]), /at least 2/);
});

test("ring and hierarchical all-reduce times match hand-computed values", () => {
  // One node of 4, 8 Gbit/s (1 ns/B), 10 µs: 2·3·(10 µs + 250 kB · 1 ns) = 1.56 ms.
  close(allReduceSeconds(1e6, 4, net({ gpusPerNode: 4, intraGbit: 8, intraUs: 10 })), 1.56e-3);
  // Two nodes of 2, inter 8 Gbit/s 10 µs, intra 80 Gbit/s 1 µs, S = 1 MB.
  const two = { gpusPerNode: 2, interGbit: 8, interUs: 10, intraGbit: 80, intraUs: 1 };
  // flat ring, 2 channels: per byte max(1e-9 / 2, 1e-10) = 0.5 ns; mean hop latency (2·10 + 2·1) / 4 = 5.5 µs;
  // 2·3·(5.5 µs + 250 kB · 0.5 ns) = 783 µs.
  close(allReduceSeconds(1e6, 4, net({ ...two, topology: "ring" })), 783e-6);
  // hierarchical: intra 2·1·(1 µs + 500 kB · 0.1 ns) = 102 µs; inter 2·1·(10 µs + 250 kB · 1 ns) = 520 µs: 622 µs.
  close(allReduceSeconds(1e6, 4, net({ ...two, topology: "hierarchical" })), 622e-6);
  // Software terms: α_sw 1 µs, β_sw 2 ns/B (slower than the free link), γ 50 µs, N = 2: 2·(1 µs + 0.5 MB · 2 ns) + 50 µs.
  const sw = { alphaUs: 1, betaNsPerByte: 2, bucketUs: 50 };
  close(allReduceSeconds(1e6, 2, net({ gpusPerNode: 2, intraGbit: Infinity, intraUs: 0 }), sw), 2.052e-3);
  // Oversubscription doubles the software per-byte cost only.
  close(allReduceSeconds(1e6, 2, net({ gpusPerNode: 2, intraGbit: Infinity, intraUs: 0 }), sw, 2), 2 * (1e-6 + 0.5e6 * 4e-9) + 50e-6);
  // Degenerate cases: one GPU costs nothing; a hierarchical ring with 1 GPU per node is the flat ring of the nodes.
  assert.equal(allReduceSeconds(1e6, 1, net()), 0);
  close(allReduceSeconds(1e6, 4, net({ gpusPerNode: 1, topology: "hierarchical", interGbit: 8, interUs: 10 })),
    allReduceSeconds(1e6, 4, net({ gpusPerNode: 1, topology: "ring", interGbit: 8, interUs: 10 })));
  assert.throws(() => allReduceSeconds(1e6, 12, net()), /whole number of nodes/);
});

const bertBase: SimWorkload = { preset: "bert-base", vocabSize: 30522, seqLen: 128, microBatch: 32 };

test("gradient tensors are the trained parameters; FLOPs agree with shared/model/flops.ts", () => {
  const cfg = workloadConfig(bertBase);
  assert.equal(gradientTensors(cfg).reduce((s, t) => s + t.elements, 0), countParams(bertParamSpecs(cfg)));
  const f = forwardFlops(bertBase);
  const tokens = bertBase.microBatch * bertBase.seqLen;
  const targets = Math.round(0.15 * tokens);
  // flops.ts also counts the MLM transform on every token; the model runs it on the targets only.
  close(3 * (cfg.numHiddenLayers * f.layer + f.head), trainingFlops(cfg, tokens, bertBase.seqLen, targets) - 6 * (tokens - targets) * cfg.hiddenSize ** 2);
});

test("efficiency tends to 1 as bandwidth grows, and reaches 1 on a free network", () => {
  const compute = flopsComputeProfile(bertBase);
  for (const topology of ["ring", "hierarchical"] as const) {
    let last = 0;
    for (const gbit of [10, 100, 1000, 1e4, 1e6, 1e9]) {
      const spec: SimSpec = { workload: bertBase, compute, network: net({ topology, interGbit: gbit, intraGbit: gbit * 9, interUs: 0, intraUs: 0 }), bucketBytes: 25e6, overlap: false };
      const eff = simulateStep(spec, 256).efficiency;
      assert.ok(eff >= last && eff <= 1, `${topology} ${gbit}: ${eff} after ${last}`);
      last = eff;
    }
    assert.ok(last > 0.999, `${topology}: ${last}`);
    const free: SimSpec = { workload: bertBase, compute, network: net({ topology, interGbit: Infinity, intraGbit: Infinity, interUs: 0, intraUs: 0 }), bucketBytes: 25e6, overlap: false };
    assert.equal(simulateStep(free, 1024).efficiency, 1);
  }
});

test("overlap never makes a step slower, and the tied word embedding's bucket is never hidden", () => {
  const base = flopsComputeProfile(bertBase);
  const skewed: ComputeProfile = { ...base, head: { forwardMs: 0.1, backwardMs: 3 }, embeddings: { forwardMs: 0.05, backwardMs: 0.4 } };
  for (const compute of [base, skewed]) {
    for (const topology of ["ring", "hierarchical"] as const) {
      for (const gbit of [1, 25, 100, 400]) {
        for (const bucketBytes of [1e6, 25e6, 1e9]) {
          for (const accumulation of [1, 3]) {
            for (const n of [2, 8, 64, 1024]) {
              const mk = (overlap: boolean): SimSpec => ({
                workload: { ...bertBase, accumulation }, compute, network: net({ topology, interGbit: gbit }), bucketBytes, overlap,
                software: { alphaUs: 3, betaNsPerByte: 0.01, bucketUs: 20 },
              });
              const on = simulateStep(mk(true), n);
              const off = simulateStep(mk(false), n);
              assert.ok(on.stepMs <= off.stepMs + 1e-9, `${topology} ${gbit} ${bucketBytes} ${n}: ${on.stepMs} > ${off.stepMs}`);
              assert.equal(on.commMs, off.commMs);
              assert.ok(on.exposedCommMs >= -1e-9);
            }
          }
        }
      }
    }
  }
  // With overlap the last bucket (word embeddings: registered first, ready last) starts after the backward pass.
  const cfg = workloadConfig(bertBase);
  const tensors = gradientTensors(cfg);
  const buckets = planSimBuckets(tensors, (t) => (t.group.kind === "embeddings" ? 100 : 1), 25e6);
  assert.equal(buckets[buckets.length - 1].readyMs, 100);
  const spec: SimSpec = { workload: bertBase, compute: base, network: net({ interGbit: 100 }), bucketBytes: 25e6, overlap: true };
  const r = simulateStep(spec, 64);
  const wordBytes = cfg.vocabSize * cfg.hiddenSize * 4;
  assert.ok(r.exposedCommMs >= allReduceSeconds(wordBytes, 64, spec.network) * 1e3 - 1e-9);
});

const MAIN = path.join(__dirname, "..", "launch", "main.js");
const cli = (args: string[]) => spawnSync(process.execPath, [MAIN, "bench", "simulate", ...args], { encoding: "utf8", timeout: 120_000 });

test("launch bench simulate prints a table and writes JSON", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rt-simulate-"));
  try {
    // A fit file as bench/allreduce.js --json writes it (with a Gloo row and the TCP line to skip).
    const fitFile = path.join(dir, "allreduce.jsonl");
    const lines = [JSON.stringify({ impl: "loopback-tcp", GBps: 1.5, how: "x" })];
    for (const N of [2, 4]) for (const bytes of [1 << 20, 4 << 20, 16 << 20]) {
      lines.push(JSON.stringify({ N, bytes, seconds: 2 * (N - 1) * 50e-6 + ((2 * (N - 1)) / N) * bytes * 2e-9 + 300e-6, impl: "ringtrain-http2" }));
      lines.push(JSON.stringify({ N, bytes, seconds: 1e-3, impl: "torch-gloo" }));
    }
    fs.writeFileSync(fitFile, lines.join("\n") + "\n");
    const out = path.join(dir, "report.json");
    const r = cli(["--model", "bert-tiny", "--vocab", "8192", "--micro-batch", "16", "--gpus", "1,2,4,8", "--gpus-per-node", "4",
      "--topology", "hierarchical", "--overlap", "--fit", fitFile, "--fit-cores", "1000", "--json", out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /GPUs\s+nodes\s+step ms/);
    const rows = r.stdout.split("\n").filter((l) => /^\s+\d+\s+\d+\s+[\d.]+/.test(l));
    assert.equal(rows.length, 4);
    const rep = JSON.parse(fs.readFileSync(out, "utf8")) as { results: { gpus: number; efficiency: number; stepMs: number }[]; fit: { alphaUs: number; betaNsPerByte: number; bucketUs: number } };
    assert.deepEqual(rep.results.map((x) => x.gpus), [1, 2, 4, 8]);
    assert.equal(rep.results[0].efficiency, 1);
    for (const x of rep.results) assert.ok(x.efficiency > 0 && x.efficiency <= 1 && x.stepMs > 0);
    close(rep.fit.alphaUs, 50, 1e-6);
    close(rep.fit.betaNsPerByte, 2, 1e-6);
    close(rep.fit.bucketUs, 300, 1e-6);
    // --json without a file prints the JSON instead of the table; a compute profile FILE with one layer is repeated per layer.
    const prof = path.join(dir, "compute.json");
    fs.writeFileSync(prof, JSON.stringify({ embeddings: { forwardMs: 1, backwardMs: 2 }, layers: [{ forwardMs: 10, backwardMs: 20 }], head: { forwardMs: 5, backwardMs: 10 }, optimizerMs: 4 }));
    const j = cli(["--model", "bert-mini", "--vocab", "1000", "--gpus", "8", "--compute-from", prof, "--json"]);
    assert.equal(j.status, 0, j.stderr);
    const rep2 = JSON.parse(j.stdout) as { results: { computeMs: number; optimizerMs: number }[]; compute: { layers: unknown[] } };
    assert.equal(rep2.compute.layers.length, 4);
    assert.equal(rep2.results[0].computeMs, 3 + 4 * 30 + 15);
    assert.equal(rep2.results[0].optimizerMs, 4);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("launch bench simulate rejects bad flags with exit code 2, naming the flag", () => {
  const cases: [string[], RegExp][] = [
    [["--gpus", "8,12"], /--gpus/],
    [["--topology", "star"], /--topology/],
    [["--bandwidth-gbit", "-1"], /--bandwidth-gbit/],
    [["--model", "bert-huge"], /--model/],
    [["--fit", "/nonexistent/allreduce.json"], /--fit/],
    [["--mfu", "1.5"], /--mfu/],
    [["--bogus-flag", "1"], /bogus/],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    assert.equal(r.status, 2, `${args.join(" ")}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, re, args.join(" "));
  }
});
