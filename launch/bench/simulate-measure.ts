/**
 * Measured compute profile for the simulator (`launch bench simulate --compute-from measure`): times the real model
 * (shared/model) and trainer (shared/train) on this machine's tfjs backend.
 *
 * Per-layer times come from differences: the same model with 0 and with L1 = min(L, 2) encoder layers, each timed
 * for forward only and for forward + backward (Trainer.accumulate, which includes copying the gradients into the
 * buffers the reducer sends, as in a real step). layer = (T(L1) - T(0)) / L1; the head (MLM transform, tied
 * decoder over the masked positions, loss) is timed alone on fixed hidden states; embeddings = T(0) - head.
 * The optimizer (Trainer.applyUpdate with the identity reducer: normalise, clip, AdamW) is timed at 0 and L1 layers
 * and interpolated linearly in the parameter count. Medians over `reps` after one warm-up.
 */
import * as tf from "@tensorflow/tfjs";
import { selectBackend, type BackendName } from "../../shared/backend/select";
import { asInputError } from "../input-error";
import { addInto } from "../../shared/codecs/float32-sum";
import { BertModel, mlmLogits, maskedPositions } from "../../shared/model/bert";
import { softmaxCrossEntropySum } from "../../shared/model/ops/cross-entropy";
import { Rng } from "../../shared/rng";
import type { Batch } from "../../shared/train/batch";
import { pretrainingObjective } from "../../shared/train/objective";
import { Trainer } from "../../shared/train/trainer";
import { gradientTensors, workloadConfig, type ComputeProfile, type PhaseTimes, type SimWorkload } from "./simulate-model";
import { median, syntheticMlmBatch } from "./common";

/** Options of measureCompute. */
export interface MeasureOptions {
  backend: BackendName;
  /** Timed repetitions per quantity (median); default 3. */
  reps?: number;
  /** Dropout rate during the timed passes; default 0 (as the validation runs). */
  dropout?: number;
  /** Appended to the profile's source (e.g. "2 concurrent processes"). */
  note?: string;
}

/** Raw medians behind a measured profile (ms per micro-batch). */
export interface MeasureDetail {
  backend: string;
  layersMeasured: number;
  forwardMs0: number;
  fwdBwdMs0: number;
  forwardMsL: number;
  fwdBwdMsL: number;
  headForwardMs: number;
  headFwdBwdMs: number;
  optimizerMs0: number;
  optimizerMsL: number;
  /** Every timed forward+backward of the model with layersMeasured layers, in order (for straggler statistics). */
  fwdBwdRepsMsL: number[];
}

/** A synthetic MLM micro-batch: random ids in [5, V), round(maskFraction * B*T) positions masked with id 4. */
export function syntheticBatch(w: SimWorkload, seed: number): Batch {
  return syntheticMlmBatch(new Rng(seed, 0x51a), w.microBatch, w.seqLen, w.vocabSize, { firstId: 5, maskId: 4 }, w.maskFraction ?? 0.15);
}

function timeMs(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

async function timeAsyncMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Times forward, forward+backward and the optimizer of the workload's model on this machine; see the file comment. */
export async function measureCompute(w: SimWorkload, opts: MeasureOptions): Promise<{ profile: ComputeProfile; detail: MeasureDetail }> {
  const backend = await selectBackend(opts.backend).catch((e: unknown) => {
    throw asInputError(e, "--backend: ");
  });
  const reps = Math.max(1, opts.reps ?? 3);
  const full = workloadConfig(w);
  const L = full.numHiddenLayers;
  const L1 = Math.max(1, Math.min(L, 2));
  const dropoutRate = opts.dropout ?? 0;
  const batch = syntheticBatch(w, 1);
  const schedule = { peakLr: 1e-4, warmupSteps: 0, totalSteps: 1e9, decay: "constant" as const };
  const build = (layers: number) => {
    const cfg = { ...full, numHiddenLayers: layers };
    const model = BertModel.create(cfg, 7, { pooler: true });
    const trainer = new Trainer(model, { schedule, adamw: { weightDecay: 0.01 }, maxGradNorm: 1, dropoutRate });
    return { model, trainer, params: gradientTensors(cfg).reduce((s, t) => s + t.elements, 0) };
  };
  const m0 = build(0);
  const m1 = build(L1);
  const fwd = (m: ReturnType<typeof build>): number =>
    timeMs(() => tf.tidy(() => void pretrainingObjective(m.model, batch, { training: true, dropoutRate }, 1).total.dataSync()));
  const fb = (m: ReturnType<typeof build>): number => {
    const t = timeMs(() => m.trainer.accumulate(batch));
    m.trainer.zeroGrad();
    return t;
  };
  const opt = async (m: ReturnType<typeof build>): Promise<number> => {
    m.trainer.accumulate(batch);
    return timeAsyncMs(() => m.trainer.applyUpdate());
  };
  // The head alone on fixed hidden states: gradients w.r.t. its parameters and the tied word embedding.
  const { positions, labels } = maskedPositions(batch.mlmLabels, full.vocabSize);
  const hidden = tf.randomNormal([batch.batchSize * batch.seqLen, full.hiddenSize]) as tf.Tensor2D;
  const headVars = ["cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias", "cls.predictions.bias", "bert.embeddings.word_embeddings.weight"].map((n) => m0.model.param(n));
  const headBufs = headVars.map((v) => new Float32Array(v.size));
  const headF = (): number => timeMs(() => tf.tidy(() => void softmaxCrossEntropySum(mlmLogits(m0.model, hidden, positions), labels).dataSync()));
  const headFB = (): number =>
    timeMs(() =>
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => softmaxCrossEntropySum(mlmLogits(m0.model, hidden, positions), labels), headVars);
        headVars.forEach((v, i) => {
          addInto(headBufs[i], grads[v.name].dataSync() as Float32Array);
        });
      }),
    );
  const s = { f0: [] as number[], fb0: [] as number[], f1: [] as number[], fb1: [] as number[], hf: [] as number[], hfb: [] as number[], o0: [] as number[], o1: [] as number[] };
  for (let r = 0; r <= reps; r++) {
    const keep = r > 0; // round 0 is the warm-up
    const rec = (arr: number[], v: number): void => void (keep && arr.push(v));
    rec(s.f0, fwd(m0));
    rec(s.fb0, fb(m0));
    rec(s.f1, fwd(m1));
    rec(s.fb1, fb(m1));
    rec(s.hf, headF());
    rec(s.hfb, headFB());
    rec(s.o0, await opt(m0));
    rec(s.o1, await opt(m1));
  }
  hidden.dispose();
  m0.model.dispose();
  m1.model.dispose();
  const d: MeasureDetail = {
    backend, layersMeasured: L1,
    forwardMs0: median(s.f0), fwdBwdMs0: median(s.fb0), forwardMsL: median(s.f1), fwdBwdMsL: median(s.fb1),
    headForwardMs: median(s.hf), headFwdBwdMs: median(s.hfb), optimizerMs0: median(s.o0), optimizerMsL: median(s.o1), fwdBwdRepsMsL: s.fb1,
  };
  const phase = (f: number, total: number): PhaseTimes => ({ forwardMs: Math.max(0, f), backwardMs: Math.max(0, total - Math.max(0, f)) });
  const layer = phase((d.forwardMsL - d.forwardMs0) / L1, (d.fwdBwdMsL - d.fwdBwdMs0) / L1);
  const head = phase(d.headForwardMs, d.headFwdBwdMs);
  const embeddings = phase(d.forwardMs0 - d.headForwardMs, d.fwdBwdMs0 - d.headFwdBwdMs);
  const pFull = gradientTensors(full).reduce((a, t) => a + t.elements, 0);
  const optimizerMs = Math.max(0, d.optimizerMs0 + ((d.optimizerMsL - d.optimizerMs0) * (pFull - m0.params)) / (m1.params - m0.params));
  return {
    profile: {
      embeddings, layers: Array.from({ length: L }, () => ({ ...layer })), head, optimizerMs,
      source: `measured: tfjs-${backend}, ${w.preset}, seq ${w.seqLen}, micro-batch ${w.microBatch}, layers 0 and ${L1} timed${opts.note ? `, ${opts.note}` : ""}`,
    },
    detail: d,
  };
}
