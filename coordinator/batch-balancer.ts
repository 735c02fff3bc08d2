/**
 * Adaptive division of the global batch between ranks (batch.balance: adaptive).
 *
 * A synchronous step lasts as long as its slowest rank's path to the all-reduce. Machines, and here even the two
 * vCPUs of one VM, are not equally fast, so an even split makes every rank wait for the slowest. The balancer
 * keeps a running estimate of each rank's compute time per sequence and of its fixed time per step (optimizer,
 * data wait), and divides the next global batch so that every rank is predicted to finish together. The global
 * batch itself (which sequences, in which order) does not change, so neither do the loss and the gradient.
 *
 * Splits are decided `lag` steps ahead (see balanceLag) and remembered, so every rank gets the same split of a step.
 */
import { evenSplit } from "../shared/data/sharding";

/** What one rank reported for a step. */
export interface RankObservation {
  rank: number;
  sequences: number;
  compute_ms: number;
  /** Per-step time that does not grow with the rank's share (optimizer, data wait). */
  fixed_ms: number;
}

/** Weight of the newest step in the running estimates. */
const SMOOTHING = 0.3;
/**
 * A new split replaces the current one only if it is predicted to shorten the step by this share: step-to-step
 * noise on a shared machine (±10 %) must not move sequences back and forth, which costs more than it gains.
 */
const MIN_GAIN = 0.05;

export class BatchBalancer {
  private readonly splits = new Map<number, number[]>();
  /** The split most recently decided (the even one until a better one is predicted). */
  private current: number[];
  private perSequenceMs: number[] | undefined;
  private fixedMs: number[] | undefined;

  constructor(
    private readonly globalBatchSize: number,
    private readonly worldSize: number,
    readonly lag: number,
    private readonly adaptive: boolean,
    /** Steps up to this one run the even split (nothing measured yet, or already announced as even). */
    private readonly firstStep: number,
  ) {
    this.current = evenSplit(globalBatchSize, worldSize);
  }

  /** Sequences per rank at `step`; an adaptive split is fixed the first time it is asked for. */
  countsFor(step: number): number[] {
    const known = this.splits.get(step);
    if (known !== undefined) return known;
    const perSeq = this.perSequenceMs;
    const fixed = this.fixedMs;
    let counts = this.current;
    if (this.adaptive && step > this.firstStep + this.lag && perSeq !== undefined && fixed !== undefined) {
      const candidate = balancedSplit(this.globalBatchSize, perSeq, fixed);
      if (predictedStepMs(candidate, perSeq, fixed) < (1 - MIN_GAIN) * predictedStepMs(this.current, perSeq, fixed)) counts = candidate;
    }
    this.current = counts;
    this.splits.set(step, counts);
    for (const s of this.splits.keys()) if (s < step - 2 * this.lag) this.splits.delete(s);
    return counts;
  }

  /**
   * Folds one completed step (every rank's report) into the running estimates. The first step of a run is left
   * out: it pays one-off costs (kernel compilation, caches) that say nothing about a rank's speed.
   */
  observe(step: number, reports: readonly RankObservation[]): void {
    if (!this.adaptive || step <= this.firstStep + 1) return;
    if (reports.length !== this.worldSize || reports.some((r) => r.sequences <= 0 || !(r.compute_ms > 0))) return;
    const perSeq = new Array<number>(this.worldSize);
    const fixed = new Array<number>(this.worldSize);
    for (const r of reports) {
      perSeq[r.rank] = r.compute_ms / r.sequences;
      fixed[r.rank] = Math.max(0, r.fixed_ms);
    }
    const blend = (old: number[] | undefined, now: number[]): number[] => (old === undefined ? now : old.map((o, i) => o + SMOOTHING * (now[i] - o)));
    this.perSequenceMs = blend(this.perSequenceMs, perSeq);
    this.fixedMs = blend(this.fixedMs, fixed);
  }
}

/** The slowest rank's predicted time to the all-reduce under `counts`. */
export function predictedStepMs(counts: readonly number[], perSequenceMs: readonly number[], fixedMs: readonly number[]): number {
  return Math.max(...counts.map((c, r) => fixedMs[r] + c * perSequenceMs[r]));
}

/**
 * Divides `total` sequences so that fixed[r] + counts[r] * perSequence[r] is as equal as possible across ranks,
 * every rank keeping at least one sequence; integer counts by largest remainder. Pure, for tests.
 */
export function balancedSplit(total: number, perSequenceMs: readonly number[], fixedMs: readonly number[]): number[] {
  const n = perSequenceMs.length;
  if (total < n) throw new Error(`cannot give each of ${n} ranks a sequence out of ${total}`);
  if (perSequenceMs.some((c) => !(c > 0 && Number.isFinite(c)))) return evenSplit(total, n);
  // Water-filling: finish time T with sum_r max(1, (T - fixed_r) / c_r) = total; ranks pinned at 1 drop out.
  const pinned = new Array<boolean>(n).fill(false);
  let ideal = new Array<number>(n).fill(1);
  for (let round = 0; round < n; round++) {
    let inv = 0;
    let acc = 0;
    let left = total;
    for (let r = 0; r < n; r++) {
      if (pinned[r]) left -= 1;
      else {
        inv += 1 / perSequenceMs[r];
        acc += fixedMs[r] / perSequenceMs[r];
      }
    }
    const finish = (left + acc) / inv;
    ideal = perSequenceMs.map((c, r) => (pinned[r] ? 1 : (finish - fixedMs[r]) / c));
    const low = ideal.findIndex((x, r) => !pinned[r] && x < 1);
    if (low < 0) break;
    pinned[low] = true;
  }
  const counts = ideal.map((x) => Math.max(1, Math.floor(x)));
  let missing = total - counts.reduce((a, b) => a + b, 0);
  const byRemainder = ideal.map((x, r) => ({ r, rem: x - Math.floor(x) })).sort((a, b) => b.rem - a.rem || a.r - b.r);
  for (let i = 0; missing > 0; i = (i + 1) % n) {
    counts[byRemainder[i].r] += 1;
    missing -= 1;
  }
  for (let i = n - 1; missing < 0; i = (i + n - 1) % n) {
    const r = byRemainder[i].r;
    if (counts[r] > 1) {
      counts[r] -= 1;
      missing += 1;
    }
  }
  return counts;
}
