/**
 * A training batch, row-major [batchSize, seqLen]. Same shape as shared/data/batch.ts (ARCHITECTURE.md); defined here
 * until the two are reconciled, so the trainer does not depend on the data pipeline.
 */
export interface Batch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Int32Array;
  /** Token id to predict at each position, -100 where there is nothing to predict. */
  mlmLabels: Int32Array;
  /** Per sequence: 0 = B follows A, 1 = random B (HF convention); only with an NSP head. */
  nspLabels?: Int32Array;
}

/** Label value meaning "no MLM target here" (PyTorch's ignore_index). */
export const IGNORE_INDEX = -100;
