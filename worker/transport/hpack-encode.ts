/**
 * Minimal HPACK encoder (RFC 7541 section 6.2): every field as a literal with a literal name, never touching
 * the peer's dynamic table and never Huffman-coding, so it needs no state. Fields marked sensitive use the
 * "never indexed" form, which tells intermediaries not to compress them either.
 */

/** A header field to encode; `sensitive` selects the never-indexed representation (e.g. credentials). */
export interface OutgoingField {
  name: string;
  value: string;
  sensitive?: boolean;
}

function pushInt(out: number[], first: number, prefixBits: number, v: number): void {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    out.push(first | v);
    return;
  }
  out.push(first | max);
  v -= max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

function pushString(out: number[], s: string): void {
  const b = Buffer.from(s, "latin1");
  pushInt(out, 0, 7, b.length);
  for (const x of b) out.push(x);
}

/** Encodes a header block (pseudo-headers must come first in `fields`; names must be lower-case). */
export function encodeLiteralHeaders(fields: readonly OutgoingField[]): Buffer {
  const out: number[] = [];
  for (const f of fields) {
    if (f.name !== f.name.toLowerCase()) throw new Error(`HPACK: header name ${JSON.stringify(f.name)} is not lower-case`);
    pushInt(out, f.sensitive === true ? 0x10 : 0x00, 4, 0);
    pushString(out, f.name);
    pushString(out, f.value);
  }
  return Buffer.from(out);
}
