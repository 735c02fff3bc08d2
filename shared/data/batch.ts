/**
 * One training batch, row-major [batchSize, seqLen]. mlmLabels holds the target id at predicted positions
 * and -100 elsewhere (for causal batches: the next token). nspLabels: 0 = IsNext, 1 = NotNext (as HF).
 */
export interface Batch {
  batchSize: number;
  seqLen: number;
  inputIds: Int32Array;
  tokenTypeIds: Int32Array;
  attentionMask: Int32Array;
  mlmLabels: Int32Array;
  nspLabels?: Int32Array;
}

/** Label value of positions without a target (PyTorch/HF convention). */
export const IGNORE_INDEX = -100;

/** Number of int32 words a batch occupies in its single backing buffer. */
export function batchWords(batchSize: number, seqLen: number, withNsp: boolean): number {
  return 4 * batchSize * seqLen + (withNsp ? batchSize : 0);
}

/**
 * Views a batch's arrays on one Int32Array (inputIds, tokenTypeIds, attentionMask, mlmLabels, then
 * nspLabels), so that a worker thread can hand the whole batch over by transferring one buffer.
 */
export function batchOnBuffer(buf: Int32Array, batchSize: number, seqLen: number, withNsp: boolean): Batch {
  const n = batchSize * seqLen;
  if (buf.length !== batchWords(batchSize, seqLen, withNsp)) {
    throw new Error(`batch buffer has ${buf.length} words, expected ${batchWords(batchSize, seqLen, withNsp)}`);
  }
  const batch: Batch = {
    batchSize,
    seqLen,
    inputIds: buf.subarray(0, n),
    tokenTypeIds: buf.subarray(n, 2 * n),
    attentionMask: buf.subarray(2 * n, 3 * n),
    mlmLabels: buf.subarray(3 * n, 4 * n),
  };
  if (withNsp) batch.nspLabels = buf.subarray(4 * n, 4 * n + batchSize);
  return batch;
}

/** A zeroed batch with mlmLabels set to IGNORE_INDEX. */
export function allocBatch(batchSize: number, seqLen: number, withNsp: boolean): Batch {
  const b = batchOnBuffer(new Int32Array(batchWords(batchSize, seqLen, withNsp)), batchSize, seqLen, withNsp);
  b.mlmLabels.fill(IGNORE_INDEX);
  return b;
}

/** Number of positions with a target (label != -100): the loss normaliser the reducer sums over ranks. */
export function countTargets(batch: Batch): number {
  let n = 0;
  for (let i = 0; i < batch.mlmLabels.length; i++) if (batch.mlmLabels[i] !== IGNORE_INDEX) n++;
  return n;
}
