/**
 * Fused element-wise / row-wise kernels written in JS for the wasm and cpu backends, working on the tensors' memory
 * in place (no copy out and back in). Each replaces a chain of 8-20 small kernels, each of which allocates and
 * touches a full-size buffer; on wasm the Erf and Exp kernels are also slow scalar libm loops.
 *
 *  - RingtrainGelu:          x -> [gelu(x), gelu'(x)]                     (erf form, one exp per element)
 *  - RingtrainLayerNorm:     x, gamma, beta -> [y, xhat, rstd]            (last axis, float64 statistics)
 *  - RingtrainLayerNormGrad: dy, xhat, rstd, gamma -> [dx, dgamma, dbeta]
 *
 * Ops call them through fusedKernelsAvailable() and fall back to core ops on other backends (e.g. native TF).
 */
import * as tf from "@tensorflow/tfjs";

export const GELU_KERNEL = "RingtrainGelu";
export const LAYER_NORM_KERNEL = "RingtrainLayerNorm";
export const LAYER_NORM_GRAD_KERNEL = "RingtrainLayerNormGrad";

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** Read views of the inputs and writable views of freshly allocated float32 outputs, for one backend. */
interface Io {
  alloc(shapes: number[][]): { infos: tf.TensorInfo[]; views(): Float32Array[] };
  view(t: tf.TensorInfo): Float32Array;
}

interface WasmLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(d: tf.DataId): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}
interface CpuLike {
  data: { get(d: tf.DataId): { values?: unknown } | undefined };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): tf.TensorInfo;
}

function wasmIo(be: WasmLike): Io {
  const view = (t: tf.TensorInfo): Float32Array => {
    const d = be.dataIdMap.get(t.dataId);
    if (d === undefined) throw new Error("fused kernel: tensor has no data on the wasm backend");
    // Re-created per use: allocating may grow the heap and detach earlier views.
    return new Float32Array(be.wasm.HEAPU8.buffer, d.memoryOffset, tf.util.sizeFromShape(t.shape));
  };
  return {
    view,
    alloc(shapes) {
      const infos = shapes.map((s) => be.makeOutput(s, "float32"));
      return { infos, views: () => infos.map(view) };
    },
  };
}

function cpuIo(be: CpuLike): Io {
  return {
    view(t) {
      const v = be.data.get(t.dataId)?.values;
      if (!(v instanceof Float32Array)) throw new Error("fused kernel: expected float32 data on the cpu backend");
      return v;
    },
    alloc(shapes) {
      const arrays = shapes.map((s) => new Float32Array(tf.util.sizeFromShape(s)));
      const infos = shapes.map((s, i) => be.makeTensorInfo(s, "float32", arrays[i]));
      return { infos, views: () => arrays };
    },
  };
}

function ioFor(backendName: string, backend: unknown): Io {
  return backendName === "wasm" ? wasmIo(backend as WasmLike) : cpuIo(backend as CpuLike);
}

function input(args: KernelArgs, name: string): tf.TensorInfo {
  const t = args.inputs[name];
  if (t === undefined) throw new Error(`fused kernel: input '${name}' missing`);
  if (t.dtype !== "float32") throw new Error(`fused kernel: input '${name}' must be float32, got ${t.dtype}`);
  return t;
}

const SQRT_HALF = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** 2^-n for n = 0..1099 (exactly representable; 2^-1075 and below are 0 in float64). */
const POW2_NEG = Float64Array.from({ length: 1100 }, (_, n) => Math.pow(2, -n));

/**
 * exp(y) for y <= 0, relative error < 1e-8 (float32 needs 6e-8): y·log2(e) = -(n + f) with n an integer and
 * |f| <= 1/2, exp(y) = 2^-n · e^(-f ln 2), the second factor from its Taylor series to degree 8. About twice as fast
 * as Math.exp in V8, which is most of GELU's cost.
 */
export function expNonPositive(y: number): number {
  const a = -y * Math.LOG2E;
  if (!(a < 1099)) return a >= 1099 ? 0 : NaN;
  const n = Math.floor(a + 0.5); // (Math.round is several times slower in V8)
  const u = (n - a) * Math.LN2;
  const p = 1 + u * (1 + u * (1 / 2 + u * (1 / 6 + u * (1 / 24 + u * (1 / 120 + u * (1 / 720 + u * (1 / 5040 + u / 40320)))))));
  return p * POW2_NEG[n];
}

/**
 * gelu(x) = x Phi(x) and gelu'(x) = Phi(x) + x phi(x). erf from Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below
 * float32 resolution of Phi), whose exp(-x^2/2) factor is phi's too: one exp per element for both outputs
 * (expNonPositive: the argument is never positive).
 */
function geluKernel(backendName: string) {
  return (args: KernelArgs): tf.TensorInfo[] => {
    const io = ioFor(backendName, args.backend);
    const x = input(args, "x");
    const out = io.alloc([x.shape, x.shape]);
    const [y, d] = out.views();
    const xs = io.view(x);
    for (let i = 0; i < xs.length; i++) {
      const v = xs[i];
      const z = Math.abs(v) * SQRT_HALF;
      const t = 1 / (1 + 0.3275911 * z);
      const e = expNonPositive(-z * z);
      const erfAbs = 1 - t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))) * e;
      const cdf = 0.5 * (1 + (v < 0 ? -erfAbs : erfAbs));
      y[i] = v * cdf;
      d[i] = cdf + v * INV_SQRT_2PI * e;
    }
    return out.infos;
  };
}

function layerNormKernel(backendName: string) {
  return (args: KernelArgs): tf.TensorInfo[] => {
    const io = ioFor(backendName, args.backend);
    const x = input(args, "x");
    const g = input(args, "gamma");
    const b = input(args, "beta");
    const eps = (args.attrs as { eps: number }).eps;
    const H = x.shape[x.shape.length - 1];
    const R = tf.util.sizeFromShape(x.shape) / H;
    const out = io.alloc([x.shape, x.shape, [R]]);
    const [y, xhat, rstd] = out.views();
    const xs = io.view(x);
    const gs = io.view(g);
    const bs = io.view(b);
    for (let r = 0; r < R; r++) {
      const o = r * H;
      let mean = 0;
      for (let j = 0; j < H; j++) mean += xs[o + j];
      mean /= H;
      let v = 0;
      for (let j = 0; j < H; j++) {
        const c = xs[o + j] - mean;
        v += c * c;
      }
      const rs = 1 / Math.sqrt(v / H + eps);
      rstd[r] = rs;
      for (let j = 0; j < H; j++) {
        const xh = (xs[o + j] - mean) * rs;
        xhat[o + j] = xh;
        y[o + j] = xh * gs[j] + bs[j];
      }
    }
    return out.infos;
  };
}

function layerNormGradKernel(backendName: string) {
  return (args: KernelArgs): tf.TensorInfo[] => {
    const io = ioFor(backendName, args.backend);
    const dyT = input(args, "dy");
    const xhT = input(args, "xhat");
    const rsT = input(args, "rstd");
    const gT = input(args, "gamma");
    const H = dyT.shape[dyT.shape.length - 1];
    const R = tf.util.sizeFromShape(dyT.shape) / H;
    const out = io.alloc([dyT.shape, [H], [H]]);
    const [dx, dgOut, dbOut] = out.views();
    const dy = io.view(dyT);
    const xh = io.view(xhT);
    const rs = io.view(rsT);
    const g = io.view(gT);
    const dg = new Float64Array(H);
    const db = new Float64Array(H);
    for (let r = 0; r < R; r++) {
      const o = r * H;
      let m1 = 0;
      let m2 = 0;
      for (let j = 0; j < H; j++) {
        const d = dy[o + j];
        const dxh = d * g[j];
        m1 += dxh;
        m2 += dxh * xh[o + j];
        dg[j] += d * xh[o + j];
        db[j] += d;
      }
      m1 /= H;
      m2 /= H;
      const s = rs[r];
      for (let j = 0; j < H; j++) dx[o + j] = s * (dy[o + j] * g[j] - m1 - xh[o + j] * m2);
    }
    dgOut.set(dg);
    dbOut.set(db);
    return out.infos;
  };
}

const FUSED_BACKENDS = ["wasm", "cpu"] as const;
let registered = false;

/** Registers the fused kernels for wasm and cpu (idempotent). */
export function registerFusedKernels(): void {
  if (registered) return;
  for (const be of FUSED_BACKENDS) {
    tf.registerKernel({ kernelName: GELU_KERNEL, backendName: be, kernelFunc: geluKernel(be) as unknown as tf.KernelFunc });
    tf.registerKernel({ kernelName: LAYER_NORM_KERNEL, backendName: be, kernelFunc: layerNormKernel(be) as unknown as tf.KernelFunc });
    tf.registerKernel({ kernelName: LAYER_NORM_GRAD_KERNEL, backendName: be, kernelFunc: layerNormGradKernel(be) as unknown as tf.KernelFunc });
  }
  registered = true;
}

/** Whether the active backend has the fused kernels (registering them on first use). */
export function fusedKernelsAvailable(): boolean {
  registerFusedKernels();
  const b = tf.getBackend();
  return b === "wasm" || b === "cpu";
}

/** Runs a fused kernel by name on the active backend. */
export function runFused(name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap = {}): tf.Tensor[] {
  registerFusedKernels();
  return tf.engine().runKernel(name, inputs, attrs) as unknown as tf.Tensor[];
}
