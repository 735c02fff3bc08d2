/**
 * Character classes used by BERT's BasicTokenizer, decided per Unicode code point exactly as
 * HF transformers' `_is_control`, `_is_whitespace`, `_is_punctuation` and `_is_chinese_char` do.
 */

/** Bit flags of a code point's class. */
export const CharClass = {
  /** Removed by text cleaning: NUL, U+FFFD and control chars (category C*) other than \t \n \r. */
  Drop: 1,
  /** Replaced by a space when cleaning: " ", \t, \n, \r and category Zs. */
  Space: 2,
  /** Split off as its own token: ASCII symbol ranges and category P*. */
  Punct: 4,
  /** CJK ideograph: surrounded by spaces so each one becomes a word. */
  Cjk: 8,
  /** Python's str.split() whitespace that survives cleaning (\u2028, \u2029 are category Zl/Zp). */
  PySplit: 16,
} as const;

const CONTROL = /^\p{C}$/u;
const ZS = /^\p{Zs}$/u;
const PUNCT = /^\p{P}$/u;

/** Classifies one code point; the result is a combination of CharClass flags (0 = an ordinary letter). */
export function classifyCodePoint(cp: number): number {
  if (cp === 0 || cp === 0xfffd) return CharClass.Drop;
  if (cp === 0x20 || cp === 0x09 || cp === 0x0a || cp === 0x0d) return CharClass.Space;
  const ch = String.fromCodePoint(cp);
  if (ZS.test(ch)) return CharClass.Space;
  if (CONTROL.test(ch)) return CharClass.Drop;
  if (cp === 0x2028 || cp === 0x2029) return CharClass.PySplit;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
    return CharClass.Punct;
  }
  if (PUNCT.test(ch)) return CharClass.Punct;
  if (isCjk(cp)) return CharClass.Cjk;
  return 0;
}

/** The CJK Unified Ideographs blocks BERT treats as single-character words (not Hangul or kana). */
export function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

// The Basic Multilingual Plane is classified once into a table: the regex tests are far too slow per character.
let bmp: Uint8Array | undefined;

/** Class flags of a code point, table-driven for the BMP. */
export function charClass(cp: number): number {
  if (cp < 0x10000) {
    if (bmp === undefined) {
      bmp = new Uint8Array(0x10000);
      for (let i = 0; i < 0x10000; i++) bmp[i] = classifyCodePoint(i);
    }
    return bmp[cp];
  }
  return classifyCodePoint(cp);
}
