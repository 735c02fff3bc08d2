/**
 * Hand-written protobuf encoder/decoder for `ringtrain.peer.Chunk` (proto/peer.proto).
 *
 * Why not protobufjs: the payload is the bulk of every byte moved. Encoding writes the header and then copies
 * (or float16-encodes) the payload straight from the caller's Float32Array into the gRPC frame grpc-js
 * allocates, and decoding returns a view of the received frame instead of a copy. The output is standard
 * protobuf wire format (fields in number order, payload last) that any protobuf library decodes; a test
 * cross-checks it against protobufjs loaded from the .proto.
 */
import { encodeHalf, type HalfKind } from "../../shared/codecs/half";

/** RingPhase enum values of peer.proto. */
export const RingPhase = { BEGIN: 1, REDUCE_SCATTER: 2, ALL_GATHER: 3 } as const;
/** WireDtype enum values of peer.proto. */
export const WireDtype = { FLOAT32: 1, FLOAT16: 2, BFLOAT16: 3 } as const;

/** Every Chunk field except the payload, as plain numbers (all integers within 2^53). */
export interface ChunkHeader {
  jobId: string;
  senderRank: number;
  collectiveId: number;
  step: number;
  bucket: number;
  phase: number;
  hop: number;
  segment: number;
  chunkIndex: number;
  elementOffset: number;
  elementCount: number;
  chunkBytes: number;
  dtype: number;
  /** 64-bit layout hash as 16 lowercase hex digits. */
  layoutHash: string;
  bucketCount: number;
  totalElements: number;
  op: number;
}

/** A decoded Chunk: header plus a view (no copy) of the payload bytes inside the received frame. */
export interface DecodedChunk {
  ok: true;
  header: ChunkHeader;
  payload: Buffer;
}

/** A frame that is not a well-formed Chunk; the reason names the field. */
export interface MalformedChunk {
  ok: false;
  reason: string;
}

/** Bytes per payload element for a WireDtype value (0 if unknown). */
export function bytesPerElement(dtype: number): number {
  return dtype === WireDtype.FLOAT32 ? 4 : dtype === WireDtype.FLOAT16 || dtype === WireDtype.BFLOAT16 ? 2 : 0;
}

/**
 * A serialized Chunk that grpc-js copies into its frame buffer itself.
 *
 * grpc-js 1.14 frames a message with `Buffer.allocUnsafe(m.byteLength + 5)` followed by `m.copy(out, 5)`;
 * this object provides exactly those two members, so the payload goes from Float32Array memory into the
 * frame in one copy (or one float16 encoding pass). `toBuffer()` is the plain fallback.
 */
export class WireChunk {
  /** Total encoded length in bytes. */
  readonly byteLength: number;
  /** Same as byteLength (grpc-js reads `length` for its size checks). */
  readonly length: number;

  constructor(
    private readonly head: Buffer,
    private readonly source: Float32Array | null,
    private readonly half: HalfKind | null,
  ) {
    const payloadBytes = source === null ? 0 : source.length * (half === null ? 4 : 2);
    this.byteLength = head.length + payloadBytes;
    this.length = this.byteLength;
  }

  /** Writes the encoded message into target at targetStart (Buffer.copy-compatible signature). */
  copy(target: Uint8Array, targetStart = 0): number {
    target.set(this.head, targetStart);
    const src = this.source;
    if (src === null || src.length === 0) return this.byteLength;
    const at = targetStart + this.head.length;
    if (this.half === null) {
      target.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), at);
    } else if ((target.byteOffset + at) % 2 === 0) {
      encodeHalf(this.half, src, new Uint16Array(target.buffer, target.byteOffset + at, src.length));
    } else {
      const tmp = new Uint16Array(src.length);
      encodeHalf(this.half, src, tmp);
      target.set(new Uint8Array(tmp.buffer), at);
    }
    return this.byteLength;
  }

  /** Encodes into a fresh Buffer (used when zero-copy framing is switched off). */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.byteLength);
    this.copy(out, 0);
    return out;
  }
}

// --- encoding -------------------------------------------------------------------------------------------

const scratch = Buffer.allocUnsafe(512 + 64);

function putVarint(buf: Buffer, pos: number, value: number): number {
  // value is a non-negative integer < 2^53
  while (value >= 0x80) {
    buf[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buf[pos++] = value;
  return pos;
}

function putTag(buf: Buffer, pos: number, field: number, wireType: number): number {
  return putVarint(buf, pos, field * 8 + wireType);
}

function varintLen(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

/**
 * Writes the encoded header of a Chunk (every field but the payload bytes, ending with the payload's tag and
 * length) into `buf` at `at`, and returns the position after it. `frameOffset` is where the message will start
 * in the receiver's frame buffer (5 for a gRPC frame); the align_pad field is sized so that the payload lands
 * 4-byte aligned there. `buf` needs at least MAX_CHUNK_HEAD_BYTES bytes from `at`.
 */
export function encodeChunkHeadInto(h: ChunkHeader, buf: Buffer, at: number, frameOffset = 5): number {
  if (!/^[0-9a-f]{16}$/.test(h.layoutHash)) throw new Error(`encodeChunk: layoutHash must be 16 hex digits, got "${h.layoutHash}"`);
  const jobLen = Buffer.byteLength(h.jobId, "utf8");
  if (jobLen > 256) throw new Error(`encodeChunk: job id longer than 256 bytes`);
  let p = at;
  p = putTag(buf, p, 1, 2);
  p = putVarint(buf, p, jobLen);
  p += buf.write(h.jobId, p, "utf8");
  const ints = [h.senderRank, h.collectiveId, h.step, h.bucket, h.phase, h.hop, h.segment, h.chunkIndex, h.elementOffset,
    h.elementCount, h.chunkBytes, h.dtype];
  for (let i = 0; i < ints.length; i++) {
    p = putTag(buf, p, i + 2, 0);
    p = putVarint(buf, p, ints[i]);
  }
  p = putTag(buf, p, 14, 1);
  // fixed64 little-endian: low word first
  buf.writeUInt32LE(parseInt(h.layoutHash.slice(8), 16), p);
  buf.writeUInt32LE(parseInt(h.layoutHash.slice(0, 8), 16), p + 4);
  p += 8;
  p = putTag(buf, p, 15, 0);
  p = putVarint(buf, p, h.bucketCount);
  p = putTag(buf, p, 16, 0);
  p = putVarint(buf, p, h.totalElements);
  p = putTag(buf, p, 17, 0);
  p = putVarint(buf, p, h.op);
  const payloadLen = h.chunkBytes;
  const payloadTagLen = varintLen(19 * 8 + 2) + varintLen(payloadLen);
  // align_pad: tag (2 bytes) + length (1 byte) + k bytes; choose k so the payload starts 4-aligned.
  const k = (4 - ((frameOffset + (p - at) + 3 + payloadTagLen) % 4)) % 4;
  p = putTag(buf, p, 18, 2);
  p = putVarint(buf, p, k);
  buf.fill(0, p, p + k);
  p += k;
  p = putTag(buf, p, 19, 2);
  p = putVarint(buf, p, payloadLen);
  return p;
}

/** Upper bound of what encodeChunkHeadInto writes (job id <= 256 bytes, 17 varints, pads). */
export const MAX_CHUNK_HEAD_BYTES = 512;

/**
 * Encodes a Chunk whose payload is `source` (float32 elements; encoded as 16-bit when `half` is set).
 * `frameOffset` is where the message will start in the receiver's frame buffer (5 for a gRPC frame); the
 * align_pad field is sized so that the payload lands 4-byte aligned there.
 */
export function encodeChunk(h: ChunkHeader, source: Float32Array | null, half: HalfKind | null, frameOffset = 5): WireChunk {
  const p = encodeChunkHeadInto(h, scratch, 0, frameOffset);
  return new WireChunk(Buffer.from(scratch.subarray(0, p)), source, half);
}

// --- decoding -------------------------------------------------------------------------------------------

const FIELD_NAMES: Record<number, keyof ChunkHeader> = {
  2: "senderRank", 3: "collectiveId", 4: "step", 5: "bucket", 6: "phase", 7: "hop", 8: "segment", 9: "chunkIndex",
  10: "elementOffset", 11: "elementCount", 12: "chunkBytes", 13: "dtype", 15: "bucketCount", 16: "totalElements", 17: "op",
};

/** Decodes a Chunk frame; never throws, returns MalformedChunk naming the problem instead. */
export function decodeChunk(buf: Buffer): DecodedChunk | MalformedChunk {
  const h: ChunkHeader = {
    jobId: "", senderRank: 0, collectiveId: 0, step: 0, bucket: 0, phase: 0, hop: 0, segment: 0, chunkIndex: 0,
    elementOffset: 0, elementCount: 0, chunkBytes: 0, dtype: 0, layoutHash: "0000000000000000", bucketCount: 0,
    totalElements: 0, op: 0,
  };
  let payload: Buffer = buf.subarray(0, 0);
  let p = 0;
  const n = buf.length;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= n) return -1;
      const b = buf[p++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result <= Number.MAX_SAFE_INTEGER ? result : -2;
      mul *= 128;
    }
    return -1;
  };
  while (p < n) {
    const tag = readVarint();
    if (tag < 0) return { ok: false, reason: `truncated or invalid field tag at byte ${p}` };
    const field = Math.floor(tag / 8);
    const wt = tag % 8;
    if (wt === 0) {
      const v = readVarint();
      if (v === -1) return { ok: false, reason: `truncated varint in field ${field}` };
      if (v === -2) return { ok: false, reason: `field ${FIELD_NAMES[field] ?? field} out of range (>= 2^53 or negative)` };
      const name = FIELD_NAMES[field];
      if (name !== undefined) (h as unknown as Record<string, number>)[name] = v;
    } else if (wt === 1) {
      if (p + 8 > n) return { ok: false, reason: `truncated fixed64 in field ${field}` };
      if (field === 14) {
        h.layoutHash = buf.readUInt32LE(p + 4).toString(16).padStart(8, "0") + buf.readUInt32LE(p).toString(16).padStart(8, "0");
      }
      p += 8;
    } else if (wt === 2) {
      const len = readVarint();
      if (len < 0 || p + len > n) return { ok: false, reason: `truncated length-delimited field ${field}` };
      if (field === 1) h.jobId = buf.toString("utf8", p, p + len);
      else if (field === 19) payload = buf.subarray(p, p + len);
      p += len;
    } else if (wt === 5) {
      if (p + 4 > n) return { ok: false, reason: `truncated fixed32 in field ${field}` };
      p += 4;
    } else return { ok: false, reason: `unsupported wire type ${wt} in field ${field}` };
  }
  return { ok: true, header: h, payload };
}

/** Result of decodeChunkHead: the header and where the payload (the message's last field) starts. */
export interface ChunkHead {
  header: ChunkHeader;
  /** Offset of the first payload byte within the message. */
  payloadStart: number;
  /** Payload length in bytes; payloadStart + payloadLength equals the message length. */
  payloadLength: number;
}

/**
 * Decodes the fields before the payload of a Chunk message of `messageLength` bytes, of which only the first
 * `available` bytes are in `buf`. Returns the header when the payload is the last field and everything before
 * it is in `buf`; returns null when the message does not have that shape or its head is not all in `buf` (the
 * caller then decodes the whole message with decodeChunk, which also names any defect).
 */
export function decodeChunkHead(buf: Uint8Array, available: number, messageLength: number): ChunkHead | null {
  const h: ChunkHeader = {
    jobId: "", senderRank: 0, collectiveId: 0, step: 0, bucket: 0, phase: 0, hop: 0, segment: 0, chunkIndex: 0,
    elementOffset: 0, elementCount: 0, chunkBytes: 0, dtype: 0, layoutHash: "0000000000000000", bucketCount: 0,
    totalElements: 0, op: 0,
  };
  const n = Math.min(available, messageLength, buf.length);
  let p = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (p >= n) return -1;
      const b = buf[p++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result <= Number.MAX_SAFE_INTEGER ? result : -1;
      mul *= 128;
    }
    return -1;
  };
  while (p < n) {
    const tag = readVarint();
    if (tag < 0) return null;
    const field = Math.floor(tag / 8);
    const wt = tag % 8;
    if (wt === 0) {
      const v = readVarint();
      if (v < 0) return null;
      const name = FIELD_NAMES[field];
      if (name !== undefined) (h as unknown as Record<string, number>)[name] = v;
    } else if (wt === 1) {
      if (p + 8 > n) return null;
      if (field === 14) {
        const lo = buf[p] + buf[p + 1] * 256 + buf[p + 2] * 65536 + buf[p + 3] * 16777216;
        const hi = buf[p + 4] + buf[p + 5] * 256 + buf[p + 6] * 65536 + buf[p + 7] * 16777216;
        h.layoutHash = hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
      }
      p += 8;
    } else if (wt === 2) {
      const len = readVarint();
      if (len < 0) return null;
      if (field === 19) {
        return p + len === messageLength ? { header: h, payloadStart: p, payloadLength: len } : null;
      }
      if (p + len > n) return null;
      if (field === 1) h.jobId = Buffer.from(buf.buffer, buf.byteOffset + p, len).toString("utf8");
      p += len;
    } else if (wt === 5) {
      if (p + 4 > n) return null;
      p += 4;
    } else return null;
  }
  return null;
}
