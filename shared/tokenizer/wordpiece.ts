/** Words longer than this many code points become [UNK] (HF's max_input_chars_per_word). */
export const MAX_CHARS_PER_WORD = 100;

/** Prefix marking a piece that continues a word. */
export const CONTINUATION = "##";

/**
 * Greedy longest-match-first WordPiece split of one word (HF's WordpieceTokenizer): from the left, take
 * the longest prefix in the vocabulary (with "##" after the first piece). If some position has no match,
 * or the word is longer than `maxChars` code points, the whole word is `unk`.
 */
export function wordpiece(
  word: string,
  has: (piece: string) => boolean,
  unk: string,
  maxChars: number = MAX_CHARS_PER_WORD,
): string[] {
  // Work in code points, as Python does, so astral characters are never cut in half.
  const chars = Array.from(word);
  if (chars.length > maxChars) return [unk];
  // Without astral characters code units are code points, and plain slices avoid re-joining arrays.
  const bmpOnly = chars.length === word.length;
  const pieces: string[] = [];
  let start = 0;
  while (start < chars.length) {
    let end = chars.length;
    let found: string | undefined;
    while (start < end) {
      let sub = bmpOnly ? word.slice(start, end) : chars.slice(start, end).join("");
      if (start > 0) sub = CONTINUATION + sub;
      if (has(sub)) {
        found = sub;
        break;
      }
      end--;
    }
    if (found === undefined) return [unk];
    pieces.push(found);
    start = end;
  }
  return pieces;
}
