import { Rng } from "../rng";
import { allocBatch, IGNORE_INDEX, type Batch } from "./batch";
import { copyPackedRow, type PackedSequences } from "./packed";

/** Options of masked-language-model batches. */
export interface MlmOptions {
  seed: number;
  /** Epoch of the masks: one for the whole batch, or one per row (a global batch may span two epochs). */
  epoch: number | ArrayLike<number>;
  /** Random replacements are drawn uniformly from [0, vocabSize) minus specialIds. */
  vocabSize: number;
  /** Ids never masked nor drawn as replacements ([PAD] [UNK] [CLS] [SEP] [MASK] usually). */
  specialIds: readonly number[];
  /** Share of tokens (or words) selected for prediction. Default 0.15. */
  mlmProbability?: number;
  /** Select whole words (a piece with all its "##" continuations) instead of single pieces. Default false. */
  wholeWordMask?: boolean;
  maskId: number;
  padId: number;
}

/**
 * Builds a masked-LM batch from packed rows `indices` (global sequence indices). Each row is masked by
 * maskRow with `new Rng(seed, epoch, index)`, so a row's mask depends only on (seed, epoch, index) and never on
 * which rank or batch it lands in.
 */
export function makeMlmBatch(data: PackedSequences, indices: ArrayLike<number>, opts: MlmOptions): Batch {
  if (opts.wholeWordMask && data.wordStarts === undefined) throw new Error("wholeWordMask needs packed data with wordStarts");
  const S = data.seqLen;
  const batch = allocBatch(indices.length, S, false);
  const special = specialLookup(opts);
  for (let b = 0; b < indices.length; b++) {
    const idx = indices[b];
    const { src, len } = copyPackedRow(data, batch, b, idx);
    maskRow(
      batch.inputIds.subarray(b * S, (b + 1) * S),
      batch.mlmLabels.subarray(b * S, (b + 1) * S),
      len,
      data.wordStarts?.subarray(src, src + S),
      new Rng(opts.seed, epochOfRow(opts.epoch, b), idx),
      opts,
      special,
    );
  }
  return batch;
}

/** The epoch of row b: the single epoch, or the b-th of a per-row list. */
export function epochOfRow(epoch: number | ArrayLike<number>, b: number): number {
  if (typeof epoch === "number") return epoch;
  if (b >= epoch.length) throw new Error(`no epoch for row ${b}: ${epoch.length} epochs given`);
  return epoch[b];
}

/** A membership table of opts.specialIds (plus padId and maskId), for O(1) tests. */
export function specialLookup(opts: Pick<MlmOptions, "specialIds" | "vocabSize" | "padId" | "maskId">): Uint8Array {
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= 0) throw new Error(`vocabSize must be a positive integer, got ${opts.vocabSize}`);
  const t = new Uint8Array(opts.vocabSize);
  for (const id of [...opts.specialIds, opts.padId, opts.maskId]) {
    if (!Number.isInteger(id) || id < 0 || id >= opts.vocabSize) throw new Error(`special id ${id} is outside the vocabulary (size ${opts.vocabSize})`);
    t[id] = 1;
  }
  if (t.reduce((n, v) => n + v, 0) >= opts.vocabSize) throw new Error("every id is special: nothing left to draw replacements from");
  return t;
}

/**
 * Masks one row in place (BERT/HF recipe). Positions before `length` whose token is not special are
 * candidates; each candidate (or each whole word, with wordStarts and opts.wholeWordMask) is selected with
 * probability mlmProbability; if none is, one is chosen at random so every non-empty row has a target. A
 * selected position gets label = its token, and becomes [MASK] (80%), a random non-special token (10%) or
 * stays (10%). Draws happen in position order, so the result is a function of the row and the rng alone.
 */
export function maskRow(
  input: Int32Array,
  labels: Int32Array,
  length: number,
  wordStarts: Uint8Array | undefined,
  rng: Rng,
  opts: MlmOptions,
  special: Uint8Array,
): void {
  const p = opts.mlmProbability ?? 0.15;
  if (!(p > 0 && p <= 1)) throw new Error(`mlmProbability must be in (0, 1], got ${p}`);
  // Units to select: [start, end) ranges of candidate positions; a single token each unless whole words.
  const unitStart: number[] = [];
  const unitEnd: number[] = [];
  const wholeWords = opts.wholeWordMask === true && wordStarts !== undefined;
  for (let i = 0; i < length; i++) {
    if (special[input[i]]) continue;
    const continues = wholeWords && wordStarts[i] === 0 && unitEnd.length > 0 && unitEnd[unitEnd.length - 1] === i;
    if (continues) unitEnd[unitEnd.length - 1] = i + 1;
    else {
      unitStart.push(i);
      unitEnd.push(i + 1);
    }
  }
  if (unitStart.length === 0) return;
  const chosen = new Uint8Array(unitStart.length);
  let any = false;
  for (let u = 0; u < unitStart.length; u++) {
    if (rng.next() < p) {
      chosen[u] = 1;
      any = true;
    }
  }
  if (!any) chosen[rng.int(unitStart.length)] = 1;
  for (let u = 0; u < unitStart.length; u++) {
    if (!chosen[u]) continue;
    for (let i = unitStart[u]; i < unitEnd[u]; i++) {
      labels[i] = input[i];
      const r = rng.next();
      if (r < 0.8) input[i] = opts.maskId;
      else if (r < 0.9) input[i] = randomToken(rng, opts.vocabSize, special);
    }
  }
}

function randomToken(rng: Rng, vocabSize: number, special: Uint8Array): number {
  for (;;) {
    const t = rng.int(vocabSize);
    if (!special[t]) return t;
  }
}

/** Re-exported so callers can tell ignored label positions. */
export { IGNORE_INDEX };
