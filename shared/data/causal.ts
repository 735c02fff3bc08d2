import { allocBatch, type Batch } from "./batch";
import { copyPackedRow, type PackedSequences } from "./packed";

/**
 * Builds a causal-LM batch (GPT-style decoders) from packed rows: inputIds are the row, mlmLabels[i] is the
 * token at i + 1 (the next token) and -100 at the row's last real position and over padding.
 */
export function makeCausalBatch(data: PackedSequences, indices: ArrayLike<number>): Batch {
  const S = data.seqLen;
  const batch = allocBatch(indices.length, S, false);
  for (let b = 0; b < indices.length; b++) {
    const idx = indices[b];
    const { src, len } = copyPackedRow(data, batch, b, idx);
    for (let i = 0; i + 1 < len; i++) batch.mlmLabels[b * S + i] = data.tokens[src + i + 1];
  }
  return batch;
}
