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
