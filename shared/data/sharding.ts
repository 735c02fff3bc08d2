import { permutation } from "../rng";

/**
 * Which sequences each rank trains on at each step.
 *
 * The training data is an endless stream: the concatenation of one seeded permutation of all sequences per
 * epoch. Step s (1-based) consumes stream positions [(s-1)·B, s·B) for global batch B, so over an epoch every
 * sequence is used exactly once across all ranks, a resumed run continues at the exact stream position of its
 * checkpoint (the position is a function of the step alone), and the global batch is the same whatever the
 * world size. Within a step, rank r takes the r-th contiguous slice of B/N positions, split into
 * micro-batches of its accumulation steps.
 */
export class DataSharder {
  private readonly cache = new Map<number, Int32Array>();

  constructor(
    private readonly numSequences: number,
    private readonly globalBatchSize: number,
    private readonly seed: number,
  ) {
    if (numSequences <= 0) throw new Error("the training split has no sequences: add data or lower validation_fraction");
  }

  /** The sequences (and each one's epoch) of `rank` at `step`, for a world of `worldSize` ranks (even split). */
  rankSlice(step: number, rank: number, worldSize: number): { indices: number[]; epochs: number[] } {
    if (this.globalBatchSize % worldSize !== 0) {
      throw new Error(`global batch ${this.globalBatchSize} is not divisible by world size ${worldSize}`);
    }
    const perRank = this.globalBatchSize / worldSize;
    return this.slice(step, rank * perRank, perRank);
  }

  /** Positions [offset, offset + count) of the global batch of `step`: the sequences and each one's epoch. */
  slice(step: number, offset: number, count: number): { indices: number[]; epochs: number[] } {
    if (offset < 0 || count < 0 || offset + count > this.globalBatchSize) {
      throw new Error(`slice [${offset}, ${offset + count}) is outside the global batch of ${this.globalBatchSize}`);
    }
    const start = (step - 1) * this.globalBatchSize + offset;
    const indices: number[] = [];
    const epochs: number[] = [];
    for (let p = start; p < start + count; p++) {
      const epoch = Math.floor(p / this.numSequences);
      indices.push(this.epochPermutation(epoch)[p % this.numSequences]);
      epochs.push(epoch);
    }
    return { indices, epochs };
  }

  /** Epoch (0-based) in progress after `step` steps, and the fraction of it done. */
  progress(step: number): { epoch: number; fraction: number } {
    const consumed = step * this.globalBatchSize;
    return { epoch: Math.floor(consumed / this.numSequences), fraction: (consumed % this.numSequences) / this.numSequences };
  }

  private epochPermutation(epoch: number): Int32Array {
    let perm = this.cache.get(epoch);
    if (perm === undefined) {
      perm = permutation(this.numSequences, this.seed, 0x5eed, epoch);
      this.cache.set(epoch, perm);
      if (this.cache.size > 4) this.cache.delete(this.cache.keys().next().value as number);
    }
    return perm;
  }
}

/** Splits `count` evaluation sequences (0..count-1 of the validation split) into contiguous per-rank shards. */
export function evalShard(count: number, rank: number, worldSize: number): number[] {
  const begin = Math.floor((count * rank) / worldSize);
  const end = Math.floor((count * (rank + 1)) / worldSize);
  const out: number[] = [];
  for (let i = begin; i < end; i++) out.push(i);
  return out;
}

/** Sequences per rank when the global batch is divided evenly (DDP's split). */
export function evenSplit(globalBatchSize: number, worldSize: number): number[] {
  return Array.from({ length: worldSize }, (_, r) => Math.floor((globalBatchSize * (r + 1)) / worldSize) - Math.floor((globalBatchSize * r) / worldSize));
}

/** Position of `rank`'s first sequence within the global batch: the sequences of the ranks below it. */
export function splitOffset(counts: readonly number[], rank: number): number {
  let offset = 0;
  for (let r = 0; r < rank; r++) offset += counts[r];
  return offset;
}

/**
 * Steps between the coordinator choosing a step's split (batch.balance: adaptive) and that step running: each plan
 * carries the split of the step `lag` ahead, and workers prepare batches up to `prefetch` micro-batches ahead
 * (at least one per step), so a worker always knows the split of every batch it prepares.
 */
export function balanceLag(prefetchBatches: number, accumulation: number): number {
  return Math.max(1, prefetchBatches) * Math.max(1, accumulation) + 2;
}
