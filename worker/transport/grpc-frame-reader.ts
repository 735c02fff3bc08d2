/**
 * Incremental reader of a gRPC message stream carrying `ringtrain.peer.Chunk` messages (proto/peer.proto).
 *
 * gRPC frames every message as a 5-byte prefix (compressed flag, 32-bit big-endian length) followed by the
 * message; HTTP/2 hands the bytes over in DATA pieces of arbitrary size and alignment. This reader parses the
 * prefix and the Chunk header itself and, when the consumer accepts a message through `onChunkHeader`, writes
 * the payload straight from each piece into the consumer's Float32Array (summing, copying or decoding 16-bit
 * elements), so a bulk message is never reassembled. Pieces whose payload bytes are not aligned for a typed
 * view go through one small reused scratch buffer; an element split across two pieces goes through a 4-byte
 * carry. Messages of another shape (payload not last, or a header beyond MAX_HEAD_BYTES), messages the
 * consumer wants whole, and small messages are collected into a fresh Buffer and decoded by decodeChunk.
 *
 * Every message is checked against `maxMessageBytes` before a byte of it is stored. The reader never touches
 * consumer memory before the consumer has validated the header and returned an "into" plan.
 */
import { decodeHalf, type HalfKind } from "../../shared/codecs/half";
import { addInto } from "../../shared/codecs/float32-sum";
import { decodeChunk, decodeChunkHead, WireDtype, type ChunkHeader, type DecodedChunk, type MalformedChunk } from "./chunk-wire";
import type { InboundPlan } from "./peer-transport";

/** Bytes collected before the header of a large message is parsed (the encoded header is at most 512). */
export const MAX_HEAD_BYTES = 1024;
const SCRATCH_BYTES = 64 * 1024;

/** Where the reader delivers messages. */
export interface ChunkReaderSink {
  /** A complete message (or one that failed to decode); its payload Buffer belongs to the callee. */
  onChunk(m: DecodedChunk | MalformedChunk): void;
  /** Optional streaming path (see PeerTransport's TransportEvents.onChunkHeader). */
  onChunkHeader?(header: ChunkHeader, payloadBytes: number): InboundPlan;
}

const enum State {
  Prefix,
  Head,
  Whole,
  Payload,
  Skip,
  Dead,
}

/** Parses a gRPC stream of Chunk messages, streaming bulk payloads into place. */
export class GrpcChunkReader {
  private state = State.Prefix;
  private readonly prefix = Buffer.alloc(5);
  private prefixHave = 0;
  /** Length of the current message (from its prefix) and bytes of it consumed so far. */
  private msgLen = 0;
  private msgHave = 0;
  private readonly head = Buffer.alloc(MAX_HEAD_BYTES);
  private whole: Buffer | null = null;
  // payload streaming state
  private target: Float32Array = new Float32Array(0);
  private targetBytes: Uint8Array = new Uint8Array(0);
  private add = false;
  private half: HalfKind | null = null;
  private elemBytes = 4;
  private elemIndex = 0;
  private payloadLeft = 0;
  private done: (() => void) | null = null;
  private readonly carry = new Uint8Array(4);
  private carryLen = 0;
  private readonly scratch = new ArrayBuffer(SCRATCH_BYTES);
  private readonly scratchBytes = new Uint8Array(this.scratch);
  // input queue (pieces not yet consumed while paused)
  private readonly queue: Buffer[] = [];
  private queueOff = 0;
  private paused = false;
  private draining = false;
  private resumeScheduled = false;

  constructor(private readonly maxMessageBytes: number, private readonly sink: ChunkReaderSink) {}

  /** True when no message is partly read (a stream may end cleanly only here). */
  get atMessageBoundary(): boolean {
    return this.state === State.Prefix && this.prefixHave === 0 && this.queue.length === 0;
  }

  /** True after a framing error: the reader has reported it and ignores further input. */
  get failed(): boolean {
    return this.state === State.Dead;
  }

  /** Feeds the next piece of the stream (kept by reference until consumed). */
  push(piece: Buffer): void {
    if (this.state === State.Dead || piece.length === 0) return;
    this.queue.push(piece);
    if (!this.paused) this.drain();
  }

  /**
   * Feeds a piece that is valid only during this call (a view of a receive buffer the caller reuses): it is
   * consumed at once, and whatever a pause leaves unconsumed (or arrives while paused) is copied and queued.
   */
  pushTransient(piece: Buffer): void {
    if (this.state === State.Dead || piece.length === 0) return;
    if (this.paused || this.draining || this.queue.length > 0) {
      this.queue.push(Buffer.from(piece));
      if (!this.paused) this.drain();
      return;
    }
    this.draining = true;
    try {
      const off = this.consume(piece, 0);
      if (off < piece.length && (this.state as State) !== State.Dead) this.queue.push(Buffer.from(piece.subarray(off)));
    } finally {
      this.draining = false;
    }
  }

  /**
   * Where the next input byte should sit, modulo 4, for the payload to be read through aligned typed-array views
   * (no scratch copy): the number of bytes of a split element already held. -1 when it does not matter (not
   * inside a payload that is summed or decoded, or input is queued).
   */
  get wantedAlignment(): number {
    if (this.state !== State.Payload || this.queue.length > 0 || this.paused || (!this.add && this.half === null)) return -1;
    return this.carryLen;
  }

  /**
   * Where the next payload bytes belong, when they may be written there directly: inside a plain float32 copy
   * into an accepted target, with nothing queued and the reader not paused. Returns a
   * view of the target from the current position, at most `maxBytes` long (null otherwise). A transport may
   * read the socket straight into it; bytes pushed from exactly that memory are recognised and not copied again.
   */
  directTarget(maxBytes: number): Uint8Array | null {
    if (this.state !== State.Payload || this.add || this.half !== null || this.queue.length > 0 || this.paused) return null;
    const at = this.elemIndex * 4 + this.carryLen; // a plain copy keeps no carry: carryLen bytes are already in place
    const n = Math.min(maxBytes, this.payloadLeft, this.targetBytes.length - at);
    return n > 0 ? this.targetBytes.subarray(at, at + n) : null;
  }

  /** True between pause() and resume(). */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Stops delivering messages (the current piece is kept) until resume(). */
  pause(): void {
    this.paused = true;
  }

  /** Resumes delivery; queued bytes are processed on a later turn of the event loop, never re-entrantly. */
  resume(): void {
    this.paused = false;
    if (this.resumeScheduled) return;
    this.resumeScheduled = true;
    setImmediate(() => {
      this.resumeScheduled = false;
      if (!this.paused) this.drain();
    });
  }

  /** Drops everything and ignores further input. */
  stop(): void {
    this.state = State.Dead;
    this.queue.length = 0;
    this.whole = null;
    this.done = null;
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.paused && this.queue.length > 0 && this.state !== State.Dead) {
        const piece = this.queue[0];
        const off = this.consume(piece, this.queueOff);
        if (off >= piece.length) {
          this.queue.shift();
          this.queueOff = 0;
        } else this.queueOff = off;
      }
    } finally {
      this.draining = false;
    }
  }

  /** Consumes bytes of `b` from `off` until it is used up or a callback paused the reader; returns the new offset. */
  private consume(b: Buffer, off: number): number {
    const end = b.length;
    while (off < end && !this.paused) {
      switch (this.state) {
        case State.Prefix: {
          const take = Math.min(5 - this.prefixHave, end - off);
          b.copy(this.prefix, this.prefixHave, off, off + take);
          this.prefixHave += take;
          off += take;
          if (this.prefixHave === 5) this.startMessage();
          break;
        }
        case State.Head: {
          const want = Math.min(this.msgLen, MAX_HEAD_BYTES);
          const take = Math.min(want - this.msgHave, end - off);
          b.copy(this.head, this.msgHave, off, off + take);
          this.msgHave += take;
          off += take;
          if (this.msgHave === want) this.onHead();
          break;
        }
        case State.Whole: {
          const w = this.whole as Buffer;
          const take = Math.min(this.msgLen - this.msgHave, end - off);
          b.copy(w, this.msgHave, off, off + take);
          this.msgHave += take;
          off += take;
          if (this.msgHave === this.msgLen) {
            this.whole = null;
            this.endMessage();
            this.sink.onChunk(decodeChunk(w));
          }
          break;
        }
        case State.Payload: {
          const take = Math.min(this.payloadLeft, end - off);
          this.apply(b, off, off + take);
          this.payloadLeft -= take;
          off += take;
          if (this.payloadLeft === 0) this.finishPayload();
          break;
        }
        case State.Skip: {
          const take = Math.min(this.msgLen - this.msgHave, end - off);
          this.msgHave += take;
          off += take;
          if (this.msgHave === this.msgLen) this.endMessage();
          break;
        }
        case State.Dead:
          return end;
      }
    }
    return off;
  }

  private startMessage(): void {
    const flag = this.prefix[0];
    const len = this.prefix.readUInt32BE(1);
    this.prefixHave = 0;
    if (flag !== 0) return this.die(`compressed or unknown message flag ${flag} (compression is not used on this stream)`);
    if (len > this.maxMessageBytes) return this.die(`message of ${len} bytes exceeds the limit of ${this.maxMessageBytes} bytes`);
    this.msgLen = len;
    this.msgHave = 0;
    if (len === 0) {
      this.endMessage();
      this.sink.onChunk(decodeChunk(Buffer.alloc(0)));
    } else if (len <= MAX_HEAD_BYTES || this.sink.onChunkHeader === undefined) this.toWhole(0);
    else this.state = State.Head;
  }

  /** Switches to collecting the whole message, keeping the first `have` bytes already in `head`. */
  private toWhole(have: number): void {
    const w = Buffer.allocUnsafe(this.msgLen);
    if (have > 0) this.head.copy(w, 0, 0, have);
    this.whole = w;
    this.msgHave = have;
    this.state = State.Whole;
    if (have === this.msgLen) {
      this.whole = null;
      this.endMessage();
      this.sink.onChunk(decodeChunk(w));
    }
  }

  private onHead(): void {
    const have = this.msgHave;
    const parsed = decodeChunkHead(this.head, have, this.msgLen);
    const plan: InboundPlan = parsed === null || this.sink.onChunkHeader === undefined
      ? { kind: "whole" } : this.sink.onChunkHeader(parsed.header, parsed.payloadLength);
    if (this.state === State.Dead) return; // stopped from inside the callback
    if (plan.kind === "whole" || parsed === null) return this.toWhole(have);
    if (plan.kind === "skip") {
      this.state = State.Skip;
      if (this.msgHave === this.msgLen) this.endMessage();
      return;
    }
    const dtype = parsed.header.dtype;
    this.half = dtype === WireDtype.FLOAT16 ? "fp16" : dtype === WireDtype.BFLOAT16 ? "bf16" : null;
    this.elemBytes = this.half === null ? 4 : 2;
    this.target = plan.target;
    this.targetBytes = new Uint8Array(plan.target.buffer, plan.target.byteOffset, plan.target.byteLength);
    this.add = plan.add;
    this.done = plan.done;
    this.elemIndex = 0;
    this.carryLen = 0;
    this.payloadLeft = parsed.payloadLength;
    this.state = State.Payload;
    // payload bytes that already arrived with the head
    const inHead = have - parsed.payloadStart;
    if (inHead > 0) {
      this.apply(this.head, parsed.payloadStart, have);
      this.payloadLeft -= inHead;
    }
    if (this.payloadLeft === 0) this.finishPayload();
  }

  private finishPayload(): void {
    const done = this.done;
    this.done = null;
    this.target = new Float32Array(0);
    this.targetBytes = new Uint8Array(0);
    this.endMessage();
    done?.();
  }

  private endMessage(): void {
    this.state = State.Prefix;
    this.msgLen = 0;
    this.msgHave = 0;
  }

  private die(reason: string): void {
    this.stop();
    this.sink.onChunk({ ok: false, reason });
  }

  /** Writes payload bytes src[start, end) into the target at the current position. */
  private apply(src: Uint8Array, start: number, end: number): void {
    if (start >= end) return;
    if (!this.add && this.half === null) {
      // plain float32 copy: bytes go straight to their place, alignment does not matter
      const at = this.elemIndex * 4 + this.carryLen;
      const inPlace = src.buffer === this.targetBytes.buffer && src.byteOffset + start === this.targetBytes.byteOffset + at;
      if (!inPlace) this.targetBytes.set(src.subarray(start, end), at); // in place: read there by directTarget()
      const total = this.carryLen + (end - start);
      this.elemIndex += Math.floor(total / 4);
      this.carryLen = total % 4;
      return;
    }
    const eb = this.elemBytes;
    let a = start;
    if (this.carryLen > 0) {
      const take = Math.min(eb - this.carryLen, end - a);
      for (let i = 0; i < take; i++) this.carry[this.carryLen + i] = src[a + i];
      this.carryLen += take;
      a += take;
      if (this.carryLen < eb) return;
      this.applyElems(this.carry.buffer, 0, 1);
      this.carryLen = 0;
    }
    let k = Math.floor((end - a) / eb);
    const abs = src.byteOffset + a;
    if (k > 0 && abs % eb === 0) {
      this.applyElems(src.buffer as ArrayBuffer, abs, k);
      a += k * eb;
    } else {
      const perBlock = Math.floor(SCRATCH_BYTES / eb);
      while (k > 0) {
        const n = Math.min(k, perBlock);
        this.scratchBytes.set(src.subarray(a, a + n * eb), 0);
        this.applyElems(this.scratch, 0, n);
        a += n * eb;
        k -= n;
      }
    }
    for (; a < end; a++) this.carry[this.carryLen++] = src[a];
  }

  /** Applies n elements found at byteOffset (aligned) of buffer to the target. */
  private applyElems(buffer: ArrayBufferLike, byteOffset: number, n: number): void {
    const at = this.elemIndex;
    if (this.half === null) {
      addInto(this.target.subarray(at, at + n), new Float32Array(buffer, byteOffset, n));
    } else {
      decodeHalf(this.half, new Uint16Array(buffer, byteOffset, n), this.target.subarray(at, at + n), this.add);
    }
    this.elemIndex = at + n;
  }
}
