import { SPECIAL_TOKENS, Vocab } from "./vocab";
import { CONTINUATION, MAX_CHARS_PER_WORD } from "./wordpiece";
import type { WordCounts } from "./word-count";

/** Options of the WordPiece trainer (the knobs of HF tokenizers' WordPieceTrainer). */
export interface TrainOptions {
  /** Target vocabulary size, specials included. */
  vocabSize: number;
  /** A pair must occur at least this often to be merged. Default 2. */
  minFrequency?: number;
  /** Tokens put first, in order. Default [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0..4). */
  specialTokens?: readonly string[];
  /** Keep only this many most frequent characters in the alphabet; words' other characters are ignored. */
  limitAlphabet?: number;
  /** Characters always in the alphabet. */
  initialAlphabet?: readonly string[];
  /**
   * Words longer than this many code points are not counted: the encoder turns them into [UNK] whole (HF's
   * max_input_chars_per_word), so pieces learnt from them would waste vocabulary slots. Default MAX_CHARS_PER_WORD (100).
   */
  maxCharsPerWord?: number;
}

/** The trained vocabulary and what the training did. */
export interface TrainResult {
  vocab: Vocab;
  alphabetSize: number;
  merges: number;
}

const ID_BITS = 2 ** 21; // pair key = left * 2^21 + right, exact in a double while ids < 2^21

/**
 * Trains a WordPiece vocabulary the way HF's WordPieceTrainer does: BPE merges over the word counts, with
 * every non-initial character written "##c" and merged pieces written a + b-without-"##". The vocabulary is
 * specials, the alphabet (sorted by code point), the "##c" characters (sorted), then merged tokens in merge
 * order. Merges stop at `vocabSize` or when the best pair is rarer than `minFrequency`; the alphabet is
 * always kept whole, so a vocabSize below specials + alphabet gives a larger vocabulary (as in HF).
 *
 * The merge loop is incremental: pair counts and pair -> words indexes are kept and only the words that
 * contain the merged pair are updated; a max-heap with lazy re-insertion picks the next pair (a count can only
 * fall, except for pairs with the new token, which are pushed afresh), ties going to the smaller pair of ids.
 */
export function trainWordPiece(counts: WordCounts, opts: TrainOptions): TrainResult {
  const specials = opts.specialTokens ?? SPECIAL_TOKENS;
  const minFrequency = opts.minFrequency ?? 2;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize <= specials.length) {
    throw new Error(`vocabSize must be an integer above the ${specials.length} special tokens, got ${opts.vocabSize}`);
  }
  if (opts.vocabSize >= ID_BITS) throw new Error(`vocabSize must be below ${ID_BITS}`);

  // Deterministic word order, independent of how the counts were gathered.
  const maxChars = opts.maxCharsPerWord ?? MAX_CHARS_PER_WORD;
  // Code units bound code points from above, so only long strings need counting in code points.
  const encodable = (w: string): boolean => w.length <= maxChars || Array.from(w).length <= maxChars;
  const entries = [...counts.entries()].filter(([w, c]) => c > 0 && encodable(w)).sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));

  const alphabet = buildAlphabet(entries, opts);
  const tokens: string[] = [];
  const ids = new Map<string, number>();
  const add = (t: string): number => {
    let id = ids.get(t);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(t);
      ids.set(t, id);
    }
    return id;
  };
  for (const s of specials) {
    if (ids.has(s)) throw new Error(`special token ${s} is listed twice`);
    add(s);
  }
  for (const c of alphabet) add(c);
  const continuationChars = new Set<string>();
  const wordChars = entries.map(([w]) => Array.from(w));
  for (const chars of wordChars) for (let i = 1; i < chars.length; i++) if (alphabet.has(chars[i])) continuationChars.add(chars[i]);
  for (const c of [...continuationChars].sort(byCodePoint)) add(CONTINUATION + c);
  const alphabetTokens = tokens.length;

  // Words as symbol-id arrays; characters outside the alphabet are dropped, as HF does.
  const words: number[][] = [];
  const freqs: number[] = [];
  for (let w = 0; w < entries.length; w++) {
    const syms: number[] = [];
    wordChars[w].forEach((c, i) => {
      if (alphabet.has(c)) syms.push(ids.get(i === 0 ? c : CONTINUATION + c) as number);
    });
    words.push(syms);
    freqs.push(entries[w][1]);
  }

  const pairCount = new Map<number, number>();
  const where = new Map<number, number[]>();
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] * ID_BITS + s[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + freqs[w]);
      const list = where.get(k);
      if (list === undefined) where.set(k, [w]);
      else if (list[list.length - 1] !== w) list.push(w);
    }
  }
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, k);

  const seen = new Int32Array(words.length).fill(-1);
  let merges = 0;
  while (tokens.length < opts.vocabSize && heap.size > 0) {
    const top = heap.pop();
    const current = pairCount.get(top.key) ?? 0;
    if (current !== top.count) {
      if (current > 0) heap.push(current, top.key);
      continue;
    }
    if (current < minFrequency) break;
    const left = Math.floor(top.key / ID_BITS);
    const right = top.key - left * ID_BITS;
    const rightText = tokens[right].startsWith(CONTINUATION) ? tokens[right].slice(CONTINUATION.length) : tokens[right];
    const merged = add(tokens[left] + rightText);
    merges++;

    const affected = where.get(top.key) ?? [];
    where.delete(top.key);
    const fresh = new Set<number>();
    for (const w of affected) {
      if (seen[w] === merges) continue;
      seen[w] = merges;
      const s = words[w];
      const f = freqs[w];
      const next = mergeWord(s, left, right, merged);
      if (next === undefined) continue; // stale index entry: the pair is no longer in this word
      for (let i = 0; i + 1 < s.length; i++) decrement(pairCount, s[i] * ID_BITS + s[i + 1], f);
      for (let i = 0; i + 1 < next.length; i++) {
        const k = next[i] * ID_BITS + next[i + 1];
        pairCount.set(k, (pairCount.get(k) ?? 0) + f);
        if (next[i] === merged || next[i + 1] === merged) {
          fresh.add(k);
          const list = where.get(k);
          if (list === undefined) where.set(k, [w]);
          else if (list[list.length - 1] !== w) list.push(w);
        }
      }
      words[w] = next;
    }
    for (const k of fresh) {
      const c = pairCount.get(k) ?? 0;
      if (c > 0) heap.push(c, k);
    }
  }
  return { vocab: new Vocab(tokens), alphabetSize: alphabetTokens - specials.length, merges };
}

function buildAlphabet(entries: [string, number][], opts: TrainOptions): Set<string> {
  const freq = new Map<string, number>();
  for (const [w, c] of entries) for (const ch of w) freq.set(ch, (freq.get(ch) ?? 0) + c);
  let chars = [...freq.keys()];
  if (opts.limitAlphabet !== undefined && chars.length > opts.limitAlphabet) {
    chars.sort((x, y) => (freq.get(y) as number) - (freq.get(x) as number) || byCodePoint(x, y));
    chars = chars.slice(0, opts.limitAlphabet);
  }
  for (const c of opts.initialAlphabet ?? []) {
    if (Array.from(c).length !== 1) throw new Error(`initialAlphabet entry ${JSON.stringify(c)} is not one character`);
    chars.push(c);
  }
  return new Set([...new Set(chars)].sort(byCodePoint));
}

function byCodePoint(x: string, y: string): number {
  return (x.codePointAt(0) as number) - (y.codePointAt(0) as number);
}

/** The word with every non-overlapping (left, right) replaced by `merged`, or undefined if it has none. */
function mergeWord(s: number[], left: number, right: number, merged: number): number[] | undefined {
  let out: number[] | undefined;
  for (let i = 0; i < s.length; i++) {
    if (i + 1 < s.length && s[i] === left && s[i + 1] === right) {
      out ??= s.slice(0, i);
      out.push(merged);
      i++;
    } else if (out !== undefined) {
      out.push(s[i]);
    }
  }
  return out;
}

function decrement(map: Map<number, number>, key: number, by: number): void {
  const v = (map.get(key) ?? 0) - by;
  if (v > 0) map.set(key, v);
  else map.delete(key);
}

/** Max-heap of (count, pair key): larger count first, then smaller key. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): { count: number; key: number } {
    const top = { count: this.counts[0], key: this.keys[0] };
    const lastC = this.counts.pop() as number;
    const lastK = this.keys.pop() as number;
    if (this.counts.length > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.counts.length && this.before(l, best)) best = l;
        if (r < this.counts.length && this.before(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }

  private before(i: number, j: number): boolean {
    return this.counts[i] > this.counts[j] || (this.counts[i] === this.counts[j] && this.keys[i] < this.keys[j]);
  }

  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
}
