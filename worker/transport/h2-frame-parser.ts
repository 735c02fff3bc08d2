/**
 * Incremental HTTP/2 frame parser for a receive buffer that is reused between socket reads.
 *
 * DATA frames are streamed: their data (padding removed) is handed to the sink as views of the input, piece by
 * piece, never copied; every other frame is collected (at most `maxControlBytes`) and handed over whole. Views
 * are valid only during the sink call, because the caller refills the same memory on the next read.
 * Framing errors (oversized frames, bad padding) throw H2FrameError, a connection error for the caller.
 */
import { FRAME_HEADER_BYTES, Flag, FrameType, H2Error, frame, h2ErrorName } from "./h2-frames";

/** A framing error that must end the connection; `code` is the HTTP/2 error code to send in GOAWAY. */
export class H2FrameError extends Error {
  override readonly name = "H2FrameError";
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/** Where the parser delivers frames. Buffers passed in are valid only during the call. */
export interface H2FrameSink {
  /** A complete frame other than DATA. */
  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void;
  /** The next piece of a DATA frame's data (padding removed; may be empty only for an empty frame). */
  onData(streamId: number, piece: Buffer): void;
  /** A DATA frame ended: `flowBytes` is its whole payload length (what flow control counts), `flags` its flags. */
  onDataEnd(streamId: number, flowBytes: number, flags: number): void;
}

const enum State {
  Header,
  PadLength,
  Data,
  Padding,
  Control,
}

/** Parses a stream of HTTP/2 frames fed in arbitrary pieces. */
export class H2FrameParser {
  private state = State.Header;
  private readonly hdr = Buffer.alloc(FRAME_HEADER_BYTES);
  private hdrHave = 0;
  private type = 0;
  private flags = 0;
  private streamId = 0;
  private length = 0;
  /** Bytes of the current frame's payload not yet consumed (DATA: data + padding). */
  private left = 0;
  private padding = 0;
  private ctl: Buffer;
  private ctlHave = 0;

  /**
   * `maxFrameBytes`: the SETTINGS_MAX_FRAME_SIZE this side advertised (larger frames are a FRAME_SIZE_ERROR);
   * `maxControlBytes`: the largest non-DATA frame accepted (header blocks, settings, ...).
   */
  constructor(private readonly maxFrameBytes: number, private readonly maxControlBytes: number, private readonly sink: H2FrameSink) {
    this.ctl = Buffer.alloc(Math.min(16384, maxControlBytes));
  }

  /** True between frames (a connection may end cleanly only here). */
  get atFrameBoundary(): boolean {
    return this.state === State.Header && this.hdrHave === 0;
  }

  /**
   * How many bytes of the input come before the next DATA byte, assuming the next frame (if one must start
   * first) is an unpadded DATA frame; -1 when unknown (inside padding or a non-DATA frame).
   */
  get bytesBeforeData(): number {
    if (this.state === State.Data) return this.left > this.padding ? 0 : -1;
    if (this.state === State.Header) return FRAME_HEADER_BYTES - this.hdrHave;
    if (this.state === State.PadLength) return 1;
    return -1;
  }

  /** Data bytes (padding excluded) left in the DATA frame being read; -1 when not inside DATA. */
  get dataLeftInFrame(): number {
    return this.state === State.Data ? this.left - this.padding : -1;
  }

  /** Consumes all of `buf`, calling the sink for every frame (piece) it completes. */
  push(buf: Buffer): void {
    let off = 0;
    const end = buf.length;
    while (off < end) {
      switch (this.state) {
        case State.Header: {
          if (this.hdrHave === 0 && end - off >= FRAME_HEADER_BYTES) {
            this.startFrame(buf, off);
            off += FRAME_HEADER_BYTES;
          } else {
            const take = Math.min(FRAME_HEADER_BYTES - this.hdrHave, end - off);
            buf.copy(this.hdr, this.hdrHave, off, off + take);
            this.hdrHave += take;
            off += take;
            if (this.hdrHave === FRAME_HEADER_BYTES) {
              this.hdrHave = 0;
              this.startFrame(this.hdr, 0);
            }
          }
          break;
        }
        case State.PadLength: {
          this.padding = buf[off++];
          this.left--;
          if (this.padding > this.left) throw new H2FrameError(`DATA frame on stream ${this.streamId} has ${this.padding} bytes of padding but only ${this.left} bytes after the pad length`, H2Error.PROTOCOL_ERROR);
          this.afterDataStart();
          break;
        }
        case State.Data: {
          const take = Math.min(this.left - this.padding, end - off);
          this.left -= take;
          this.sink.onData(this.streamId, buf.subarray(off, off + take));
          off += take;
          if (this.left === this.padding) this.afterData();
          break;
        }
        case State.Padding: {
          const take = Math.min(this.left, end - off);
          this.left -= take;
          off += take;
          if (this.left === 0) this.endData();
          break;
        }
        case State.Control: {
          const take = Math.min(this.left, end - off);
          buf.copy(this.ctl, this.ctlHave, off, off + take);
          this.ctlHave += take;
          this.left -= take;
          off += take;
          if (this.left === 0) this.endControl();
          break;
        }
      }
    }
  }

  private startFrame(b: Buffer, at: number): void {
    this.length = b.readUIntBE(at, 3);
    this.type = b[at + 3];
    this.flags = b[at + 4];
    this.streamId = b.readUInt32BE(at + 5) & 0x7fffffff;
    this.left = this.length;
    if (this.length > this.maxFrameBytes) {
      throw new H2FrameError(`frame of type ${this.type} with ${this.length} bytes exceeds our SETTINGS_MAX_FRAME_SIZE ${this.maxFrameBytes}`, H2Error.FRAME_SIZE_ERROR);
    }
    if (this.type === FrameType.DATA) {
      this.padding = 0;
      if ((this.flags & Flag.PADDED) !== 0) {
        if (this.length === 0) throw new H2FrameError(`padded DATA frame on stream ${this.streamId} has no pad length`, H2Error.FRAME_SIZE_ERROR);
        this.state = State.PadLength;
      } else this.afterDataStart();
      return;
    }
    if (this.length > this.maxControlBytes) {
      throw new H2FrameError(`frame of type ${this.type} with ${this.length} bytes exceeds the ${this.maxControlBytes}-byte limit for non-DATA frames`, H2Error.FRAME_SIZE_ERROR);
    }
    if (this.ctl.length < this.length) this.ctl = Buffer.alloc(Math.min(this.maxControlBytes, Math.max(this.length, 2 * this.ctl.length)));
    this.ctlHave = 0;
    this.state = State.Control;
    if (this.length === 0) this.endControl();
  }

  private afterDataStart(): void {
    this.state = State.Data;
    if (this.left === this.padding) {
      this.sink.onData(this.streamId, EMPTY);
      this.afterData();
    }
  }

  private afterData(): void {
    if (this.left > 0) this.state = State.Padding;
    else this.endData();
  }

  private endData(): void {
    this.state = State.Header;
    this.sink.onDataEnd(this.streamId, this.length, this.flags);
  }

  private endControl(): void {
    this.state = State.Header;
    this.sink.onFrame(this.type, this.flags, this.streamId, this.ctl.subarray(0, this.length));
  }
}

const EMPTY = Buffer.alloc(0);

/** A complete header block: the HEADERS frame's stream and flags, and the block (fragments concatenated). */
export interface HeaderBlock {
  streamId: number;
  flags: number;
  block: Buffer;
}

/**
 * Collects one header block across a HEADERS frame and its CONTINUATION frames (RFC 9113 section 4.3), which no
 * other frame may interleave. Padding and priority fields are stripped; fragments are copied out of the receive buffer.
 */
export class HeaderBlockCollector {
  private parts: Buffer[] | null = null;
  private streamId = 0;
  private flags = 0;

  /** Throws unless a frame of `type` may arrive now (only CONTINUATION may while a block is open). */
  checkOrder(type: number): void {
    if (this.parts !== null && type !== FrameType.CONTINUATION) throw new H2FrameError(`frame of type ${type} inside a header block`, H2Error.PROTOCOL_ERROR);
  }

  /** Feeds a HEADERS or CONTINUATION frame: returns the block once END_HEADERS completes it, else undefined. */
  onFrame(type: FrameType.HEADERS | FrameType.CONTINUATION, flags: number, streamId: number, payload: Buffer): HeaderBlock | undefined {
    this.checkOrder(type);
    let parts: Buffer[];
    if (type === FrameType.HEADERS) {
      parts = [headersFragment(flags, payload)];
      this.streamId = streamId;
      this.flags = flags;
    } else {
      if (this.parts === null || streamId !== this.streamId) throw new H2FrameError("CONTINUATION without a header block", H2Error.PROTOCOL_ERROR);
      parts = this.parts;
      parts.push(Buffer.from(payload));
    }
    this.parts = parts;
    if ((flags & Flag.END_HEADERS) === 0) return undefined;
    this.parts = null;
    return { streamId: this.streamId, flags: this.flags, block: parts.length === 1 ? parts[0] : Buffer.concat(parts) };
  }
}

/** The header block fragment of a HEADERS frame: the payload less its padding and priority fields, copied. */
function headersFragment(flags: number, payload: Buffer): Buffer {
  let start = 0;
  let end = payload.length;
  if ((flags & Flag.PADDED) !== 0) {
    if (payload.length < 1) throw new H2FrameError("padded HEADERS without pad length", H2Error.FRAME_SIZE_ERROR);
    end -= payload[0];
    start = 1;
  }
  if ((flags & Flag.PRIORITY) !== 0) start += 5;
  if (end < start) throw new H2FrameError("HEADERS padding or priority longer than the frame", H2Error.PROTOCOL_ERROR);
  return Buffer.from(payload.subarray(start, end));
}

/**
 * The (identifier, value) pairs of a SETTINGS frame (RFC 9113 section 6.5), or null when it is an acknowledgement;
 * throws H2FrameError on one sent on a stream or of a length that is not a multiple of 6.
 */
export function settingsOf(flags: number, streamId: number, payload: Buffer): [number, number][] | null {
  if (streamId !== 0) throw new H2FrameError("SETTINGS on a stream", H2Error.PROTOCOL_ERROR);
  if ((flags & Flag.ACK) !== 0) return null;
  if (payload.length % 6 !== 0) throw new H2FrameError(`SETTINGS of ${payload.length} bytes`, H2Error.FRAME_SIZE_ERROR);
  const pairs: [number, number][] = [];
  for (let i = 0; i < payload.length; i += 6) pairs.push([payload.readUInt16BE(i), payload.readUInt32BE(i + 2)]);
  return pairs;
}

/** The PING frame to answer with (RFC 9113 section 6.7), or null when this one is itself the answer; throws unless 8 bytes. */
export function pingAck(flags: number, payload: Buffer): Buffer | null {
  if (payload.length !== 8) throw new H2FrameError(`PING of ${payload.length} bytes`, H2Error.FRAME_SIZE_ERROR);
  return (flags & Flag.ACK) === 0 ? frame(FrameType.PING, Flag.ACK, 0, payload) : null;
}

/** A GOAWAY frame's last processed stream and its error code (and debug text, if any) in words (RFC 9113 section 6.8). */
export function goawayOf(payload: Buffer): { lastStreamId: number; reason: string } {
  if (payload.length < 8) throw new H2FrameError("GOAWAY shorter than 8 bytes", H2Error.FRAME_SIZE_ERROR);
  const debug = payload.length > 8 ? ` "${payload.subarray(8).toString("latin1")}"` : "";
  return { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, reason: `${h2ErrorName(payload.readUInt32BE(4))}${debug}` };
}
