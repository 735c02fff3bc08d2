/** The micro-batches a rank will be asked to train, derived from the same sharding the coordinator uses. */
import { DataSharder, evenSplit, splitOffset } from "../../shared/data/sharding";
import type { StepPlan as BatchPlan } from "../../shared/data/objective";

/**
 * How each step's global batch is divided between ranks, as this worker knows it: the even split, except for the
 * steps whose split the coordinator announced (batch.balance: adaptive; StepPlan.split_for_step).
 */
export class SplitSchedule {
  private readonly announced = new Map<number, number[]>();

  /** `lastEvenStep`: with balancing, every later step must be announced before its batches are prepared. */
  constructor(
    private readonly globalBatchSize: number,
    private readonly worldSize: number,
    private readonly balanced: boolean,
    private readonly lastEvenStep: number,
  ) {}

  /** Records the coordinator's split of `step` (sequences per rank). */
  announce(step: number, counts: readonly number[]): void {
    const total = counts.reduce((a, b) => a + b, 0);
    if (counts.length !== this.worldSize || total !== this.globalBatchSize || counts.some((c) => !Number.isInteger(c) || c < 1)) {
      throw new Error(`coordinator announced an invalid split of step ${step}: [${counts.join(", ")}] for ${this.worldSize} ranks and a global batch of ${this.globalBatchSize}`);
    }
    this.announced.set(step, [...counts]);
  }

  /** Sequences per rank at `step` (forgotten afterwards: each step is prepared once). */
  take(step: number): number[] {
    const counts = this.announced.get(step);
    if (counts !== undefined) {
      this.announced.delete(step);
      return counts;
    }
    if (this.balanced && step > this.lastEvenStep) {
      throw new Error(`the split of step ${step} between ranks was not announced before its batches were prepared (batch.balance: adaptive; prefetch ran past the balancing lag)`);
    }
    return evenSplit(this.globalBatchSize, this.worldSize);
  }
}

/** The micro-batches of this rank from `firstStep` to `maxSteps`, as the coordinator will plan them. */
export function* microBatchPlans(sharder: DataSharder, firstStep: number, maxSteps: number, rank: number, splits: SplitSchedule, micro: number): Generator<BatchPlan> {
  for (let step = firstStep; step <= maxSteps; step++) {
    const counts = splits.take(step);
    const { indices, epochs } = sharder.slice(step, splitOffset(counts, rank), counts[rank]);
    for (let i = 0; i < indices.length; i += micro) yield { indices: indices.slice(i, i + micro), epoch: epochs.slice(i, i + micro) };
  }
}

/** Passes plans through, recording each one's indices. */
export function* recordPlans(plans: Iterable<BatchPlan>, into: number[][]): Generator<BatchPlan> {
  for (const p of plans) {
    into.push(Array.from(p.indices));
    yield p;
  }
}

/** Non-padding tokens of an attention mask. */
export function tokensIn(attentionMask: Int32Array): number {
  let n = 0;
  for (let i = 0; i < attentionMask.length; i++) n += attentionMask[i];
  return n;
}
