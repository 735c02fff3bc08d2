import { CharClass, charClass } from "./chars";

/** How text is normalised before WordPiece (BERT's BasicTokenizer options). */
export interface NormalizerOptions {
  /** Lower-case every word (BERT "uncased"). Default true. */
  lowerCase?: boolean;
  /** Strip accents (NFD, then drop Mn marks). Default: same as lowerCase, as in HF. */
  stripAccents?: boolean;
  /** Put spaces around CJK ideographs so each is its own word. Default true. */
  splitCjk?: boolean;
}

const MN = /\p{Mn}/gu;

/**
 * Splits text into words and punctuation exactly like HF's BasicTokenizer: clean (drop NUL, U+FFFD and
 * control characters, map whitespace to spaces), space out CJK ideographs, normalise to NFC, split on whitespace,
 * then per word lower-case and strip accents (NFD minus Mn) and split every punctuation character off.
 */
export function basicTokenize(text: string, opts: NormalizerOptions = {}): string[] {
  const lowerCase = opts.lowerCase ?? true;
  const stripAccents = opts.stripAccents ?? lowerCase;
  const splitCjk = opts.splitCjk ?? true;
  const out: string[] = [];
  // Clean, CJK spacing and whitespace split fused into one pass. The current word is text[segStart, i)
  // appended to `word`: slicing runs of kept characters is much cheaper than appending one at a time.
  let word = "";
  let segStart = 0;
  const flush = (end: number, next: number): void => {
    word += text.slice(segStart, end);
    if (word.length > 0) splitPunct(normalizeWord(word, lowerCase, stripAccents), out);
    word = "";
    segStart = next;
  };
  for (let i = 0; i < text.length; i++) {
    let cp = text.charCodeAt(i);
    let width = 1;
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        width = 2;
      }
    }
    const cls = charClass(cp);
    if (cls & (CharClass.Space | CharClass.PySplit)) {
      flush(i, i + width);
    } else if (cls & CharClass.Cjk && splitCjk) {
      flush(i, i + width);
      out.push(cjkWord(text.slice(i, i + width), cp));
    } else if (cls & CharClass.Drop) {
      word += text.slice(segStart, i);
      segStart = i + width;
    }
    i += width - 1;
  }
  flush(text.length, text.length);
  return out;
}

const ASCII = /^[\x00-\x7f]*$/;

function normalizeWord(word: string, lowerCase: boolean, stripAccents: boolean): string {
  // HF's BasicTokenizer normalises the text to NFC before splitting it (so "e" + U+0301 and "é" are one word). With
  // accent stripping the NFD below gives the same result from either form, so NFC is only needed when accents stay.
  // Pure ASCII is unchanged by both normalisations; skip them for the common case.
  let w = !stripAccents && !ASCII.test(word) ? word.normalize("NFC") : word;
  if (lowerCase) w = w.toLowerCase();
  if (stripAccents && !ASCII.test(w)) w = w.normalize("NFD").replace(MN, "");
  return w;
}

/**
 * A CJK ideograph split off as its own word, normalised as HF does (NFC, then NFD when stripping accents): the
 * compatibility ideographs (U+F900-U+FAFF, U+2F800-U+2FA1F) map to their unified forms either way; others stay.
 */
function cjkWord(ch: string, cp: number): string {
  return (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f) ? ch.normalize("NFC") : ch;
}

/** Appends the pieces of `word` split around every punctuation character (each punctuation char alone). */
function splitPunct(word: string, out: string[]): void {
  let start = 0;
  let i = 0;
  while (i < word.length) {
    const cp = word.codePointAt(i) as number;
    const width = cp > 0xffff ? 2 : 1;
    const cls = charClass(cp);
    if (cls & CharClass.Punct) {
      if (i > start) out.push(word.slice(start, i));
      out.push(word.slice(i, i + width));
      start = i + width;
    } else if (cls & (CharClass.Space | CharClass.PySplit)) {
      // Case mapping or NFD never yields whitespace in practice; HF re-splits on whitespace here, so do we.
      if (i > start) out.push(word.slice(start, i));
      start = i + width;
    }
    i += width;
  }
  if (i > start) out.push(word.slice(start, i));
}
