/** The micro-batches a rank will be asked to train, derived from the same sharding the coordinator uses. */
import { DataSharder } from "../../shared/data/sharding";
import type { StepPlan as BatchPlan } from "../../shared/data/objective";

/** The micro-batches of this rank from `firstStep` to `maxSteps`, as the coordinator will plan them. */
export function* microBatchPlans(sharder: DataSharder, firstStep: number, maxSteps: number, rank: number, world: number, micro: number): Generator<BatchPlan> {
  for (let step = firstStep; step <= maxSteps; step++) {
    const { indices, epochs } = sharder.rankSlice(step, rank, world);
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
