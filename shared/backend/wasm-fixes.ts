/**
 * Kernel fixes for @tensorflow/tfjs-backend-wasm 4.22, all in one place.
 *
 * Each entry replaces (or adds) one wasm kernel. They were found with a probe that matched PyTorch's loss and
 * gradients; test/backend-wasm-fixes.test.ts shows for each that the stock kernel is missing, wrong or on a slow
 * path, and that the replacement matches an independent reference.
 *
 *  - UnsortedSegmentSum: missing; the gradient of tf.gather (embedding lookup) needs it.
 *  - OneHot: with dtype 'float32' the stock kernel writes int32 bit patterns into the float buffer.
 *  - BatchMatMul: the stock C++ kernel uses XNNPACK only for a single (batch 1) product without transpose flags;
 *    everything else (all backward matmuls, attention's batched products) runs a scalar triple loop, ~10x slower.
 *    The replacement transposes explicitly and issues one XNNPACK product per batch entry.
 *  - Slice / Unpack: the stock kernel copies the WHOLE input out of the wasm heap for every slice (readSync),
 *    which makes unstack of N pieces O(N * size). The replacement copies only the requested range.
 *  - GatherV2 (axis 0, no batch dims): the stock kernel indexes element by element (~8 ms for 2048 embedding rows);
 *    the replacement copies whole rows. Other forms go to the stock kernel.
 *  - Sum over leading axes (bias and LayerNorm gradients): the stock kernel transposes the input first; the
 *    replacement accumulates rows in place. Other axes go to the stock kernel.
 *  - Transpose swapping the last two axes (every transposed matmul operand, e.g. the tied [vocab, hidden]
 *    embedding): the stock kernel moves one element at a time through a generic index walk (~35 ms for
 *    [8192, 128]); the replacement copies cache-sized tiles (~2 ms). Other permutations go to the stock kernel.
 *  - Identity: the stock kernel copies the tensor. The engine clones every tensor it saves for the backward pass
 *    (~150 copies, ~10 ms, per bert-tiny step); tensors are immutable, so the replacement shares the data and counts
 *    a reference, as the cpu backend and the wasm Reshape kernel do.
 *
 * The kernels read and write the wasm heap directly; views are re-created on every call because the heap's
 * ArrayBuffer is replaced when the memory grows.
 */
import * as tf from "@tensorflow/tfjs";

/** The parts of the wasm backend's object these kernels touch (the package's own typings need emscripten's). */
interface WasmModule {
  HEAPU8: Uint8Array;
  cwrap(name: string, ret: null, args: string[]): (...args: (number | boolean | Uint8Array)[]) => void;
  tfjs: { registerTensor(id: number, size: number, memoryOffset: number): void; disposeData(id: number): void };
}
interface TensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
}
interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: tf.DataId): TensorData | undefined; delete(dataId: tf.DataId): void };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): tf.TensorInfo;
  disposeData(dataId: tf.DataId, force?: boolean): boolean;
  readSync(dataId: tf.DataId, start?: number, end?: number): tf.backend_util.BackendValues;
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** Counters that let tests check which path the kernels took (not timings). */
export const wasmFixStats = {
  /** Products sent to the C++ kernel as a plain [1,m,k] x [1,k,n] (its XNNPACK path; nothing else is sent). */
  xnnMatMuls: 0,
  /** Transposes done by the tiled last-two-axes copy (other permutations go to the stock kernel). */
  tiledTransposes: 0,
  reset(): void {
    this.xnnMatMuls = 0;
    this.tiledTransposes = 0;
  },
};

function input(args: KernelArgs, name: string): tf.TensorInfo {
  const t = args.inputs[name];
  if (t === undefined) throw new Error(`wasm-fixes: kernel input '${name}' missing`);
  return t;
}

function wasmBackend(b: unknown): WasmBackend {
  const w = b as Partial<WasmBackend>;
  if (w.wasm === undefined || w.dataIdMap === undefined) throw new Error("wasm-fixes: kernel called with a non-wasm backend");
  return w as WasmBackend;
}

function info(be: WasmBackend, t: tf.TensorInfo): TensorData {
  const d = be.dataIdMap.get(t.dataId);
  if (d === undefined) throw new Error("wasm-fixes: tensor has no data on the wasm backend");
  return d;
}

function f32View(be: WasmBackend, t: tf.TensorInfo): Float32Array {
  return new Float32Array(be.wasm.HEAPU8.buffer, info(be, t).memoryOffset, tf.util.sizeFromShape(t.shape));
}

function typedView(be: WasmBackend, t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array {
  const off = info(be, t).memoryOffset;
  const n = tf.util.sizeFromShape(t.shape);
  const buf = be.wasm.HEAPU8.buffer;
  switch (t.dtype) {
    case "float32":
      return new Float32Array(buf, off, n);
    case "int32":
      return new Int32Array(buf, off, n);
    case "bool":
      return new Uint8Array(buf, off, n);
    default:
      throw new Error(`wasm-fixes: unsupported dtype ${t.dtype}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// UnsortedSegmentSum (missing in wasm)

function unsortedSegmentSum(args: KernelArgs): tf.TensorInfo {
  const be = wasmBackend(args.backend);
  const x = input(args, "x");
  const ids = input(args, "segmentIds");
  const numSegments = (args.attrs as unknown as tf.UnsortedSegmentSumAttrs).numSegments;
  if (ids.dtype !== "int32") throw new Error(`UnsortedSegmentSum: segmentIds must be int32, got ${ids.dtype}`);
  if (x.dtype !== "float32" && x.dtype !== "int32") throw new Error(`UnsortedSegmentSum: unsupported dtype ${x.dtype}`);
  const idCount = tf.util.sizeFromShape(ids.shape);
  const inner = tf.util.sizeFromShape(x.shape.slice(ids.shape.length));
  const out = be.makeOutput([numSegments, ...x.shape.slice(ids.shape.length)], x.dtype);
  const o = typedView(be, out);
  o.fill(0); // makeOutput memory is uninitialised
  const xv = typedView(be, x);
  const iv = typedView(be, ids);
  for (let i = 0; i < idCount; i++) {
    const s = iv[i];
    if (s < 0 || s >= numSegments) continue; // TF drops out-of-range ids
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xv[src + j];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// OneHot (stock writes int32 bit patterns when dtype is float32)

function oneHot(args: KernelArgs): tf.TensorInfo {
  const be = wasmBackend(args.backend);
  const indices = input(args, "indices");
  const { depth, onValue, offValue, dtype } = args.attrs as unknown as tf.OneHotAttrs;
  const n = tf.util.sizeFromShape(indices.shape);
  const out = be.makeOutput([...indices.shape, depth], dtype);
  const o = typedView(be, out);
  o.fill(offValue);
  const iv = typedView(be, indices);
  for (let i = 0; i < n; i++) {
    const k = iv[i];
    if (k >= 0 && k < depth) o[i * depth + k] = onValue;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// BatchMatMul: route every product through XNNPACK (plain 2-D, no transpose flags)

const cwrapCache = new WeakMap<WasmModule, (...args: (number | boolean | Uint8Array)[]) => void>();

function wasmMatMulFn(be: WasmBackend): (...args: (number | boolean | Uint8Array)[]) => void {
  let f = cwrapCache.get(be.wasm);
  if (f === undefined) {
    f = be.wasm.cwrap("BatchMatMul", null, ["number", "array", "number", "number", "array", "number", "number", "number", "number"]);
    cwrapCache.set(be.wasm, f);
  }
  return f;
}

const shapeBytes = (s: number[]): Uint8Array => new Uint8Array(new Int32Array(s).buffer);

/** Materialises x[b] transposed in its last two dims, using the backend's own Transpose kernel. */
function transposeLast2(be: WasmBackend, x: tf.TensorInfo, batch: number, r: number, c: number): tf.TensorInfo {
  const k = tf.getKernel("Transpose", "wasm");
  const x3: tf.TensorInfo = { dataId: x.dataId, dtype: x.dtype, shape: [batch, r, c] };
  return k.kernelFunc({ inputs: { x: x3 }, backend: be as unknown as tf.KernelBackend, attrs: { perm: [0, 2, 1] } }) as tf.TensorInfo;
}

/**
 * Registers a tensor id for a sub-range of existing heap memory (no copy); the C++ side only needs id -> offset.
 * release() unregisters it without freeing memory it does not own (and drops any XNNPACK operator cached on it).
 */
function heapView(be: WasmBackend, memoryOffset: number, shape: number[]): { id: number; release(): void } {
  const t = be.makeOutput(shape, "float32", memoryOffset);
  const id = info(be, t).id;
  return {
    id,
    release() {
      be.dataIdMap.delete(t.dataId);
      be.wasm.tfjs.disposeData(id);
    },
  };
}

function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const be = wasmBackend(args.backend);
  const a = input(args, "a");
  const b = input(args, "b");
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  if (a.dtype !== "float32" || b.dtype !== "float32") throw new Error("BatchMatMul: only float32 is supported on wasm");
  const ar = a.shape.length;
  const br = b.shape.length;
  const m = transposeA ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = transposeA ? a.shape[ar - 2] : a.shape[ar - 1];
  const kb = transposeB ? b.shape[br - 1] : b.shape[br - 2];
  const n = transposeB ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== kb) {
    throw new Error(`matMul: inner dimensions ${k} and ${kb} of shapes [${a.shape}] and [${b.shape}] (transposeA=${transposeA}, transposeB=${transposeB}) do not match`);
  }
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const outerShape = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = Math.max(batchA, batchB);
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) {
    throw new Error(`matMul: batch shapes [${a.shape.slice(0, -2)}] and [${b.shape.slice(0, -2)}] only broadcast from size 1 here`);
  }
  const out = be.makeOutput([...outerShape, m, n], "float32");
  if (m * n * batch === 0) return out;
  if (k === 0) {
    f32View(be, out).fill(0);
    return out;
  }
  if (transposeA && !transposeB && batch === 1 && k * n + m * n < k * m) {
    // a^T b = (b^T a)^T: transposing b and the result moves fewer elements than transposing a
    // (e.g. the vocabulary gradient: a = dLogits [targets, vocab], b = [targets, hidden]).
    be.disposeData(out.dataId);
    const kernel = tf.getKernel("BatchMatMul", "wasm").kernelFunc;
    const bt = { dataId: b.dataId, dtype: b.dtype, shape: [k, n] };
    const at = { dataId: a.dataId, dtype: a.dtype, shape: [k, m] };
    const prod = kernel({ inputs: { a: bt, b: at }, backend: be as unknown as tf.KernelBackend, attrs: { transposeA: true, transposeB: false } }) as tf.TensorInfo;
    const res = transposeLast2(be, prod, 1, n, m);
    be.disposeData(prod.dataId);
    return { dataId: res.dataId, dtype: res.dtype, shape: [...outerShape, m, n] };
  }
  // Physical [batch, m, k] and [batch, k, n] operands.
  const aT = transposeA ? transposeLast2(be, a, batchA, k, m) : null;
  const bT = transposeB ? transposeLast2(be, b, batchB, n, k) : null;
  const aInfo = info(be, aT ?? a);
  const bInfo = info(be, bT ?? b);
  const outInfo = info(be, out);
  const mm = wasmMatMulFn(be);
  try {
    if (batchB === 1) {
      // Every a-row meets the same b: one [batchA*m, k] x [k, n] product.
      mm(aInfo.id, shapeBytes([1, batchA * m, k]), 3, bInfo.id, shapeBytes([1, k, n]), 3, false, false, outInfo.id);
      wasmFixStats.xnnMatMuls++;
    } else {
      for (let i = 0; i < batch; i++) {
        const av = heapView(be, aInfo.memoryOffset + (batchA === 1 ? 0 : i * m * k * 4), [1, m, k]);
        const bv = heapView(be, bInfo.memoryOffset + i * k * n * 4, [1, k, n]);
        const ov = heapView(be, outInfo.memoryOffset + i * m * n * 4, [1, m, n]);
        try {
          mm(av.id, shapeBytes([1, m, k]), 3, bv.id, shapeBytes([1, k, n]), 3, false, false, ov.id);
          wasmFixStats.xnnMatMuls++;
        } finally {
          av.release();
          bv.release();
          ov.release();
        }
      }
    }
  } finally {
    if (aT !== null) be.disposeData(aT.dataId);
    if (bT !== null) be.disposeData(bT.dataId);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Slice / Unpack: copy only the requested range

function sliceInfo(be: WasmBackend, x: tf.TensorInfo, begin: number[], size: number[]): tf.TensorInfo {
  const out = be.makeOutput(size, x.dtype);
  if (tf.util.sizeFromShape(size) === 0) return out;
  const src = typedView(be, x);
  const dst = typedView(be, out);
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const off = tf.slice_util.computeFlatOffset(begin, strides);
    dst.set(src.subarray(off, off + dst.length));
    return out;
  }
  // Copy runs along the last axis; walk the other axes like an odometer.
  const rank = x.shape.length;
  const run = size[rank - 1];
  const idx = new Array<number>(rank - 1).fill(0);
  const rows = dst.length / run;
  for (let r = 0; r < rows; r++) {
    let off = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) off += (begin[d] + idx[d]) * strides[d];
    dst.set(src.subarray(off, off + run), r * run);
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

let stockSlice: tf.KernelConfig | undefined;

function slice(args: KernelArgs): tf.TensorInfo {
  const x = input(args, "x");
  if (x.dtype === "string") {
    if (stockSlice === undefined) throw new Error("Slice: stock wasm kernel unavailable for strings");
    return stockSlice.kernelFunc(args as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
  }
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  return sliceInfo(wasmBackend(args.backend), x, b, s);
}

function unpack(args: KernelArgs): tf.TensorInfo[] {
  const be = wasmBackend(args.backend);
  const value = input(args, "value");
  let { axis } = args.attrs as unknown as tf.UnpackAttrs;
  if (axis < 0) axis += value.shape.length;
  const outShape = value.shape.filter((_, i) => i !== axis);
  const begin = new Array<number>(value.shape.length).fill(0);
  const size = value.shape.slice();
  size[axis] = 1;
  const outs: tf.TensorInfo[] = [];
  for (let i = 0; i < value.shape[axis]; i++) {
    begin[axis] = i;
    const o = sliceInfo(be, value, begin, size);
    outs.push({ dataId: o.dataId, dtype: o.dtype, shape: outShape });
  }
  return outs;
}

// ---------------------------------------------------------------------------------------------------------------
// GatherV2 (axis 0, batchDims 0): copy whole rows

let stockGather: tf.KernelConfig | undefined;
let stockSum: tf.KernelConfig | undefined;

function callStock(k: tf.KernelConfig | undefined, name: string, args: KernelArgs): tf.TensorInfo {
  if (k === undefined) throw new Error(`${name}: the stock wasm kernel is unavailable for this case`);
  return k.kernelFunc(args as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
}

function gatherV2(args: KernelArgs): tf.TensorInfo {
  const x = input(args, "x");
  const indices = input(args, "indices");
  const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
  const ax = axis < 0 ? axis + x.shape.length : axis;
  if (ax !== 0 || (batchDims ?? 0) !== 0 || x.dtype === "string" || indices.dtype !== "int32") return callStock(stockGather, "GatherV2", args);
  const be = wasmBackend(args.backend);
  const rows = x.shape[0];
  const rowSize = tf.util.sizeFromShape(x.shape.slice(1));
  const n = tf.util.sizeFromShape(indices.shape);
  const out = be.makeOutput([...indices.shape, ...x.shape.slice(1)], x.dtype);
  const iv = typedView(be, indices);
  const src = typedView(be, x);
  const dst = typedView(be, out);
  for (let i = 0; i < n; i++) {
    const r = iv[i];
    if (r < 0 || r >= rows) {
      be.disposeData(out.dataId);
      throw new Error(`gather: index ${r} at position ${i} is outside [0, ${rows})`);
    }
    dst.set(src.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Sum over leading axes: accumulate rows

function sum(args: KernelArgs): tf.TensorInfo {
  const x = input(args, "x");
  const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
  const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
  if (!leading || x.dtype !== "float32") return callStock(stockSum, "Sum", args);
  const be = wasmBackend(args.backend);
  const keptShape = x.shape.slice(axes.length);
  const outShape = keepDims ? [...axes.map(() => 1), ...keptShape] : keptShape;
  const out = be.makeOutput(outShape, "float32");
  const inner = tf.util.sizeFromShape(keptShape);
  const rows = tf.util.sizeFromShape(x.shape) / inner;
  const src = f32View(be, x);
  // Accumulate in float64 (a float32 running sum over thousands of rows loses digits the stock kernel keeps).
  const acc = new Float64Array(inner);
  for (let r = 0; r < rows; r++) {
    const base = r * inner;
    for (let j = 0; j < inner; j++) acc[j] += src[base + j];
  }
  f32View(be, out).set(acc);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Transpose of the last two axes: tiled copy

let stockTranspose: tf.KernelConfig | undefined;

/** Tile edge of the transposing copy: 32 x 32 floats = 4 KiB per tile read, well inside L1. */
const TILE = 32;

/**
 * dst[c * R + r] = src[off + r * C + c] for one [R, C] matrix at offset `off` (the same offset in dst). Tiles
 * keep both the rows read and the rows written in cache; the loop order follows the longer side.
 */
export function transposeMatrix(src: Float32Array | Int32Array, dst: Float32Array | Int32Array, off: number, R: number, C: number): void {
  if (R >= C) {
    for (let c0 = 0; c0 < C; c0 += TILE) {
      const c1 = Math.min(C, c0 + TILE);
      for (let r0 = 0; r0 < R; r0 += TILE) {
        const r1 = Math.min(R, r0 + TILE);
        for (let c = c0; c < c1; c++) {
          const o = off + c * R;
          for (let r = r0; r < r1; r++) dst[o + r] = src[off + r * C + c];
        }
      }
    }
  } else {
    for (let r0 = 0; r0 < R; r0 += TILE) {
      const r1 = Math.min(R, r0 + TILE);
      for (let c0 = 0; c0 < C; c0 += TILE) {
        const c1 = Math.min(C, c0 + TILE);
        for (let r = r0; r < r1; r++) {
          const o = off + r * C;
          for (let c = c0; c < c1; c++) dst[off + c * R + r] = src[o + c];
        }
      }
    }
  }
}

function transpose(args: KernelArgs): tf.TensorInfo {
  const x = input(args, "x");
  const { perm } = args.attrs as unknown as tf.TransposeAttrs;
  const rank = x.shape.length;
  const swapsLast2 = rank >= 2 && perm.length === rank && perm.every((p, i) => (i < rank - 2 ? p === i : p === (i === rank - 2 ? rank - 1 : rank - 2)));
  if (!swapsLast2 || (x.dtype !== "float32" && x.dtype !== "int32")) return callStock(stockTranspose, "Transpose", args);
  const be = wasmBackend(args.backend);
  const R = x.shape[rank - 2];
  const C = x.shape[rank - 1];
  const out = be.makeOutput(perm.map((p) => x.shape[p]), x.dtype);
  const n = tf.util.sizeFromShape(x.shape);
  if (n === 0) return out;
  const src = typedView(be, x) as Float32Array | Int32Array; // views after makeOutput: allocating may grow the heap
  const dst = typedView(be, out) as Float32Array | Int32Array;
  for (let off = 0; off < n; off += R * C) transposeMatrix(src, dst, off, R, C);
  wasmFixStats.tiledTransposes++;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Identity: share the data (tensors are immutable; a Variable's assign swaps its data, never writes into it)

let stockIdentity: tf.KernelConfig | undefined;

function identity(args: KernelArgs): tf.TensorInfo {
  const x = input(args, "x");
  if (x.dtype === "string") return callStock(stockIdentity, "Identity", args);
  const be = args.backend as { incRef(dataId: tf.DataId): void };
  be.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

// ---------------------------------------------------------------------------------------------------------------
// Registration

const FIXES: { kernelName: string; kernelFunc: tf.KernelFunc; why: string }[] = [
  { kernelName: "UnsortedSegmentSum", kernelFunc: unsortedSegmentSum as tf.KernelFunc, why: "missing (gather gradient)" },
  { kernelName: "OneHot", kernelFunc: oneHot as tf.KernelFunc, why: "float32 output held int32 bit patterns" },
  { kernelName: "BatchMatMul", kernelFunc: batchMatMul as tf.KernelFunc, why: "transposed/batched products ran a scalar loop" },
  { kernelName: "Slice", kernelFunc: slice as tf.KernelFunc, why: "copied the whole input per slice" },
  { kernelName: "Unpack", kernelFunc: unpack as unknown as tf.KernelFunc, why: "copied the whole input per piece" },
  { kernelName: "GatherV2", kernelFunc: gatherV2 as tf.KernelFunc, why: "gathered rows element by element" },
  { kernelName: "Sum", kernelFunc: sum as tf.KernelFunc, why: "transposed the input to reduce leading axes" },
  { kernelName: "Transpose", kernelFunc: transpose as tf.KernelFunc, why: "moved one element at a time (last-two-axes swaps)" },
  { kernelName: "Identity", kernelFunc: identity as tf.KernelFunc, why: "copied every tensor saved for the backward pass" },
];

/** Names and reasons of the kernels this module replaces, for run logs. */
export const WASM_FIXES: readonly { kernelName: string; why: string }[] = FIXES.map(({ kernelName, why }) => ({ kernelName, why }));

const stock = new Map<string, tf.KernelConfig | undefined>();
let enabled = false;

function findKernel(name: string): tf.KernelConfig | undefined {
  return tf.getKernelsForBackend("wasm").find((k) => k.kernelName === name);
}

/**
 * Installs (true) or removes (false) the fixed wasm kernels; removing restores the stock ones. Idempotent.
 * Takes effect immediately, also when the wasm backend is already initialised (the engine looks kernels up per call).
 */
export function setWasmFixes(on: boolean): void {
  if (on === enabled) return;
  for (const fix of FIXES) {
    if (on) {
      const k = findKernel(fix.kernelName);
      stock.set(fix.kernelName, k);
      if (k !== undefined) tf.unregisterKernel(fix.kernelName, "wasm");
      // Keep the stock setup: fallbacks call the stock kernel, which needs it if the backend initialises later.
      tf.registerKernel({ kernelName: fix.kernelName, backendName: "wasm", kernelFunc: fix.kernelFunc, setupFunc: k?.setupFunc });
    } else {
      tf.unregisterKernel(fix.kernelName, "wasm");
      const k = stock.get(fix.kernelName);
      if (k !== undefined) tf.registerKernel(k);
    }
  }
  stockSlice = stock.get("Slice");
  stockGather = stock.get("GatherV2");
  stockSum = stock.get("Sum");
  stockIdentity = stock.get("Identity");
  stockTranspose = stock.get("Transpose");
  enabled = on;
}

/** Whether the fixed kernels are currently installed. */
export function wasmFixesEnabled(): boolean {
  return enabled;
}
