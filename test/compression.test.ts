/**
 * Gradient compression with error feedback (worker/compression) over real RingCommunicators talking gRPC on
 * 127.0.0.1 (all ranks in this process): top-k with ratio 1 is the exact sum; PowerSGD with rank >= min(rows,
 * cols) reproduces the sum within float tolerance; per rank, residual + sent part = input (exactly for top-k);
 * every rank ends with bit-identical gradients and exact counters. Then real 2-worker `launch` runs with each
 * method (parameter checksums compared by the coordinator after every step) and config validation (exit 2).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { RingCommunicator } from "../worker/collective/ring-communicator";
import { CompressingReducer, DEFAULT_GRADIENT_COMPRESSION, type GradientCompressionSettings } from "../worker/compression/compressing-reducer";
import { compressionStateFile, loadCompressionState, saveCompressionState } from "../worker/compression/compression-state";
import { topkIndices, topkCount } from "../worker/compression/topk";
import type { NamedGradient } from "../shared/train/reducer";
import { finalParams, maxAbsDiff, runLaunch, tempDir, tinyArgs, TINY_CONFIG } from "./helpers/launch";

let jobCounter = 0;

/** N connected ring ranks in this process. */
async function ring(N: number): Promise<RingCommunicator[]> {
  const jobId = `compression-${process.pid}-${jobCounter++}`;
  const comms = await Promise.all(Array.from({ length: N }, (_, rank) =>
    RingCommunicator.listen({ jobId, token: "tok", rank, worldSize: N, timeoutMs: 20_000, chunkBytes: 4096, bucketBytes: 64 * 1024 })));
  const addresses = comms.map((c) => c.address);
  await Promise.all(comms.map((c) => c.connect(addresses)));
  return comms;
}

async function closeAll(comms: RingCommunicator[]): Promise<void> {
  await Promise.all(comms.map((c) => c.close()));
}

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Spec {
  name: string;
  shape: number[];
}

const size = (s: Spec): number => s.shape.reduce((a, b) => a * b, 1);

/** Gradients of one rank at one step: integers in [-50, 50] or normals. */
function gradsFor(specs: Spec[], rank: number, step: number, kind: "int" | "normal"): NamedGradient[] {
  const next = rng(1000 * rank + 17 * step + 3);
  return specs.map((s) => {
    const data = new Float32Array(size(s));
    for (let i = 0; i < data.length; i++) {
      data[i] = kind === "int" ? Math.floor(next() * 101) - 50 : Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
    }
    return { name: s.name, data };
  });
}

function settings(over: Partial<GradientCompressionSettings>): GradientCompressionSettings {
  return { ...DEFAULT_GRADIENT_COMPRESSION, ...over };
}

/** One step on every rank at once: copies of the inputs go in; returns what each rank holds after reduce. */
async function stepAll(reducers: CompressingReducer[], inputs: NamedGradient[][], counters: Float32Array[], step: number): Promise<NamedGradient[][]> {
  const grads = inputs.map((gs) => gs.map((g) => ({ name: g.name, data: Float32Array.from(g.data) })));
  await Promise.all(reducers.map((r, rank) => r.reduce(grads[rank], counters[rank], step)));
  return grads;
}

function assertIdenticalBits(all: NamedGradient[][]): void {
  for (let r = 1; r < all.length; r++) {
    all[r].forEach((g, i) => assert.ok(Buffer.from(g.data.buffer).equals(Buffer.from(all[0][i].data.buffer)), `rank ${r} '${g.name}' differs bitwise from rank 0`));
  }
}

function makeReducers(comms: RingCommunicator[], s: GradientCompressionSettings, specs: Spec[]): CompressingReducer[] {
  return comms.map((c) => {
    const r = new CompressingReducer(c, s);
    r.describeParameters(specs);
    return r;
  });
}

function countersFor(N: number): Float32Array[] {
  return Array.from({ length: N }, (_, r) => Float32Array.from([100 + r, 2.5 * (r + 1), 7, 0.125 * r]));
}

function assertCountersExact(counters: Float32Array[]): void {
  const N = counters.length;
  const want = [0, 0, 0, 0];
  for (let r = 0; r < N; r++) {
    want[0] += 100 + r;
    want[1] += 2.5 * (r + 1);
    want[2] += 7;
    want[3] += 0.125 * r;
  }
  for (const c of counters) assert.deepEqual(Array.from(c), want, "counters are summed exactly");
}

test("topkIndices: k largest magnitudes, ties to the lower index, NaN always kept", () => {
  const x = Float32Array.from([1, -5, 3, 5, 0, -3, 2, NaN, 5]);
  assert.deepEqual(Array.from(topkIndices(x, 0, x.length, 3)), [1, 3, 7]);
  assert.deepEqual(Array.from(topkIndices(x, 0, x.length, 4)), [1, 3, 7, 8]);
  assert.deepEqual(Array.from(topkIndices(x, 2, 4, 2)), [0, 1]); // [3, 5, 0, -3] -> 3 (tie with -3, lower index) and 5
  assert.deepEqual(Array.from(topkIndices(x, 0, 3, 3)), [0, 1, 2]);
  const many = new Float32Array(10_000).fill(1);
  assert.deepEqual(Array.from(topkIndices(many, 0, many.length, 4)), [0, 1, 2, 3]);
  // Against a sort on random data.
  const next = rng(5);
  const r = Float32Array.from({ length: 5000 }, () => next() - 0.5);
  const k = topkCount(r.length, 0.01);
  assert.equal(k, 50);
  const want = Array.from(r.keys()).sort((a, b) => Math.abs(r[b]) - Math.abs(r[a]) || a - b).slice(0, k).sort((a, b) => a - b);
  assert.deepEqual(Array.from(topkIndices(r, 0, r.length, k)), want);
});

for (const N of [2, 3]) {
  test(`top-k with ratio 1 equals the exact sum (N=${N}); bits identical on every rank; counters exact`, async () => {
    const specs: Spec[] = [{ name: "w", shape: [40, 30] }, { name: "small", shape: [7] }, { name: "b", shape: [1500] }];
    const comms = await ring(N);
    try {
      const reducers = makeReducers(comms, settings({ method: "topk", topk_ratio: 1, min_compress_elements: 100 }), specs);
      for (const step of [0, 1]) {
        const inputs = comms.map((_, r) => gradsFor(specs, r, step, "int"));
        const counters = countersFor(N);
        const out = await stepAll(reducers, inputs, counters, step);
        assertIdenticalBits(out);
        assertCountersExact(counters);
        out[0].forEach((g, t) => {
          for (let i = 0; i < g.data.length; i++) {
            let s = 0;
            for (let r = 0; r < N; r++) s += inputs[r][t].data[i];
            if (g.data[i] !== s) assert.fail(`'${g.name}'[${i}]: got ${g.data[i]}, want ${s}`);
          }
        });
        assert.equal(reducers[0].lastCompressedTensors, 2);
        assert.equal(reducers[0].lastCollectives, 1);
        // Residuals exist and are all zero: everything was sent.
        assert.ok(reducers.every((r) => r.residualOf("w")!.every((v) => v === 0)));
      }
    } finally {
      await closeAll(comms);
    }
  });
}

test("PowerSGD with rank >= min(rows, cols) reproduces the exact sum within float tolerance (N=3)", async () => {
  const N = 3;
  const specs: Spec[] = [
    { name: "wide", shape: [6, 40] }, { name: "tall", shape: [50, 3] }, { name: "conv", shape: [4, 5, 6] },
    { name: "bias", shape: [300] }, { name: "tiny", shape: [2, 3] },
  ];
  const comms = await ring(N);
  try {
    const reducers = makeReducers(comms, settings({ method: "powersgd", powersgd_rank: 8, min_compress_elements: 100 }), specs);
    for (const step of [0, 1, 2]) {
      const inputs = comms.map((_, r) => gradsFor(specs, r, step, "normal"));
      const counters = countersFor(N);
      const out = await stepAll(reducers, inputs, counters, step);
      assertIdenticalBits(out);
      assertCountersExact(counters);
      assert.equal(reducers[0].lastCompressedTensors, 3, "wide, tall and conv are compressed; 1-D and small ones are not");
      assert.equal(reducers[0].lastCollectives, 2);
      out[0].forEach((g, t) => {
        let worst = 0;
        let scale = 0;
        for (let i = 0; i < g.data.length; i++) {
          let s = 0;
          for (let r = 0; r < N; r++) s += inputs[r][t].data[i];
          worst = Math.max(worst, Math.abs(g.data[i] - s));
          scale = Math.max(scale, Math.abs(s));
        }
        assert.ok(worst <= 1e-4 * scale, `step ${step} '${g.name}': max error ${worst} vs max |sum| ${scale}`);
      });
    }
  } finally {
    await closeAll(comms);
  }
});

test("top-k error feedback: residual + sent part = input exactly per rank; the result is the rank-order sum of what was sent", async () => {
  const N = 3;
  const specs: Spec[] = [{ name: "w", shape: [64, 50] }, { name: "v", shape: [2000] }, { name: "ln", shape: [50] }];
  const ratio = 0.05;
  const comms = await ring(N);
  try {
    const reducers = makeReducers(comms, settings({ method: "topk", topk_ratio: ratio, min_compress_elements: 1000 }), specs);
    const prev: (Float32Array | undefined)[][] = comms.map(() => specs.map(() => undefined));
    for (const step of [0, 1, 2]) {
      const grads = comms.map((_, r) => gradsFor(specs, r, step, "normal"));
      // The input of the compressor: gradient + previous residual (float32 add, as the reducer does).
      const inputs = grads.map((gs, r) => gs.map((g, t) => {
        const x = Float32Array.from(g.data);
        const e = prev[r][t];
        if (e !== undefined) for (let i = 0; i < x.length; i++) x[i] += e[i];
        return x;
      }));
      const out = await stepAll(reducers, grads, countersFor(N), step);
      assertIdenticalBits(out);
      specs.forEach((s, t) => {
        if (s.name === "ln") {
          // uncompressed: the plain ring sum, no residual
          assert.equal(reducers[0].residualOf("ln"), undefined);
          return;
        }
        const n = size(s);
        const k = topkCount(n, ratio);
        const want = new Float32Array(n);
        for (let r = 0; r < N; r++) {
          const e = reducers[r].residualOf(s.name)!;
          const x = inputs[r][t];
          const sent = new Float32Array(n);
          let nonzero = 0;
          for (let i = 0; i < n; i++) {
            sent[i] = x[i] - e[i];
            if (sent[i] + e[i] !== x[i]) assert.fail(`rank ${r} '${s.name}'[${i}]: residual ${e[i]} + sent ${sent[i]} != input ${x[i]}`);
            if (e[i] !== 0 && e[i] !== x[i]) assert.fail(`rank ${r} '${s.name}'[${i}]: residual ${e[i]} is neither 0 nor the input ${x[i]}`);
            if (sent[i] !== 0) nonzero++;
          }
          assert.equal(nonzero, k, `rank ${r} '${s.name}' sent ${nonzero} entries, expected k = ${k}`);
          // what was sent are the k largest magnitudes of the input
          let minSent = Infinity;
          let maxKept = 0;
          for (let i = 0; i < n; i++) {
            if (sent[i] !== 0) minSent = Math.min(minSent, Math.abs(x[i]));
            else maxKept = Math.max(maxKept, Math.abs(x[i]));
          }
          assert.ok(minSent >= maxKept, `rank ${r} '${s.name}': sent |x| >= ${minSent} but kept ${maxKept}`);
          for (let i = 0; i < n; i++) want[i] += sent[i];
          prev[r][t] = Float32Array.from(e);
        }
        assert.ok(Buffer.from(out[0][t].data.buffer).equals(Buffer.from(want.buffer)), `step ${step} '${s.name}': result is not the rank-order sum of the sent parts`);
      });
      // bytes: each compressed tensor travels as N x 2k floats
      const wantBytes = 4 * (N * 2 * topkCount(3200, ratio) + N * 2 * topkCount(2000, ratio) + 50 + 4);
      assert.equal(reducers[0].lastBytes, wantBytes);
    }
  } finally {
    await closeAll(comms);
  }
});

test("PowerSGD error feedback (rank 1): residual + this rank's share of the approximation = input; sum of residuals = what was lost", async () => {
  const N = 2;
  const specs: Spec[] = [{ name: "w", shape: [30, 40] }, { name: "b", shape: [40] }];
  const comms = await ring(N);
  try {
    const reducers = makeReducers(comms, settings({ method: "powersgd", powersgd_rank: 1, min_compress_elements: 0 }), specs);
    const prev: (Float32Array | undefined)[] = comms.map(() => undefined);
    for (const step of [0, 1, 2, 3]) {
      const grads = comms.map((_, r) => gradsFor(specs, r, step, "normal"));
      const inputs = grads.map((gs, r) => {
        const x = Float32Array.from(gs[0].data);
        const e = prev[r];
        if (e !== undefined) for (let i = 0; i < x.length; i++) x[i] += e[i];
        return x;
      });
      const out = await stepAll(reducers, grads, countersFor(N), step);
      assertIdenticalBits(out);
      assert.equal(reducers[0].lastCompressedTensors, 1, "the 1-D bias travels uncompressed");
      const approx = out[0][0].data;
      let lost = 0;
      let total = 0;
      for (let i = 0; i < approx.length; i++) {
        let sumX = 0;
        let sumE = 0;
        for (let r = 0; r < N; r++) {
          const e = reducers[r].residualOf("w")![i];
          const x = inputs[r][i];
          const back = e + approx[i] / N;
          assert.ok(Math.abs(back - x) <= 2e-6 * (Math.abs(x) + Math.abs(approx[i])), `rank ${r} w[${i}]: residual ${e} + share ${approx[i] / N} != input ${x}`);
          sumX += x;
          sumE += e;
        }
        assert.ok(Math.abs(sumE - (sumX - approx[i])) <= 1e-5 * (1 + Math.abs(sumX)));
        lost += (sumX - approx[i]) ** 2;
        total += sumX ** 2;
      }
      assert.ok(lost > 1e-3 * total, "rank 1 is lossy on random 30 x 40 gradients (the residual is not trivially zero)");
      for (let r = 0; r < N; r++) prev[r] = Float32Array.from(reducers[r].residualOf("w")!);
      // the 1-D bias is the exact sum
      for (let i = 0; i < 40; i++) assert.ok(Math.abs(out[0][1].data[i] - (grads[0][1].data[i] + grads[1][1].data[i])) <= 1e-6 * (1 + Math.abs(out[0][1].data[i])));
      // P (30 x 1) + bias + counters, then Q (40 x 1)
      assert.equal(reducers[0].lastBytes, 4 * (30 + 40 + 4 + 40));
    }
  } finally {
    await closeAll(comms);
  }
});

test("start_step: plain exact all-reduce before it, compression from it on; error_feedback off keeps no residual", async () => {
  const N = 2;
  const specs: Spec[] = [{ name: "w", shape: [40, 50] }];
  const comms = await ring(N);
  try {
    const reducers = makeReducers(comms, settings({ method: "topk", topk_ratio: 0.01, start_step: 2, error_feedback: false, min_compress_elements: 0 }), specs);
    for (const step of [0, 1, 2]) {
      const inputs = comms.map((_, r) => gradsFor(specs, r, step, "int"));
      const out = await stepAll(reducers, inputs, countersFor(N), step);
      assertIdenticalBits(out);
      const nonzero = out[0][0].data.filter((v) => v !== 0).length;
      if (step < 2) {
        assert.equal(reducers[0].lastCompressedTensors, 0);
        assert.equal(reducers[0].lastBytes, 4 * (2000 + 4));
        out[0][0].data.forEach((v, i) => assert.equal(v, inputs[0][0].data[i] + inputs[1][0].data[i]));
      } else {
        assert.equal(reducers[0].lastCompressedTensors, 1);
        assert.equal(reducers[0].lastBytes, 4 * (N * 2 * 20 + 4));
        assert.ok(nonzero <= N * 20, `at most N x k entries are nonzero, got ${nonzero}`);
      }
      assert.equal(reducers[0].residualOf("w"), undefined);
    }
  } finally {
    await closeAll(comms);
  }
});

test("PowerSGD without parameter shapes is a clear error", async () => {
  const comms = await ring(1);
  try {
    const r = new CompressingReducer(comms[0], settings({ method: "powersgd" }));
    await assert.rejects(r.reduce([{ name: "w", data: new Float32Array(4096) }], new Float32Array(4), 0), /powersgd needs the shape of 'w'/);
  } finally {
    await closeAll(comms);
  }
});

// ------------------------------------------------------------------------------------------ real launch runs

interface MetricLine {
  step: number;
  loss: number;
  allreduce_bytes?: number;
}

function metrics(dir: string): MetricLine[] {
  return fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as MetricLine).filter((m) => typeof m.loss === "number");
}

test("2-worker launch with none / topk / powersgd: completes, parameters identical on both ranks every step, fewer bytes", async () => {
  const runs: { name: string; set: string[] }[] = [
    { name: "none", set: [] },
    { name: "topk", set: ["communication.gradient_compression.method=topk", "communication.gradient_compression.topk_ratio=0.05"] },
    { name: "powersgd", set: ["communication.gradient_compression.method=powersgd", "communication.gradient_compression.powersgd_rank=2"] },
    { name: "powersgd-late", set: ["communication.gradient_compression.method=powersgd", "communication.gradient_compression.start_step=2"] },
  ];
  const bytes = new Map<string, number[]>();
  for (const run of runs) {
    const dir = tempDir(`gc-${run.name}`);
    // A checkpoint every step: the coordinator compares every rank's parameter checksum after each one and fails
    // the run ("parameters diverged") if they differ.
    const args = tinyArgs(dir, "--workers", "2", "--max-steps", "4", "--set", "training.checkpoint_interval_steps=1", ...run.set.flatMap((s) => ["--set", s]));
    const r = await runLaunch(args);
    assert.equal(r.code, 0, `${run.name}: launch failed:\n${r.stderr}`);
    const m = metrics(dir);
    assert.deepEqual(m.map((l) => l.step), [1, 2, 3, 4], run.name);
    assert.ok(m.every((l) => Number.isFinite(l.loss) && l.loss > 0), `${run.name}: loss finite`);
    bytes.set(run.name, m.map((l) => l.allreduce_bytes ?? NaN));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const none = bytes.get("none")!;
  assert.ok(none.every((b) => b > 0));
  for (const name of ["topk", "powersgd"]) {
    const b = bytes.get(name)!;
    assert.ok(b.every((x, i) => x < none[i] / 2), `${name}: allreduce_bytes ${b.join(",")} should be well below none's ${none.join(",")}`);
  }
  const late = bytes.get("powersgd-late")!;
  assert.deepEqual(late.slice(0, 2), none.slice(0, 2), "start_step 2: steps 1-2 (0-based 0-1) are plain all-reduce");
  assert.ok(late[2] < none[2] / 2 && late[3] < none[3] / 2);
});

for (const method of ["topk", "powersgd"] as const) {
  test(`${method}: state saved beside a checkpoint and restored continues bit-identically; another world size or method starts from zero`, async () => {
    const N = 2;
    const specs: Spec[] = [{ name: "w", shape: [40, 30] }, { name: "v", shape: [1500] }];
    const s = settings({ method, topk_ratio: 0.05, powersgd_rank: 2, min_compress_elements: 1000 });
    const dir = tempDir(`gc-state-${method}`);
    const ckpt = path.join(dir, "checkpoints", "step-000003");
    const first = await ring(N);
    const second = await ring(N);
    try {
      const original = makeReducers(first, s, specs);
      for (const step of [0, 1, 2]) await stepAll(original, first.map((_, r) => gradsFor(specs, r, step, "normal")), countersFor(N), step);
      for (let r = 0; r < N; r++) await saveCompressionState(ckpt, original[r], { rank: r, worldSize: N, step: 3 });
      assert.ok(fs.existsSync(compressionStateFile(ckpt, 1)));

      const restored = makeReducers(second, s, specs);
      const lines = await Promise.all(restored.map((red, r) => loadCompressionState(ckpt, red, { rank: r, worldSize: N })));
      lines.forEach((l, r) => assert.match(l, new RegExp(`restored compression state of rank ${r} from step 3`)));
      const inputs = first.map((_, r) => gradsFor(specs, r, 3, "normal"));
      const want = await stepAll(original, inputs, countersFor(N), 3);
      const got = await stepAll(restored, inputs, countersFor(N), 3);
      got.forEach((gs, r) => gs.forEach((g, t) => assert.ok(Buffer.from(g.data.buffer).equals(Buffer.from(want[r][t].data.buffer)), `rank ${r} '${g.name}': restored run differs`)));
      for (let r = 0; r < N; r++) {
        for (const [k, v] of original[r].exportState()) assert.ok(Buffer.from(v.buffer).equals(Buffer.from(restored[r].exportState().get(k)!.buffer)), `rank ${r} ${k}`);
      }

      // Without the state the same step gives another result: the test above can fail.
      const blank = makeReducers(first, s, specs);
      const differs = (await stepAll(blank, inputs, countersFor(N), 4)).some((gs, r) => gs.some((g, t) => !Buffer.from(g.data.buffer).equals(Buffer.from(want[r][t].data.buffer))));
      assert.ok(differs, "a reducer without the saved state should give a different result");

      // Another world size, other settings, a missing file: one line saying why, nothing imported.
      const other = new CompressingReducer(first[0], s);
      assert.match(await loadCompressionState(ckpt, other, { rank: 0, worldSize: 3 }), /saved by a world of 2 ranks, this run has 3.*start from zero/);
      const otherMethod = new CompressingReducer(first[0], settings({ method: method === "topk" ? "powersgd" : "topk" }));
      assert.match(await loadCompressionState(ckpt, otherMethod, { rank: 0, worldSize: N }), /saved with gradient_compression .* this run uses .*start from zero/);
      assert.match(await loadCompressionState(path.join(dir, "checkpoints", "step-000009"), other, { rank: 0, worldSize: N }), /no compression state for rank 0 .*missing/);
      assert.equal(other.exportState().size, 0);
      assert.equal(otherMethod.exportState().size, 0);
      // Rank 1's file read as rank 0's is refused, naming the file.
      fs.copyFileSync(compressionStateFile(ckpt, 1), compressionStateFile(ckpt, 0));
      await assert.rejects(loadCompressionState(ckpt, new CompressingReducer(first[0], s), { rank: 0, worldSize: N }), /compression-rank-0\.safetensors: written by rank 1, read by rank 0/);
    } finally {
      await closeAll(first);
      await closeAll(second);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("launch --resume of a top-k run restores every rank's residuals: the same parameters as an uninterrupted run", async () => {
  // A constant learning rate: the first leg stops at step 4 and the second continues to 8 with the same schedule.
  const common = ["--workers", "2", "--set", "training.checkpoint_interval_steps=4", "--set", "schedule.decay=constant", "--set", "schedule.warmup_steps=0",
    "--set", "communication.gradient_compression.method=topk", "--set", "communication.gradient_compression.topk_ratio=0.05"];
  const full = tempDir("gc-resume-full");
  const rFull = await runLaunch(tinyArgs(full, "--max-steps", "8", ...common));
  assert.equal(rFull.code, 0, rFull.stderr);
  const legs = async (name: string, between: (runDir: string) => void): Promise<{ dir: string; log: string }> => {
    const dir = tempDir(name);
    const r1 = await runLaunch(tinyArgs(dir, "--max-steps", "4", ...common));
    assert.equal(r1.code, 0, r1.stderr);
    for (const r of [0, 1]) assert.ok(fs.existsSync(compressionStateFile(path.join(dir, "checkpoints", "step-000004"), r)), `rank ${r}'s state file`);
    between(dir);
    const r2 = await runLaunch(["--resume", dir, "--workers", "2", "--max-steps", "8", "--quiet"]);
    assert.equal(r2.code, 0, r2.stderr);
    return { dir, log: fs.readdirSync(path.join(dir, "logs")).map((f) => fs.readFileSync(path.join(dir, "logs", f), "utf8")).join("\n") };
  };
  const resumed = await legs("gc-resume-cut", () => undefined);
  assert.match(resumed.log, /restored compression state of rank 0 from step 4/);
  assert.match(resumed.log, /restored compression state of rank 1 from step 4/);
  const diff = maxAbsDiff(await finalParams(full), await finalParams(resumed.dir));
  assert.ok(diff < 2e-5, `resumed top-k run differs from the uninterrupted one by ${diff}`);
  // The same resume without the state files: the residuals start from zero, which the log says, and the result
  // moves away from the uninterrupted run's (so the comparison above can fail).
  const lost = await legs("gc-resume-lost", (dir) => fs.rmSync(path.join(dir, "checkpoints", "step-000004.ranks"), { recursive: true }));
  assert.match(lost.log, /no compression state for rank 1 .*start from zero/);
  const lostDiff = maxAbsDiff(await finalParams(full), await finalParams(lost.dir));
  assert.ok(lostDiff > 10 * Math.max(diff, 1e-7), `without the residuals the run should differ (by ${lostDiff}, with them ${diff})`);
  for (const d of [full, resumed.dir, lost.dir]) fs.rmSync(d, { recursive: true, force: true });
});

const badCases: { name: string; yaml: string; expect: RegExp }[] = [
  { name: "topk_ratio 0", yaml: "method: topk\n    topk_ratio: 0", expect: /field communication\.gradient_compression\.topk_ratio: .*> 0/ },
  { name: "topk_ratio above 1", yaml: "method: topk\n    topk_ratio: 1.5", expect: /field communication\.gradient_compression\.topk_ratio: .*<= 1/ },
  { name: "unknown method", yaml: "method: qsgd", expect: /field communication\.gradient_compression\.method: / },
  { name: "powersgd_rank 0", yaml: "method: powersgd\n    powersgd_rank: 0", expect: /field communication\.gradient_compression\.powersgd_rank: / },
  { name: "negative start_step", yaml: "method: powersgd\n    start_step: -1", expect: /field communication\.gradient_compression\.start_step: / },
  { name: "unknown field", yaml: "method: topk\n    ratio: 0.1", expect: /field communication\.gradient_compression: unknown field 'ratio'/ },
];

for (const c of badCases) {
  test(`bad gradient_compression (${c.name}) exits 2 before starting anything`, async () => {
    const dir = tempDir("gc-bad");
    const file = path.join(dir, "bad.yaml");
    const runDir = path.join(dir, "run");
    fs.writeFileSync(file, fs.readFileSync(TINY_CONFIG, "utf8").replace("communication:\n", `communication:\n  gradient_compression:\n    ${c.yaml}\n`));
    const r = await runLaunch([file, "--output", runDir, "--workers", "2"]);
    assert.equal(r.code, 2, `expected exit 2, got ${r.code}:\n${r.stderr}`);
    assert.match(r.stderr, c.expect);
    assert.equal(fs.existsSync(runDir), false, "nothing was started or written");
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

test("topk with fp16 wire compression is refused (exit 2): float32 indices would be corrupted", async () => {
  const dir = tempDir("gc-bad");
  const runDir = path.join(dir, "run");
  const r = await runLaunch([TINY_CONFIG, "--output", runDir, "--workers", "2", "--set", "communication.compression=fp16", "--set", "communication.gradient_compression.method=topk"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /field communication\.gradient_compression\.method: topk sends float32 indices/);
  assert.equal(fs.existsSync(runDir), false);
  fs.rmSync(dir, { recursive: true, force: true });
});
