/**
 * Token sequences packed for pre-training, row-major [count, seqLen]: lengths[i] real tokens then [PAD].
 * wordStarts[i*seqLen + j] = 1 where the token starts a word (anything but a "##" piece), for whole-word masking.
 */
export interface PackedSequences {
  seqLen: number;
  count: number;
  tokens: Int32Array;
  lengths: Int32Array;
  wordStarts?: Uint8Array;
}

/** Throws naming the problem when the arrays disagree with seqLen and count. */
export function checkPacked(p: PackedSequences, what = "packed sequences"): void {
  const cells = p.seqLen * p.count;
  if (!Number.isInteger(p.seqLen) || p.seqLen < 3) throw new Error(`${what}: seqLen ${p.seqLen} is below 3`);
  if (p.tokens.length !== cells) throw new Error(`${what}: tokens has ${p.tokens.length} entries, expected ${cells}`);
  if (p.lengths.length !== p.count) throw new Error(`${what}: lengths has ${p.lengths.length} entries, expected ${p.count}`);
  if (p.wordStarts !== undefined && p.wordStarts.length !== cells) {
    throw new Error(`${what}: wordStarts has ${p.wordStarts.length} entries, expected ${cells}`);
  }
}

/**
 * Copies packed row `idx` into row `b` of a batch (tokens, and an attention mask over its real length); returns
 * where the row starts in `data.tokens` and its length. Throws naming an index outside the data.
 */
export function copyPackedRow(data: PackedSequences, batch: { inputIds: Int32Array; attentionMask: Int32Array }, b: number, idx: number): { src: number; len: number } {
  if (!Number.isInteger(idx) || idx < 0 || idx >= data.count) {
    throw new Error(`sequence index ${idx} is outside the packed data (count ${data.count})`);
  }
  const S = data.seqLen;
  const src = idx * S;
  const len = data.lengths[idx];
  batch.inputIds.set(data.tokens.subarray(src, src + S), b * S);
  batch.attentionMask.fill(1, b * S, b * S + len);
  return { src, len };
}
