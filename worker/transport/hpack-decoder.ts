/**
 * HPACK header-block decoder (RFC 7541): static table, dynamic table with size updates, integer and string
 * literals, Huffman-coded strings (hpack-huffman.ts).
 *
 * One decoder per HTTP/2 connection (the dynamic table is connection state); header blocks must be fed in the
 * order they arrive. Any malformed block throws HpackError, which the caller must treat as a connection error
 * (COMPRESSION_ERROR): the decoder state is unusable afterwards.
 */
import { decodeHuffman, HuffmanError } from "./hpack-huffman";

/** RFC 7541 Appendix A: the static table, index 1..61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/** One decoded header field, name lower-case as sent. */
export type HeaderField = readonly [name: string, value: string];

/** A header block that does not decode (COMPRESSION_ERROR). */
export class HpackError extends Error {
  override readonly name = "HpackError";
}

/** Decodes header blocks of one HTTP/2 connection. */
export class HpackDecoder {
  /** Newest entry first, as HPACK indexes it. */
  private readonly dynamic: HeaderField[] = [];
  private dynamicSize = 0;
  private maxSize: number;

  /** `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE this side advertised (the peer's encoder may use at most this). */
  constructor(private readonly maxTableSize = 4096) {
    this.maxSize = maxTableSize;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION payloads, padding and priority removed). */
  decode(block: Uint8Array): HeaderField[] {
    const out: HeaderField[] = [];
    let p = 0;
    let fieldsSeen = false;
    const int = (prefixBits: number): number => {
      if (p >= block.length) throw new HpackError("header block ends inside an integer");
      const mask = (1 << prefixBits) - 1;
      let v = block[p++] & mask;
      if (v < mask) return v;
      let m = 1;
      for (;;) {
        if (p >= block.length) throw new HpackError("header block ends inside an integer");
        const b = block[p++];
        v += (b & 0x7f) * m;
        m *= 128;
        if (v > 0x7fffffff) throw new HpackError("integer overflow in header block");
        if ((b & 0x80) === 0) return v;
      }
    };
    const str = (): string => {
      if (p >= block.length) throw new HpackError("header block ends before a string");
      const huff = (block[p] & 0x80) !== 0;
      const len = int(7);
      if (p + len > block.length) throw new HpackError(`string of ${len} bytes runs past the header block`);
      const at = p;
      p += len;
      if (!huff) return Buffer.from(block.buffer, block.byteOffset + at, len).toString("latin1");
      try {
        return decodeHuffman(block, at, len);
      } catch (e) {
        if (e instanceof HuffmanError) throw new HpackError(e.message);
        throw e;
      }
    };
    while (p < block.length) {
      const b = block[p];
      if (b & 0x80) {
        // indexed header field
        out.push(this.entry(int(7)));
        fieldsSeen = true;
      } else if (b & 0x40) {
        // literal with incremental indexing
        const idx = int(6);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        const field: HeaderField = [name, str()];
        out.push(field);
        this.insert(field);
        fieldsSeen = true;
      } else if (b & 0x20) {
        // dynamic table size update: only at the start of a block, never above what we advertised
        if (fieldsSeen) throw new HpackError("dynamic table size update after a header field");
        const size = int(5);
        if (size > this.maxTableSize) throw new HpackError(`dynamic table size update to ${size}, above the advertised ${this.maxTableSize}`);
        this.maxSize = size;
        this.evict(0);
      } else {
        // literal without indexing (0000) or never indexed (0001)
        const idx = int(4);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        out.push([name, str()]);
        fieldsSeen = true;
      }
    }
    return out;
  }

  private entry(index: number): HeaderField {
    if (index === 0) throw new HpackError("header field index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const d = this.dynamic[index - STATIC_TABLE.length - 1];
    if (d === undefined) throw new HpackError(`header field index ${index} is not in the table`);
    return d;
  }

  private insert(f: HeaderField): void {
    const size = f[0].length + f[1].length + 32;
    this.evict(size);
    if (size <= this.maxSize) {
      this.dynamic.unshift(f);
      this.dynamicSize += size;
    }
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.dynamic.length > 0 && this.dynamicSize + room > this.maxSize) {
      const f = this.dynamic.pop() as HeaderField;
      this.dynamicSize -= f[0].length + f[1].length + 32;
    }
  }
}
