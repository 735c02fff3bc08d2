/**
 * The scaling simulator of `launch bench simulate` (docs/SCALING.md): pure arithmetic, no tfjs.
 *
 * A data-parallel step on N GPUs is modelled as
 *   forward (embeddings, encoder layers, head) -> backward (head, layers L-1..0, embeddings) -> all-reduce of the
 *   gradient buckets -> optimizer,
 * with the buckets all-reduced one after the other (FIFO, as on one NCCL stream / one ring). With `overlap`, bucket
 * k may start as soon as every gradient in it exists (reverse layer order; the word embedding is tied to the MLM
 * decoder, so its gradient is complete only at the end of the backward pass); without it, all start after the
 * backward pass. Buckets are always packed in gradient-ready order (reverse registration order, as DDP does), so
 * overlap on/off differ only in start times.
 *
 * Communication: the alpha-beta model per ring hop. A flat ring of N ranks moving S bytes takes
 *   t = 2(N-1)·α + 2(N-1)/N·S·β + γ
 * (γ: fixed cost per bucket). For a flat ring across nodes, β = max(β_nic / g, β_intra, β_sw) (g channels, one
 * per NIC) and α = α_sw + the mean hop latency (M of the N hops cross nodes). The hierarchical ring (g GPUs per
 * node, M nodes) is an intra-node reduce-scatter, g concurrent inter-node rings over S/g each (one per local rank
 * and NIC), and an intra-node all-gather:
 *   t = 2(g-1)·(α_i + S/g·β_i) + 2(M-1)·(α_e + S/(gM)·β_e) + γ.
 * Link terms come from the network (latency, bandwidth); software terms (α_sw, β_sw, γ) from a least-squares fit to
 * measured all-reduce times. Per hop, α = α_sw + link latency and β = max(β_sw, link β): chunks are pipelined, so the
 * slower of the software and the wire sets the per-byte pace.
 */
import { BERT_PRESETS, bertConfig, type BertConfig } from "../../shared/model/config";
import { bertParamSpecs } from "../../shared/model/params";

/** Encoder shapes the simulator knows: ringtrain's presets plus BERT-large (Devlin et al. 2019). */
export const SIM_PRESETS: Record<string, { numHiddenLayers: number; hiddenSize: number; numAttentionHeads: number; intermediateSize: number }> = {
  ...Object.fromEntries(Object.entries(BERT_PRESETS).map(([k, v]) => [k, { ...v, intermediateSize: 4 * v.hiddenSize }])),
  "bert-large": { numHiddenLayers: 24, hiddenSize: 1024, numAttentionHeads: 16, intermediateSize: 4096 },
};

/** Model, sequence and batch of one simulated worker. */
export interface SimWorkload {
  preset: string;
  vocabSize: number;
  seqLen: number;
  /** Sequences per micro-batch per GPU. */
  microBatch: number;
  /** Micro-batches per optimizer step (gradient accumulation); default 1. */
  accumulation?: number;
  /** Share of tokens that are MLM targets (the head runs on these only); default 0.15. */
  maskFraction?: number;
}

/** The BertConfig of a workload (the same parameter list ringtrain trains: pooler included, no NSP head). */
export function workloadConfig(w: SimWorkload): BertConfig {
  const shape = SIM_PRESETS[w.preset];
  if (shape === undefined) throw new Error(`unknown model preset '${w.preset}'; known: ${Object.keys(SIM_PRESETS).join(", ")}`);
  return bertConfig({ ...shape }, w.vocabSize, { maxPositionEmbeddings: Math.max(512, w.seqLen) });
}

/** Where a gradient tensor is produced in the backward pass. */
export type GradGroup = { kind: "embeddings" } | { kind: "layer"; index: number } | { kind: "head" };

/** One gradient tensor as the reducer sees it, in registration order. */
export interface GradTensor {
  name: string;
  elements: number;
  group: GradGroup;
}

/** Every gradient tensor that travels (ringtrain all-reduces all trainable parameters, pooler included). */
export function gradientTensors(cfg: BertConfig): GradTensor[] {
  return bertParamSpecs(cfg, { pooler: true, nsp: false }).map((s) => {
    const m = /^bert\.encoder\.layer\.(\d+)\./.exec(s.name);
    const group: GradGroup = s.name.startsWith("bert.embeddings.") ? { kind: "embeddings" } : m ? { kind: "layer", index: Number(m[1]) } : { kind: "head" };
    return { name: s.name, elements: s.shape.reduce((a, b) => a * b, 1), group };
  });
}

/** Forward and backward time of one part of the model for one micro-batch, in ms. */
export interface PhaseTimes {
  forwardMs: number;
  backwardMs: number;
}

/** Compute time per part for one micro-batch on one GPU, and the optimizer's time per step. */
export interface ComputeProfile {
  embeddings: PhaseTimes;
  /** One entry per encoder layer, layer 0 first. */
  layers: PhaseTimes[];
  /** MLM head (transform, tied decoder over the target positions, loss); pooler has no work in MLM pretraining. */
  head: PhaseTimes;
  optimizerMs: number;
  /** Where the numbers come from (e.g. "measured: wasm, 2 concurrent processes" or "h100: 989 TFLOP/s x MFU 0.4"). */
  source: string;
}

/** FLOPs of the forward pass of each part for one micro-batch (the matmuls; backward = 2x forward). */
export function forwardFlops(w: SimWorkload): { embeddings: number; layer: number; head: number } {
  const cfg = workloadConfig(w);
  const H = cfg.hiddenSize;
  const tokens = w.microBatch * w.seqLen;
  const targets = Math.round((w.maskFraction ?? 0.15) * tokens);
  return {
    embeddings: 0, // lookups and a LayerNorm: memory-bound, no matmul FLOPs
    layer: 2 * tokens * (4 * H * H + 2 * H * cfg.intermediateSize) + 4 * w.microBatch * w.seqLen * w.seqLen * H,
    head: 2 * targets * (H * H + H * cfg.vocabSize),
  };
}

/** Assumptions of the FLOP-derived (GPU) compute profile. */
export interface FlopsAssumptions {
  /** Peak dense matmul throughput in TFLOP/s (H100 SXM BF16: 989). */
  peakTflops: number;
  /** Model-FLOPs utilisation achieved on the matmuls (0..1). */
  mfu: number;
  /** HBM bandwidth in GB/s for the memory-bound optimizer (H100 SXM: 3350). */
  memoryGBps: number;
  /** Bytes moved per parameter by the AdamW step (fp32 param, grad, m, v read; param, m, v written: 28). */
  optimizerBytesPerParam: number;
  /** Share of the memory bandwidth the optimizer achieves (0..1). */
  memoryEfficiency: number;
}

/** H100 SXM defaults: 989 TFLOP/s BF16 dense, MFU 0.40, 3.35 TB/s HBM3 at 50 % for AdamW. */
export const H100_ASSUMPTIONS: FlopsAssumptions = { peakTflops: 989, mfu: 0.4, memoryGBps: 3350, optimizerBytesPerParam: 28, memoryEfficiency: 0.5 };

/** A compute profile derived from FLOPs at a stated peak and MFU (see FlopsAssumptions). */
export function flopsComputeProfile(w: SimWorkload, a: FlopsAssumptions = H100_ASSUMPTIONS): ComputeProfile {
  const f = forwardFlops(w);
  const cfg = workloadConfig(w);
  const rate = a.peakTflops * 1e12 * a.mfu; // FLOP/s
  const phase = (fwd: number): PhaseTimes => ({ forwardMs: (fwd / rate) * 1e3, backwardMs: ((2 * fwd) / rate) * 1e3 });
  const params = gradientTensors(cfg).reduce((s, t) => s + t.elements, 0);
  return {
    embeddings: phase(f.embeddings),
    layers: Array.from({ length: cfg.numHiddenLayers }, () => phase(f.layer)),
    head: phase(f.head),
    optimizerMs: ((params * a.optimizerBytesPerParam) / (a.memoryGBps * 1e9 * a.memoryEfficiency)) * 1e3,
    source: `flops: ${a.peakTflops} TFLOP/s peak x MFU ${a.mfu}; optimizer ${a.optimizerBytesPerParam} B/param at ${a.memoryGBps} GB/s x ${a.memoryEfficiency}`,
  };
}

/** One network link class: bandwidth per GPU in Gbit/s (Infinity: free) and one-way latency per hop in µs. */
export interface Link {
  bandwidthGbit: number;
  latencyUs: number;
}

/** The cluster network. */
export interface NetworkSpec {
  gpusPerNode: number;
  /** NVLink-class link between GPUs of one node (per GPU, per direction). */
  intra: Link;
  /** NIC bandwidth per GPU (one NIC per GPU, as on 8 x H100 nodes) and per-hop latency between nodes. */
  inter: Link;
  topology: "ring" | "hierarchical";
}

/** Software cost of the collective implementation (fitted): per hop, per byte, per bucket. */
export interface SoftwareCost {
  alphaUs: number;
  betaNsPerByte: number;
  bucketUs: number;
}

/** No software cost beyond the wire (an idealised NCCL). */
export const ZERO_SOFTWARE: SoftwareCost = { alphaUs: 0, betaNsPerByte: 0, bucketUs: 0 };

/** Seconds per byte of a link (0 for infinite bandwidth). */
function linkBeta(l: Link): number {
  return Number.isFinite(l.bandwidthGbit) ? 8 / (l.bandwidthGbit * 1e9) : 0;
}

/**
 * Time (seconds) of one all-reduce of `bytes` over `n` GPUs. `oversubscription` >= 1 multiplies the software
 * per-byte cost (ranks sharing CPU cores: N processes on C cores give max(1, N/C)).
 */
export function allReduceSeconds(bytes: number, n: number, net: NetworkSpec, sw: SoftwareCost = ZERO_SOFTWARE, oversubscription = 1): number {
  if (n <= 1 || bytes <= 0) return 0;
  const g = Math.min(net.gpusPerNode, n);
  if (n > g && n % g !== 0) throw new Error(`${n} GPUs is not a whole number of nodes of ${g} GPUs`);
  const m = n / g;
  const aSw = sw.alphaUs * 1e-6;
  const bSw = sw.betaNsPerByte * 1e-9 * oversubscription;
  const aI = aSw + net.intra.latencyUs * 1e-6;
  const bI = Math.max(bSw, linkBeta(net.intra));
  const aE = aSw + net.inter.latencyUs * 1e-6;
  const bE = Math.max(bSw, linkBeta(net.inter));
  const fixed = sw.bucketUs * 1e-6;
  if (m === 1) return 2 * (n - 1) * (aI + (bytes / n) * bI) + fixed; // one node: a ring over the intra links
  if (net.topology === "hierarchical") {
    const intra = 2 * (g - 1) * (aI + (bytes / g) * bI); // reduce-scatter + all-gather inside the node
    const inter = 2 * (m - 1) * (aE + (bytes / (g * m)) * bE); // g concurrent rings over S/g, one NIC each
    return intra + inter + fixed;
  }
  // Flat ring over all N GPUs, run as g channels of S/g (NCCL style) so every NIC carries one channel's
  // node-crossing hop. Bandwidth: per step every hop moves its share in lockstep, so the slowest resource sets the
  // pace: the NIC (S/(gN) per channel), the intra-node link (S/N for all channels together) or the software (S/N).
  // Latency: a chunk passes every hop of the ring, M of the N hops between nodes, so per step the average hop
  // latency (M·lat_e + (N-M)·lat_i)/N applies, plus the software's α.
  const hopLatency = (m * net.inter.latencyUs + (n - m) * net.intra.latencyUs) * 1e-6 / n;
  const perByte = Math.max(linkBeta(net.inter) / g, linkBeta(net.intra), bSw);
  return 2 * (n - 1) * (aSw + hopLatency + (bytes / n) * perByte) + fixed;
}

/** One fusion bucket: its bytes and when (ms after the step starts) its last gradient exists. */
export interface SimBucket {
  bytes: number;
  readyMs: number;
  tensors: number;
}

/** Packs tensors in gradient-ready order (reverse registration order) into buckets of about bucketBytes (never split). */
export function planSimBuckets(tensors: readonly GradTensor[], readyMs: (t: GradTensor) => number, bucketBytes: number, bytesPerElement = 4): SimBucket[] {
  const out: SimBucket[] = [];
  let cur: SimBucket | null = null;
  for (let i = tensors.length - 1; i >= 0; i--) {
    const t = tensors[i];
    const b = t.elements * bytesPerElement;
    if (cur === null || (cur.bytes > 0 && cur.bytes + b > bucketBytes)) {
      cur = { bytes: 0, readyMs: 0, tensors: 0 };
      out.push(cur);
    }
    cur.bytes += b;
    cur.tensors++;
    cur.readyMs = Math.max(cur.readyMs, readyMs(t));
  }
  return out;
}

/** Everything one simulated step depends on besides N. */
export interface SimSpec {
  workload: SimWorkload;
  compute: ComputeProfile;
  network: NetworkSpec;
  software?: SoftwareCost;
  bucketBytes: number;
  overlap: boolean;
  /** Bytes per gradient element on the wire (4: fp32; 2: fp16/bf16 compression). Default 4. */
  wireBytesPerElement?: number;
  /** Multiplier on the software per-byte cost for a given N (CPU-core sharing); default 1. */
  oversubscription?: (n: number) => number;
}

/** Predicted step of N GPUs. */
export interface SimResult {
  gpus: number;
  nodes: number;
  stepMs: number;
  computeMs: number;
  optimizerMs: number;
  /** Sum of the bucket all-reduce times (network busy time). */
  commMs: number;
  /** Communication not hidden behind compute: stepMs - computeMs - optimizerMs. */
  exposedCommMs: number;
  buckets: number;
  /** Weak-scaling efficiency: step time of 1 GPU / step time of N GPUs. */
  efficiency: number;
  /** Tokens per second over all GPUs. */
  tokensPerS: number;
}

/** Total forward+backward ms of one micro-batch. */
export function microBatchMs(c: ComputeProfile): number {
  const sum = (p: PhaseTimes): number => p.forwardMs + p.backwardMs;
  return sum(c.embeddings) + c.layers.reduce((a, l) => a + sum(l), 0) + sum(c.head);
}

/** Simulates one optimizer step on `gpus` GPUs. */
export function simulateStep(spec: SimSpec, gpus: number): SimResult {
  const cfg = workloadConfig(spec.workload);
  const c = spec.compute;
  if (c.layers.length !== cfg.numHiddenLayers) throw new Error(`compute profile has ${c.layers.length} layers, the model ${cfg.numHiddenLayers}`);
  const accumulation = spec.workload.accumulation ?? 1;
  const micro = microBatchMs(c);
  // The last micro-batch's backward pass: head, then layers L-1..0, then embeddings. Earlier micro-batches
  // (accumulation) only add their full time before it: their gradients are not final.
  const fwd = c.embeddings.forwardMs + c.layers.reduce((a, l) => a + l.forwardMs, 0) + c.head.forwardMs;
  const lastStart = (accumulation - 1) * micro + fwd;
  const headReady = lastStart + c.head.backwardMs;
  const layerReady: number[] = new Array<number>(c.layers.length);
  let t = headReady;
  for (let l = c.layers.length - 1; l >= 0; l--) {
    t += c.layers[l].backwardMs;
    layerReady[l] = t;
  }
  const computeMs = accumulation * micro;
  const ready = (g: GradTensor): number => {
    if (!spec.overlap) return computeMs;
    // The word embedding is tied to the MLM decoder: its gradient (and every embedding's) is final at the end.
    if (g.group.kind === "embeddings") return computeMs;
    if (g.group.kind === "head") return headReady;
    return layerReady[g.group.index];
  };
  const buckets = planSimBuckets(gradientTensors(cfg), ready, spec.bucketBytes, spec.wireBytesPerElement ?? 4);
  const over = spec.oversubscription?.(gpus) ?? 1;
  let busyUntil = 0;
  let commMs = 0;
  for (const b of buckets) {
    const dt = allReduceSeconds(b.bytes, gpus, spec.network, spec.software, over) * 1e3;
    commMs += dt;
    busyUntil = Math.max(busyUntil, b.readyMs) + dt;
  }
  const stepMs = Math.max(computeMs, busyUntil) + c.optimizerMs;
  const single = computeMs + c.optimizerMs;
  const g = Math.min(spec.network.gpusPerNode, gpus);
  return {
    gpus,
    nodes: Math.ceil(gpus / g),
    stepMs,
    computeMs,
    optimizerMs: c.optimizerMs,
    commMs,
    // never below 0: at 1 GPU (no all-reduce) the difference is 0 up to rounding, which printed as "-0.00"
    exposedCommMs: Math.max(0, stepMs - computeMs - c.optimizerMs),
    buckets: buckets.length,
    efficiency: single / stepMs,
    tokensPerS: (gpus * accumulation * spec.workload.microBatch * spec.workload.seqLen) / (stepMs / 1e3),
  };
}

/** One measured all-reduce: world size, bytes, seconds (the slowest rank's median). */
export interface AllReduceSample {
  n: number;
  bytes: number;
  seconds: number;
}

/** A fitted software cost and how well it fits. */
export interface FitResult extends SoftwareCost {
  /** Root-mean-square relative error of the fit over the samples. */
  rmsRelError: number;
  samples: number;
  /** Cores of the machine the samples came from (oversubscription = max(1, N / cores)); Infinity: not modelled. */
  cores: number;
}

/** Solves the k x k system A x = b (Gaussian elimination with partial pivoting); null when singular. */
function solve(a: number[][], b: number[]): number[] | null {
  const k = b.length;
  const m = a.map((row, i) => [...row, b[i]]);
  for (let col = 0; col < k; col++) {
    let piv = col;
    for (let r = col + 1; r < k; r++) if (Math.abs(m[r][col]) > Math.abs(m[piv][col])) piv = r;
    if (Math.abs(m[piv][col]) < 1e-300) return null;
    [m[col], m[piv]] = [m[piv], m[col]];
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = m[r][col] / m[col][col];
      for (let c2 = col; c2 <= k; c2++) m[r][c2] -= f * m[col][c2];
    }
  }
  return m.map((row, i) => row[k] / row[i]);
}

/**
 * Least-squares fit of t = 2(N-1)·α + 2(N-1)/N·S·β·max(1, N/cores) + γ to measured all-reduce times, minimising the
 * RELATIVE error (times span orders of magnitude). All three are kept >= 0: every subset of the parameters is
 * fitted and the best non-negative solution wins (an exact NNLS for three unknowns).
 */
export function fitAlphaBeta(samples: readonly AllReduceSample[], cores = Infinity): FitResult {
  const use = samples.filter((s) => s.n >= 2 && s.bytes > 0 && s.seconds > 0 && Number.isFinite(s.seconds));
  if (use.length < 2) throw new Error(`need at least 2 all-reduce samples with N >= 2 to fit, got ${use.length}`);
  const feats = use.map((s) => [2 * (s.n - 1), ((2 * (s.n - 1)) / s.n) * s.bytes * Math.max(1, s.n / cores), 1]);
  let best: { x: number[]; err: number } | null = null;
  for (let mask = 1; mask < 8; mask++) {
    const cols = [0, 1, 2].filter((j) => mask & (1 << j));
    const ata = cols.map(() => cols.map(() => 0));
    const atb = cols.map(() => 0);
    use.forEach((s, i) => {
      const w = 1 / (s.seconds * s.seconds); // weight of a squared relative error
      cols.forEach((cj, a) => {
        atb[a] += w * feats[i][cj] * s.seconds;
        cols.forEach((ck, b) => (ata[a][b] += w * feats[i][cj] * feats[i][ck]));
      });
    });
    const sol = solve(ata, atb);
    if (sol === null || sol.some((v) => v < 0)) continue;
    const x = [0, 0, 0];
    cols.forEach((cj, a) => (x[cj] = sol[a]));
    const err = use.reduce((acc, s, i) => acc + ((feats[i][0] * x[0] + feats[i][1] * x[1] + feats[i][2] * x[2] - s.seconds) / s.seconds) ** 2, 0);
    if (best === null || err < best.err) best = { x, err };
  }
  if (best === null) throw new Error("alpha-beta fit failed (degenerate samples)");
  return {
    alphaUs: best.x[0] * 1e6,
    betaNsPerByte: best.x[1] * 1e9,
    bucketUs: best.x[2] * 1e6,
    rmsRelError: Math.sqrt(best.err / use.length),
    samples: use.length,
    cores,
  };
}
