/**
 * Gradient compression with error feedback, as a GradientReducer over any all-reduce group (the gRPC ring in a
 * worker): this layer decides WHAT each rank contributes; the ring moves and sums it. Framework-free: Float32Array
 * in, Float32Array out.
 *
 *  - topk: each rank keeps the k largest-|x| entries of x = grad + residual per tensor and exchanges them as
 *    (index, value) pairs through an all-gather made of the ring's sum (rank r writes its pairs into slot r of a
 *    zero buffer of N x 2k floats; adding zeros is exact), then every rank scatter-adds all ranks' pairs in rank
 *    order, so the result is bit-identical everywhere. residual = x minus what was sent (exact).
 *  - powersgd (Vogels et al. 2019): per weight M (rows x cols by the parameter's shape), P = M Q, all-reduce P,
 *    orthonormalise P, Q = M^T P, all-reduce Q, M_hat = P Q^T (the sum's rank-r approximation, identical on every
 *    rank); Q is warm-started from the previous step. residual = M - M_hat / N (this rank's share of what was
 *    not transmitted, as PyTorch's PowerSGD hook computes it with averages).
 *
 * Counters (target counts, loss sums), tensors below min_compress_elements and (for powersgd) 1-D tensors always
 * travel uncompressed, in the same collective as the first compressed payload. Residuals and Q are per-rank state:
 * exportState() / importState() carry them through a checkpoint (compression-state.ts writes one file per rank).
 */
import { addInto } from "../../shared/codecs/float32-sum";
import type { GradientReducer, NamedGradient, ParameterShape } from "../../shared/train/reducer";
import { fillNormal, hashString, lowRankEntry, matMul, matTMul, orthonormalizeColumns } from "./linalg";
import { MAX_EXACT_FLOAT32_INDEX, topkCount, topkIndices } from "./topk";

/** Key prefixes of exportState(): error-feedback residuals and PowerSGD warm starts. */
const RESIDUAL_PREFIX = "residual/";
const POWERSGD_Q_PREFIX = "powersgd_q/";

/** Name under which the counters travel (the same as the uncompressed RingReducer's). */
export const COMPRESSION_COUNTERS_TENSOR = "ringtrain.counters";
/** Name under which sumCounts' step counts travel (the same as the uncompressed RingReducer's). */
export const COMPRESSION_STEP_COUNTS_TENSOR = "ringtrain.step_counts";

/** Settings of the compression (config `communication.gradient_compression`). */
export interface GradientCompressionSettings {
  method: "none" | "topk" | "powersgd";
  topk_ratio: number;
  powersgd_rank: number;
  error_feedback: boolean;
  start_step: number;
  min_compress_elements: number;
}

/** Defaults of GradientCompressionSettings (as in the config schema). */
export const DEFAULT_GRADIENT_COMPRESSION: GradientCompressionSettings = {
  method: "none", topk_ratio: 0.01, powersgd_rank: 4, error_feedback: true, start_step: 0, min_compress_elements: 1024,
};

/** The collective this reducer needs: an in-place sum over a group (RingCommunicator satisfies it). */
export interface AllReduceGroup {
  readonly rank: number;
  readonly worldSize: number;
  allReduce(tensors: { name: string; data: Float32Array }[], opts: { step: number; op: "sum"; exact?: boolean }): Promise<void>;
}

/** A contiguous run of a tensor selected on its own, so that indices stay below 2^24. */
interface Block {
  offset: number;
  length: number;
  k: number;
  /** First pair of this block within a rank's slot. */
  pairOffset: number;
}

interface TopkState {
  blocks: Block[];
  /** Pairs per rank (sum of the blocks' k). */
  pairs: number;
  /** N x 2 x pairs floats: slot r holds rank r's (index, value) pairs. */
  gather: Float32Array;
}

interface PowerSgdState {
  rows: number;
  cols: number;
  rank: number;
  p: Float32Array;
  /** Warm start: the previous step's all-reduced Q (cols x rank), identical on every rank. */
  q: Float32Array;
}

/**
 * GradientReducer that compresses large gradients (top-k or PowerSGD, with error feedback) before they meet in
 * the all-reduce. Every rank must be built with the same settings and see the same parameter list.
 */
export class CompressingReducer implements GradientReducer {
  /** Bytes of float32 data handed to the all-reduce by the last reduce() (all collectives of the step). */
  lastBytes = 0;
  /** Wall time of the last reduce(), milliseconds: collectives plus compression and decompression. */
  lastMs = 0;
  /** The same as lastMs (nothing is overlapped with the backward pass). */
  lastTotalMs = 0;
  /** Of lastMs, the time spent inside the collectives. */
  lastCollectiveMs = 0;
  /** Collectives issued by the last reduce(). */
  lastCollectives = 0;
  /** Tensors compressed by the last reduce(). */
  lastCompressedTensors = 0;

  private shapes: Map<string, readonly number[]> | null = null;
  private readonly residuals = new Map<string, Float32Array>();
  private readonly topk = new Map<string, TopkState>();
  private readonly powersgd = new Map<string, PowerSgdState>();
  /** Q matrices from importState(), used when their tensor's PowerSGD state is first built. */
  private readonly importedQ = new Map<string, Float32Array>();
  private scratch = new Float32Array(0);

  /** `halfOnWire`: the group's wire compression is fp16/bf16 (the counters then go in a float32 collective of their own). */
  constructor(private readonly group: AllReduceGroup, readonly settings: GradientCompressionSettings, private readonly halfOnWire = false) {
    const s = settings;
    if (!["none", "topk", "powersgd"].includes(s.method)) throw new Error(`gradient_compression.method: unknown method '${s.method}'`);
    if (!(s.topk_ratio > 0 && s.topk_ratio <= 1)) throw new Error(`gradient_compression.topk_ratio must be in (0, 1], got ${s.topk_ratio}`);
    if (!Number.isInteger(s.powersgd_rank) || s.powersgd_rank < 1) throw new Error(`gradient_compression.powersgd_rank must be a positive integer, got ${s.powersgd_rank}`);
    if (!Number.isInteger(s.start_step) || s.start_step < 0) throw new Error(`gradient_compression.start_step must be a non-negative integer, got ${s.start_step}`);
    if (!Number.isInteger(s.min_compress_elements) || s.min_compress_elements < 0) {
      throw new Error(`gradient_compression.min_compress_elements must be a non-negative integer, got ${s.min_compress_elements}`);
    }
  }

  /** Records every parameter's shape (PowerSGD reshapes each gradient to shape[0] x (product of the rest)). */
  describeParameters(params: readonly ParameterShape[]): void {
    this.shapes = new Map(params.map((p) => [p.name, [...p.shape]]));
  }

  /** This rank's error-feedback residual of a parameter (what it has not yet sent), if it has one. */
  residualOf(name: string): Float32Array | undefined {
    return this.residuals.get(name);
  }

  /**
   * This rank's state, as named copies: `residual/NAME` (error feedback: what it has not yet sent) and
   * `powersgd_q/NAME` (PowerSGD's warm start). Empty before the first compressed step.
   */
  exportState(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    for (const [name, e] of this.residuals) out.set(`${RESIDUAL_PREFIX}${name}`, Float32Array.from(e));
    for (const [name, q] of this.importedQ) out.set(`${POWERSGD_Q_PREFIX}${name}`, Float32Array.from(q));
    for (const [name, st] of this.powersgd) out.set(`${POWERSGD_Q_PREFIX}${name}`, Float32Array.from(st.q));
    return out;
  }

  /**
   * Restores what exportState() returned (before the first reduce()). A residual or Q whose size no longer matches
   * its gradient is a clear error at that tensor's next step; unknown names are refused now.
   */
  importState(state: ReadonlyMap<string, Float32Array>): void {
    for (const [key, data] of state) {
      if (key.startsWith(RESIDUAL_PREFIX)) this.residuals.set(key.slice(RESIDUAL_PREFIX.length), Float32Array.from(data));
      else if (key.startsWith(POWERSGD_Q_PREFIX)) this.importedQ.set(key.slice(POWERSGD_Q_PREFIX.length), Float32Array.from(data));
      else throw new Error(`compression state: unknown entry '${key}' (expected ${RESIDUAL_PREFIX}NAME or ${POWERSGD_Q_PREFIX}NAME)`);
    }
  }

  /** Sums a step's target counts across all ranks before its backward pass (mlm+nsp), uncompressed: they must be exact. */
  async sumCounts(values: Float32Array, step: number): Promise<void> {
    await this.group.allReduce([{ name: COMPRESSION_STEP_COUNTS_TENSOR, data: values }], { step, op: "sum", exact: true });
  }

  /** Sums gradients (compressed where configured) and counters (exactly) across all ranks, in place. */
  async reduce(grads: NamedGradient[], counters: Float32Array, step: number): Promise<void> {
    const t0 = performance.now();
    this.lastBytes = 0;
    this.lastCollectiveMs = 0;
    this.lastCollectives = 0;
    this.lastCompressedTensors = 0;
    const countersTensor = { name: COMPRESSION_COUNTERS_TENSOR, data: counters };
    const method = step < this.settings.start_step ? "none" : this.settings.method;
    const compressed: NamedGradient[] = [];
    const plain: NamedGradient[] = [];
    for (const g of grads) {
      if (g.name === COMPRESSION_COUNTERS_TENSOR) throw new Error(`a gradient may not be named '${COMPRESSION_COUNTERS_TENSOR}'`);
      (method !== "none" && this.compresses(g, method) ? compressed : plain).push(g);
    }
    this.lastCompressedTensors = compressed.length;
    if (method === "topk" && compressed.length > 0) await this.reduceTopk(compressed, plain, countersTensor, step);
    else if (method === "powersgd" && compressed.length > 0) await this.reducePowerSgd(compressed, plain, countersTensor, step);
    else await this.collective([...plain, ...compressed, countersTensor], step);
    this.lastMs = performance.now() - t0;
    this.lastTotalMs = this.lastMs;
  }

  private compresses(g: NamedGradient, method: "topk" | "powersgd"): boolean {
    if (g.data.length === 0 || g.data.length < this.settings.min_compress_elements) return false;
    if (method === "topk") return true;
    const shape = this.shapeOf(g);
    return shape.length >= 2 && shape[0] > 1 && g.data.length / shape[0] > 1;
  }

  private shapeOf(g: NamedGradient): readonly number[] {
    const shape = this.shapes?.get(g.name);
    if (shape === undefined) {
      throw new Error(`powersgd needs the shape of '${g.name}': call describeParameters() with the trained parameters before reduce()`);
    }
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== g.data.length) throw new Error(`gradient '${g.name}' has ${g.data.length} elements but its shape [${shape.join(", ")}] holds ${n}`);
    return shape;
  }

  private async collective(tensors: { name: string; data: Float32Array }[], step: number): Promise<void> {
    for (const t of tensors) this.lastBytes += t.data.byteLength;
    const t0 = performance.now();
    // Half-precision wire compression would round the counters (counts above 2048 in fp16, 256 in bf16): they
    // then travel in a float32 collective of their own.
    const counters = this.halfOnWire ? tensors.filter((t) => t.name === COMPRESSION_COUNTERS_TENSOR) : [];
    await this.group.allReduce(counters.length > 0 ? tensors.filter((t) => t.name !== COMPRESSION_COUNTERS_TENSOR) : tensors, { step, op: "sum" });
    if (counters.length > 0) await this.group.allReduce(counters, { step, op: "sum", exact: true });
    this.lastCollectiveMs += performance.now() - t0;
    this.lastCollectives++;
  }

  /** x = grad + residual in place (error feedback on); returns the residual buffer to fill, or null. */
  private addResidual(g: NamedGradient): Float32Array | null {
    if (!this.settings.error_feedback) return null;
    let e = this.residuals.get(g.name);
    if (e === undefined) {
      e = new Float32Array(g.data.length);
      this.residuals.set(g.name, e);
    } else if (e.length !== g.data.length) {
      throw new Error(`gradient '${g.name}' changed size from ${e.length} to ${g.data.length}`);
    }
    addInto(g.data, e);
    return e;
  }

  // ------------------------------------------------------------------------------------------------- top-k

  private topkState(g: NamedGradient): TopkState {
    const n = g.data.length;
    let st = this.topk.get(g.name);
    if (st !== undefined && st.blocks.reduce((a, b) => a + b.length, 0) === n) return st;
    const blocks: Block[] = [];
    let pairs = 0;
    for (let offset = 0; offset < n; offset += MAX_EXACT_FLOAT32_INDEX) {
      const length = Math.min(MAX_EXACT_FLOAT32_INDEX, n - offset);
      const k = topkCount(length, this.settings.topk_ratio);
      blocks.push({ offset, length, k, pairOffset: pairs });
      pairs += k;
    }
    st = { blocks, pairs, gather: new Float32Array(this.group.worldSize * 2 * pairs) };
    this.topk.set(g.name, st);
    return st;
  }

  private async reduceTopk(compressed: NamedGradient[], plain: NamedGradient[], counters: NamedGradient, step: number): Promise<void> {
    const N = this.group.worldSize;
    const me = this.group.rank;
    const states = compressed.map((g) => this.topkState(g));
    compressed.forEach((g, t) => {
      const x = g.data;
      const e = this.addResidual(g);
      const st = states[t];
      st.gather.fill(0);
      const slot = me * 2 * st.pairs;
      if (e !== null) e.set(x);
      for (const b of st.blocks) {
        if (this.scratch.length < b.length) this.scratch = new Float32Array(b.length);
        if (b.length > MAX_EXACT_FLOAT32_INDEX) throw new Error(`top-k block of ${b.length} elements: indices would not be exact in float32`);
        const idx = topkIndices(x, b.offset, b.length, b.k, this.scratch);
        for (let j = 0; j < idx.length; j++) {
          const at = slot + 2 * (b.pairOffset + j);
          st.gather[at] = idx[j];
          st.gather[at + 1] = x[b.offset + idx[j]];
          if (e !== null) e[b.offset + idx[j]] = 0; // sent: nothing left behind
        }
      }
    });
    await this.collective([...plain, ...compressed.map((g, t) => ({ name: `${g.name}#topk`, data: states[t].gather })), counters], step);
    compressed.forEach((g, t) => {
      const x = g.data;
      const st = states[t];
      x.fill(0);
      for (let r = 0; r < N; r++) {
        const slot = r * 2 * st.pairs;
        for (const b of st.blocks) {
          for (let j = 0; j < b.k; j++) {
            const at = slot + 2 * (b.pairOffset + j);
            const i = st.gather[at];
            if (!(Number.isInteger(i) && i >= 0 && i < b.length)) {
              throw new Error(`top-k: rank ${r} sent index ${i} for '${g.name}' (block of ${b.length} elements at ${b.offset})`);
            }
            x[b.offset + i] += st.gather[at + 1];
          }
        }
      }
    });
  }

  // ---------------------------------------------------------------------------------------------- PowerSGD

  private powerSgdState(g: NamedGradient): PowerSgdState {
    const shape = this.shapeOf(g);
    const rows = shape[0];
    const cols = g.data.length / rows;
    const rank = Math.min(this.settings.powersgd_rank, rows, cols);
    let st = this.powersgd.get(g.name);
    if (st !== undefined && st.rows === rows && st.cols === cols && st.rank === rank) return st;
    const q = new Float32Array(cols * rank);
    const imported = this.importedQ.get(g.name);
    if (imported !== undefined) {
      if (imported.length !== q.length) {
        throw new Error(`compression state: PowerSGD Q of '${g.name}' has ${imported.length} elements, this run needs ${cols} x ${rank} = ${q.length} (was powersgd_rank changed?)`);
      }
      q.set(imported);
      this.importedQ.delete(g.name);
    } else {
      fillNormal(q, hashString(g.name));
    }
    st = { rows, cols, rank, p: new Float32Array(rows * rank), q };
    this.powersgd.set(g.name, st);
    return st;
  }

  private async reducePowerSgd(compressed: NamedGradient[], plain: NamedGradient[], counters: NamedGradient, step: number): Promise<void> {
    const N = this.group.worldSize;
    const states = compressed.map((g) => this.powerSgdState(g));
    const residuals = compressed.map((g) => this.addResidual(g));
    compressed.forEach((g, t) => {
      const st = states[t];
      reviveZeroColumns(st.q, st.cols, st.rank, hashString(g.name) ^ Math.imul(step + 1, 0x9e3779b1));
      matMul(g.data, st.rows, st.cols, st.q, st.rank, st.p);
    });
    await this.collective([...plain, ...compressed.map((g, t) => ({ name: `${g.name}#P`, data: states[t].p })), counters], step);
    compressed.forEach((g, t) => {
      const st = states[t];
      orthonormalizeColumns(st.p, st.rows, st.rank);
      matTMul(g.data, st.rows, st.cols, st.p, st.rank, st.q);
    });
    await this.collective(compressed.map((g, t) => ({ name: `${g.name}#Q`, data: states[t].q })), step);
    compressed.forEach((g, t) => {
      const { rows, cols, rank, p, q } = states[t];
      const m = g.data;
      const e = residuals[t];
      for (let i = 0; i < rows; i++) {
        for (let c = 0; c < cols; c++) {
          const k = i * cols + c;
          const approx = Math.fround(lowRankEntry(p, q, rank, i, c));
          if (e !== null) e[k] = m[k] - approx / N;
          m[k] = approx;
        }
      }
    });
  }
}

/** Columns of Q that are all zero (a gradient that was zero) would stay zero forever: refill them, seeded. */
function reviveZeroColumns(q: Float32Array, cols: number, rank: number, seed: number): void {
  for (let j = 0; j < rank; j++) {
    let zero = true;
    for (let c = 0; c < cols && zero; c++) if (q[c * rank + j] !== 0) zero = false;
    if (zero) fillNormal(q, seed + j, j, rank);
  }
}
