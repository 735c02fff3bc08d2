/** Learning-rate schedules: linear warmup, then linear or cosine decay (HF transformers' definitions). */

export interface LrSchedule {
  /** Peak learning rate, reached at the end of warmup. */
  peakLr: number;
  warmupSteps: number;
  /** Total optimizer steps; the decay reaches minLrRatio * peakLr here. */
  totalSteps: number;
  decay: "linear" | "cosine" | "constant";
  /** Floor of the decay as a fraction of peakLr. Default 0. */
  minLrRatio?: number;
}

/**
 * Learning rate of the update with 0-based index `step` (the number of updates applied before it), as HF's
 * get_{linear,cosine}_schedule_with_warmup: step / warmup during warmup (so the first update has lr 0 when warmup > 0),
 * then decay from peak to the floor at totalSteps. A warmup longer than the run is allowed, as in HF: the rate is
 * then still rising when training ends (launch warns about it).
 */
export function lrAt(s: LrSchedule, step: number): number {
  if (!(step >= 0)) throw new Error(`lrAt: step must be >= 0, got ${step}`);
  if (!(s.warmupSteps >= 0) || !(s.totalSteps >= 0)) {
    throw new Error(`lr schedule needs warmupSteps (${s.warmupSteps}) >= 0 and totalSteps (${s.totalSteps}) >= 0`);
  }
  if (step < s.warmupSteps) return (s.peakLr * step) / s.warmupSteps;
  if (s.decay === "constant") return s.peakLr;
  const floor = s.minLrRatio ?? 0;
  const span = s.totalSteps - s.warmupSteps;
  const progress = span === 0 ? 1 : Math.min(1, (step - s.warmupSteps) / span);
  const shape = s.decay === "linear" ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return s.peakLr * (floor + (1 - floor) * shape);
}
