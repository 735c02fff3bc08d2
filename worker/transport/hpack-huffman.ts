/**
 * Decoder of the HPACK Huffman code (RFC 7541 section 5.2 and Appendix B).
 *
 * The code is canonical (codes of one length are consecutive, in symbol order, and shorter codes come first),
 * so the 257 code lengths of Appendix B determine it completely; this file stores only those lengths and
 * decodes with per-length first-code tables. Padding rules of section 5.2 are enforced: at most 7 trailing
 * bits, all of them 1 (a prefix of EOS), and EOS itself never appears in the data.
 */

/** Code length in bits of each symbol 0..255 and EOS (256), RFC 7541 Appendix B. */
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6,
  5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24,
  24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24,
  25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24,
  26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const EOS = 256;
const MAX_LEN = 30;

/** Canonical decoding tables: for each length, the first code, how many codes, and where its symbols start. */
const firstCode = new Int32Array(MAX_LEN + 1);
const countOf = new Int32Array(MAX_LEN + 1);
const startOf = new Int32Array(MAX_LEN + 1);
const symbols = new Uint16Array(CODE_LENGTHS.length);
(() => {
  for (const l of CODE_LENGTHS) countOf[l]++;
  let code = 0;
  let at = 0;
  for (let l = 1; l <= MAX_LEN; l++) {
    firstCode[l] = code;
    startOf[l] = at;
    at += countOf[l];
    code = (code + countOf[l]) * 2;
  }
  const fill = Int32Array.from(startOf);
  for (let s = 0; s < CODE_LENGTHS.length; s++) symbols[fill[CODE_LENGTHS[s]]++] = s;
})();

/** Thrown for Huffman data that RFC 7541 section 5.2 forbids (a decoding error of the header block). */
export class HuffmanError extends Error {
  override readonly name = "HuffmanError";
}

/** Decodes `len` Huffman-coded bytes of `src` from `off` into a latin1 string (header octets). */
export function decodeHuffman(src: Uint8Array, off: number, len: number): string {
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (let i = off; i < off + len; i++) {
    const byte = src[i];
    for (let b = 7; b >= 0; b--) {
      code = code * 2 + ((byte >> b) & 1);
      bits++;
      const idx = code - firstCode[bits];
      if (idx >= 0 && idx < countOf[bits]) {
        const sym = symbols[startOf[bits] + idx];
        if (sym === EOS) throw new HuffmanError("Huffman data contains EOS");
        out.push(sym);
        code = 0;
        bits = 0;
      } else if (bits >= MAX_LEN) throw new HuffmanError("invalid Huffman code");
    }
  }
  if (bits > 7) throw new HuffmanError(`Huffman padding longer than 7 bits (${bits})`);
  if (code !== (1 << bits) - 1) throw new HuffmanError("Huffman padding is not a prefix of EOS");
  return Buffer.from(out).toString("latin1");
}
