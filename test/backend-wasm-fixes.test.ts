/**
 * The wasm kernel fixes: for each, the stock kernel is missing / wrong / on the slow path, and the fix matches an
 * independent plain-JS reference. Also the fused GELU / LayerNorm kernels against float64 references and core ops.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../shared/backend/select";
import { setWasmFixes, wasmFixStats } from "../shared/backend/wasm-fixes";
import { Rng } from "../shared/rng";
import { geluFused, geluOps } from "../shared/model/ops/gelu";
import { expNonPositive } from "../shared/backend/fused-kernels";
import { layerNormFused, layerNormOps } from "../shared/model/ops/layer-norm";
import { maxRelDiff, maxScaledDiff } from "./helpers/model-fixtures";

before(async () => {
  assert.equal(await selectBackend("wasm"), "wasm");
});

function randn(n: number, seed: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
}

/** Plain float64 batched product with transpose flags and batch broadcasting from 1. */
function refMatMul(a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], ta: boolean, tb: boolean): Float64Array {
  const [ba, ar, ac] = aShape;
  const [bb, br, bc] = bShape;
  const m = ta ? ac : ar;
  const k = ta ? ar : ac;
  const n = tb ? br : bc;
  const batch = Math.max(ba, bb);
  const out = new Float64Array(batch * m * n);
  for (let z = 0; z < batch; z++) {
    const ao = (ba === 1 ? 0 : z) * ar * ac;
    const bo = (bb === 1 ? 0 : z) * br * bc;
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ao + (ta ? p * ac + i : i * ac + p)] * b[bo + (tb ? j * bc + p : p * bc + j)];
        out[(z * m + i) * n + j] = s;
      }
  }
  return out;
}

/** Runs fn with the stock kernels installed, restoring the fixes afterwards. */
function withStock<T>(fn: () => T): T {
  setWasmFixes(false);
  try {
    return fn();
  } finally {
    setWasmFixes(true);
  }
}

test("UnsortedSegmentSum: missing in stock wasm; fix matches a JS reference (out-of-range ids dropped)", () => {
  const x = randn(6 * 3, 1);
  const ids = Int32Array.from([2, 0, 2, -1, 4, 2]);
  const run = () => tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(x, [6, 3]), tf.tensor1d(ids, "int32"), 4).dataSync());
  assert.throws(() => withStock(run), /UnsortedSegmentSum|not registered/);
  const ref = new Float64Array(4 * 3);
  ids.forEach((s, i) => {
    if (s >= 0 && s < 4) for (let j = 0; j < 3; j++) ref[s * 3 + j] += x[i * 3 + j];
  });
  assert.ok(maxRelDiff(run(), ref) < 1e-6);
  // The gradient of gather (embedding lookup) is what needs it.
  const table = tf.tensor2d(randn(5 * 2, 2), [5, 2]);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.gather(t, tf.tensor1d([1, 3, 1], "int32"))))(table).arraySync() as number[][];
  assert.deepEqual(g, [[0, 0], [2, 2], [0, 0], [1, 1], [0, 0]]);
});

test("OneHot float32: stock writes int32 bit patterns; fix gives 1/0", () => {
  const run = () => tf.tidy(() => tf.oneHot(tf.tensor1d([2, 0], "int32"), 3, 1, 0, "float32").dataSync());
  const stock = withStock(run);
  assert.notDeepEqual(Array.from(stock), [0, 0, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(run()), [0, 0, 1, 1, 0, 0]);
});

test("BatchMatMul: stock gets transpose flags from autodiff (its C++ scalar path); fix matches float64 on every form", () => {
  // What the stock kernel is asked for in a backward pass: batch_mat_mul_impl.cc sends any transposed or batched
  // product to a scalar triple loop, XNNPACK only sees [1,m,k] x [1,k,n].
  const seen: string[] = [];
  withStock(() => {
    const stock = tf.getKernel("BatchMatMul", "wasm");
    tf.unregisterKernel("BatchMatMul", "wasm");
    tf.registerKernel({
      ...stock,
      kernelFunc: (args) => {
        const at = args.attrs as unknown as tf.BatchMatMulAttrs;
        seen.push(`${at.transposeA ? "T" : "N"}${at.transposeB ? "T" : "N"}`);
        return stock.kernelFunc(args);
      },
    });
    try {
      tf.tidy(() => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.matMul(a, b)))([tf.ones([4, 3]), tf.ones([3, 5])]));
    } finally {
      tf.unregisterKernel("BatchMatMul", "wasm");
      tf.registerKernel(stock);
    }
  });
  assert.ok(seen.includes("NT") && seen.includes("TN"), `backward products: ${seen.join(",")}`);

  const cases: [number[], number[], boolean, boolean][] = [
    [[1, 7, 5], [1, 5, 6], false, false],
    [[1, 7, 5], [1, 6, 5], false, true],
    [[1, 5, 7], [1, 5, 6], true, false],
    [[1, 5, 7], [1, 6, 5], true, true],
    [[3, 7, 5], [3, 6, 5], false, true],
    [[3, 5, 7], [3, 5, 6], true, false],
    [[3, 7, 5], [1, 5, 6], false, false],
    [[1, 7, 5], [3, 5, 6], false, false],
    [[1, 40, 300], [1, 40, 9], true, false], // a^T b via (b^T a)^T (fewer elements moved)
  ];
  wasmFixStats.reset();
  for (const [as, bs, ta, tb] of cases) {
    const a = randn(as.reduce((p, q) => p * q), 3);
    const b = randn(bs.reduce((p, q) => p * q), 4);
    const got = tf.tidy(() => tf.matMul(tf.tensor3d(a, as as [number, number, number]), tf.tensor3d(b, bs as [number, number, number]), ta, tb).dataSync());
    const ref = refMatMul(a, as, b, bs, ta, tb);
    assert.ok(maxScaledDiff(got, ref) < 1e-6, `case a=[${as}] b=[${bs}] ta=${ta} tb=${tb}`);
  }
  assert.ok(wasmFixStats.xnnMatMuls >= cases.length);
});

/** Counts elements the backend copies out of the heap (readSync) while fn runs. */
function countReads(fn: () => void): number {
  const be = tf.backend() as unknown as { readSync: (d: object, s?: number, e?: number) => ArrayLike<number> };
  const orig = be.readSync;
  let n = 0;
  be.readSync = function (this: unknown, d: object, s?: number, e?: number) {
    const r = orig.call(this, d, s, e);
    n += r.length;
    return r;
  };
  try {
    fn();
  } finally {
    be.readSync = orig;
  }
  return n;
}

test("Slice/Unpack: stock copies the whole input per slice; fix copies nothing extra and matches", () => {
  const rows = 200;
  const cols = 16;
  const x = randn(rows * cols, 5);
  const t = tf.tensor2d(x, [rows, cols]);
  const sliceAndUnstack = () =>
    tf.tidy(() => {
      tf.slice(t, [3, 0], [1, cols]);
      tf.slice(t, [0, 2], [5, 3]);
      tf.unstack(tf.reshape(t, [20, 10, 16]));
    });
  const stockReads = withStock(() => countReads(sliceAndUnstack));
  assert.ok(stockReads >= 22 * rows * cols, `stock read ${stockReads} elements`);
  assert.equal(countReads(sliceAndUnstack), 0);
  const part = tf.tidy(() => tf.slice(t, [10, 2], [4, 5]).dataSync());
  const ref: number[] = [];
  for (let r = 10; r < 14; r++) for (let c = 2; c < 7; c++) ref.push(x[r * cols + c]);
  assert.deepEqual(Array.from(part), ref);
  const pieces = tf.tidy(() => tf.unstack(tf.reshape(t, [20, 10, 16]), 1).map((p) => Array.from(p.dataSync())));
  assert.equal(pieces.length, 10);
  assert.deepEqual(pieces[7].slice(0, 16), Array.from(x.subarray(7 * 16, 8 * 16)));
  assert.deepEqual(pieces[7].slice(16, 32), Array.from(x.subarray(17 * 16, 18 * 16)));
  const s3 = tf.tidy(() => tf.slice(tf.reshape(t, [4, 50, 16]), [1, 3, 4], [2, 2, 3]).dataSync());
  const ref3: number[] = [];
  for (let a = 1; a < 3; a++) for (let b = 3; b < 5; b++) for (let c = 4; c < 7; c++) ref3.push(x[(a * 50 + b) * 16 + c]);
  assert.deepEqual(Array.from(s3), ref3);
  t.dispose();
});

test("GatherV2 rows and leading-axis Sum: fix matches JS references and the stock kernels", () => {
  const x = randn(30 * 4, 6);
  const idx = Int32Array.from([5, 0, 29, 5, 7]);
  const run = () =>
    tf.tidy(() => {
      const t = tf.tensor2d(x, [30, 4]);
      return [tf.gather(t, tf.tensor1d(idx, "int32")).dataSync(), tf.sum(t, 0).dataSync(), tf.sum(tf.reshape(t, [5, 6, 4]), [0, 1], true).dataSync(), tf.sum(t, 1).dataSync()];
    });
  const [g, s0, s01, s1] = run();
  const [gs, s0s, s01s, s1s] = withStock(run);
  const refG = Array.from(idx).flatMap((r) => Array.from(x.subarray(r * 4, r * 4 + 4)));
  assert.deepEqual(Array.from(g), refG);
  assert.deepEqual(Array.from(gs), refG);
  const refS = [0, 1, 2, 3].map((j) => Array.from({ length: 30 }, (_, r) => x[r * 4 + j]).reduce((p, q) => p + q, 0));
  assert.ok(maxRelDiff(s0, refS) < 1e-6 && maxRelDiff(s01, refS) < 1e-6);
  assert.ok(maxRelDiff(s0s, refS) < 1e-5 && maxRelDiff(s01s, refS) < 1e-5);
  assert.deepEqual(Array.from(s1), Array.from(s1s)); // other axes still go to the stock kernel
  assert.throws(() => tf.tidy(() => tf.gather(tf.tensor2d(x, [30, 4]), tf.tensor1d([30], "int32"))), /outside/);
});

test("Transpose of the last two axes: tiled copy matches the stock kernel (batched, ragged tiles, int32); other perms unchanged", () => {
  const cases: [number[], number[]][] = [
    [[70, 33], [1, 0]],
    [[33, 70], [1, 0]],
    [[3, 45, 37], [0, 2, 1]],
    [[2, 2, 5, 64], [0, 1, 3, 2]],
    [[1, 1], [1, 0]],
    [[0, 4], [1, 0]],
    [[2, 5, 3, 4], [0, 2, 1, 3]], // heads split: not a last-two swap, goes to the stock kernel
  ];
  for (const [shape, perm] of cases) {
    const n = shape.reduce((p, q) => p * q, 1);
    const x = randn(n, 13);
    const ints = Int32Array.from({ length: n }, (_, i) => i * 7 - 3);
    const run = () => tf.tidy(() => [tf.transpose(tf.tensor(x, shape), perm).dataSync(), tf.transpose(tf.tensor(ints, shape, "int32"), perm).dataSync()]);
    wasmFixStats.reset();
    const [f, fi] = run();
    const swapsLast2 = perm[perm.length - 1] === perm.length - 2 && perm.slice(0, -2).every((p, i) => p === i);
    // (an empty tensor never reaches a kernel)
    if (n > 0) assert.equal(wasmFixStats.tiledTransposes, swapsLast2 ? 2 : 0, `tiled path taken for ${shape} perm ${perm}`);
    const [st, sti] = withStock(run);
    assert.deepEqual(Array.from(f), Array.from(st), `float32 ${shape} perm ${perm}`);
    assert.deepEqual(Array.from(fi), Array.from(sti), `int32 ${shape} perm ${perm}`);
  }
  // And against a plain reference, so a shared mistake in both kernels would show.
  const [R, C] = [40, 70];
  const x = randn(R * C, 14);
  const t = tf.tidy(() => tf.transpose(tf.tensor2d(x, [R, C])).dataSync());
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) assert.equal(t[c * R + r], x[r * C + c]);
});

test("Identity shares the data instead of copying; clones outlive their source and gradients are unchanged", () => {
  const x = randn(256, 11);
  const buffersOfClone = (): number => {
    const t = tf.tensor1d(x);
    const before = tf.memory().numDataBuffers;
    const c = tf.clone(t);
    const added = tf.memory().numDataBuffers - before;
    t.dispose(); // the clone keeps the shared data alive
    assert.deepEqual(Array.from(c.dataSync()), Array.from(x));
    c.dispose();
    return added;
  };
  assert.equal(buffersOfClone(), 0, "the fixed kernel allocates no buffer");
  assert.equal(withStock(buffersOfClone), 1, "the stock kernel copies");
  // The engine clones the tensors it saves for the backward pass; the gradients are the same either way.
  const w = randn(256, 12);
  const grad = () => tf.tidy(() => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.square(v), tf.tensor1d(w))))(tf.tensor1d(x)).dataSync());
  const g = grad();
  assert.deepEqual(Array.from(g), Array.from(withStock(grad)));
  assert.ok(maxRelDiff(g, Array.from(x, (v, i) => 2 * v * w[i])) < 1e-6);
  const live = tf.memory().numTensors;
  grad();
  assert.equal(tf.memory().numTensors, live, "no tensor leaked");
});

test("expNonPositive (GELU's exp) matches Math.exp to 1e-8 relative over [-700, 0], and its edge cases", () => {
  const r = new Rng(15);
  let worst = 0;
  for (let i = 0; i < 20000; i++) {
    const y = i < 10000 ? -r.next() * 20 : -r.next() * 700;
    const want = Math.exp(y);
    if (want > 0) worst = Math.max(worst, Math.abs(expNonPositive(y) - want) / want);
  }
  assert.ok(worst < 1e-8, `worst relative error ${worst}`);
  assert.equal(expNonPositive(0), 1);
  assert.equal(expNonPositive(-Infinity), 0);
  assert.equal(expNonPositive(-1e6), 0);
  assert.ok(Number.isNaN(expNonPositive(NaN)));
});

test("fused GELU and LayerNorm kernels match float64 references and the core-ops versions (values and gradients)", () => {
  const n = 64;
  const x = randn(n * 8, 7).map((v) => v * 3);
  const erf = (z: number): number => {
    // Series / continued fraction free check: integrate exp(-t^2) with Simpson's rule on 2000 panels.
    const steps = 2000;
    const h = z / steps;
    let s = 0;
    for (let i = 0; i <= steps; i++) s += (i === 0 || i === steps ? 1 : i % 2 ? 4 : 2) * Math.exp(-((i * h) ** 2));
    return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
  };
  const refGelu = Array.from(x, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
  const [yF, yO, gF, gO] = tf.tidy(() => {
    const t = tf.tensor2d(x, [n, 8]);
    const w = tf.tensor2d(randn(n * 8, 8), [n, 8]);
    return [
      geluFused(t).dataSync(),
      geluOps(t).dataSync(),
      tf.grad((v: tf.Tensor) => tf.sum(tf.mul(geluFused(v), w)))(t).dataSync(),
      tf.grad((v: tf.Tensor) => tf.sum(tf.mul(geluOps(v), w)))(t).dataSync(),
    ];
  });
  assert.ok(maxScaledDiff(yF, refGelu) < 1e-6, `fused gelu vs float64: ${maxScaledDiff(yF, refGelu)}`);
  assert.ok(maxScaledDiff(yO, refGelu) < 1e-6, `ops gelu vs float64: ${maxScaledDiff(yO, refGelu)}`);
  assert.ok(maxScaledDiff(gF, gO) < 1e-6, `gelu gradients: ${maxScaledDiff(gF, gO)}`);

  const H = 8;
  const gamma = randn(H, 9);
  const beta = randn(H, 10);
  const refLn: number[] = [];
  for (let r = 0; r < n; r++) {
    const row = Array.from(x.subarray(r * H, r * H + H));
    const mean = row.reduce((p, q) => p + q, 0) / H;
    const v = row.reduce((p, q) => p + (q - mean) ** 2, 0) / H;
    row.forEach((q, j) => refLn.push(((q - mean) / Math.sqrt(v + 1e-5)) * gamma[j] + beta[j]));
  }
  const res = tf.tidy(() => {
    const t = tf.tensor2d(x, [n, H]);
    const g = tf.tensor1d(gamma);
    const b = tf.tensor1d(beta);
    const w = tf.tensor2d(randn(n * H, 11), [n, H]);
    const f = (ln: typeof layerNormFused) => (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(ln(xx as tf.Tensor2D, gg as tf.Tensor1D, bb as tf.Tensor1D, 1e-5), w));
    return [
      layerNormFused(t, g, b, 1e-5).dataSync(),
      layerNormOps(t, g, b, 1e-5).dataSync(),
      ...tf.grads(f(layerNormFused))([t, g, b]).map((q) => q.dataSync()),
      ...tf.grads(f(layerNormOps))([t, g, b]).map((q) => q.dataSync()),
    ];
  });
  assert.ok(maxScaledDiff(res[0], refLn) < 1e-6, "fused layerNorm vs float64");
  assert.ok(maxScaledDiff(res[1], refLn) < 1e-6, "ops layerNorm vs float64");
  for (let i = 0; i < 3; i++) assert.ok(maxScaledDiff(res[2 + i], res[5 + i]) < 1e-5, `layerNorm gradient ${i}: ${maxScaledDiff(res[2 + i], res[5 + i])}`);
});
