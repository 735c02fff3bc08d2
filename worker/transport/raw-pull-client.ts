/**
 * The client side of one gRPC call spoken as HTTP/2 directly on a `net.Socket`, for the bulk Pull stream.
 *
 * Why: node:http2 allocates a fresh ArrayBuffer for every socket read (at most 64 KiB) and costs a JS callback
 * per DATA piece; a socket created with `onread: { buffer, callback }` reads into one reused buffer instead
 * (no per-read allocation, reads of up to `readBufferBytes`). The wire stays standard gRPC over cleartext
 * HTTP/2 (prior knowledge), so any grpc-js or node:http2 server answers it:
 * - sends the client preface, SETTINGS (push off, HPACK dynamic table size 0, stream window `windowBytes`,
 *   SETTINGS_MAX_FRAME_SIZE `maxFrameBytes`), a connection WINDOW_UPDATE to `windowBytes`, the request HEADERS
 *   (HPACK literals, hpack-encode.ts) and the request message in one DATA frame with END_STREAM;
 * - acknowledges SETTINGS and PING, returns flow-control credit (connection and stream WINDOW_UPDATE) once a
 *   quarter of the window was consumed and the consumer is not paused, honours RST_STREAM and GOAWAY;
 * - decodes response headers and trailers with HpackDecoder (static + dynamic table, Huffman) and reports the
 *   gRPC status of the call (trailers, or a trailers-only response).
 * DATA is handed over as views of the reused buffer (valid only during the onData call), or of the consumer's
 * own memory when it asked for the bytes there (bodyTarget). One stream (id 1) per
 * connection; the connection closes when the call ends.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { TlsPem } from "../../shared/security/tls";
import { H2FrameError, H2FrameParser, HeaderBlockCollector, goawayOf, pingAck, settingsOf, type H2FrameSink, type HeaderBlock } from "./h2-frame-parser";
import {
  CLIENT_PREFACE, DEFAULT_WINDOW, FRAME_HEADER_BYTES, Flag, FrameType, H2Error, Setting, frame, goawayFrame, h2ErrorName, rstStreamFrame, settingsFrame,
  windowUpdateFrame,
} from "./h2-frames";
import { HpackDecoder, HpackError } from "./hpack-decoder";
import { encodeLiteralHeaders, type OutgoingField } from "./hpack-encode";

/** What to call and how to receive. */
export interface RawPullOptions {
  host: string;
  port: number;
  /** How errors name the server, e.g. "rank 1 (127.0.0.1:4000)". */
  peer: string;
  /** gRPC method path, e.g. "/ringtrain.peer.Peer/Pull". */
  path: string;
  /** Extra request headers (lower-case names), after the gRPC ones. */
  headers: readonly OutgoingField[];
  /** The request message, already gRPC-framed (5-byte prefix). */
  body: Buffer;
  /** Stream and connection receive window (bytes, at most 2^31 - 1). */
  windowBytes: number;
  /** SETTINGS_MAX_FRAME_SIZE to advertise (16384 .. 2^24 - 1). */
  maxFrameBytes: number;
  /**
   * Size of the reused receive buffer (default 256 KiB: large enough for few syscalls, small enough that one
   * read's summing does not hold up the event loop, which also drives this process's sends; 1 MiB measured
   * slightly slower wall time at 4 MiB, N = 2).
   */
  readBufferBytes?: number;
  /** Mutual TLS (ALPN "h2"): our certificate, and the CA the server's certificate must be signed by. */
  tls?: TlsPem;
  /** Dial this Unix socket (local-socket.ts) instead of host:port; plaintext only (ignored with `tls`). */
  localPath?: string;
}

/** Why RawPullClient.connect failed; `handshake` marks a TLS handshake failure, which retrying will not cure. */
export class RawConnectError extends Error {
  constructor(message: string, readonly handshake: boolean) {
    super(message);
    this.name = "RawConnectError";
  }
}

/** Final gRPC status of the call. */
export interface CallStatus {
  code: number;
  details: string;
}

/** Callbacks of a RawPullClient; all run on the event loop. */
export interface RawPullEvents {
  /** Response headers of an accepted call (not sent for a trailers-only response). */
  onResponse(headers: Readonly<Record<string, string>>): void;
  /** The next piece of the response body; a view of the reused buffer, valid only during this call. */
  onData(piece: Buffer): void;
  /**
   * The call is over: `status` from the trailers (or the trailers-only response), or null when the stream or
   * connection failed first (`detail` says how, naming the peer). Called exactly once, unless cancel() ran first.
   */
  onEnd(status: CallStatus | null, detail: string): void;
  /**
   * Optional: the residue modulo 4 that the address of the next body byte should have (-1: any). The client
   * then places its next socket read at an offset of the receive buffer that puts that byte there, so a
   * consumer can read float32 / 16-bit elements through aligned views.
   */
  bodyAlignment?(): number;
  /**
   * Optional: memory where the next body bytes (at most `maxBytes`) belong, if the consumer wants them read
   * there directly (e.g. a plain copy into an accepted tensor), or null. Inside a large DATA frame the next
   * socket read then goes straight into it, saving one copy; onData still reports the bytes, as a view of it.
   */
  bodyTarget?(maxBytes: number): Uint8Array | null;
}

const STREAM_ID = 1;
const MAX_CONTROL_BYTES = 256 * 1024;
const DEFAULT_READ_BUFFER = 256 * 1024;
/** Smallest rest of a DATA frame worth a read of its own (to align the next frame). */
const ALIGNED_READ_MIN = 64 * 1024;
/** Smallest read placed straight into the consumer's memory (see bodyTarget). */
const DIRECT_READ_MIN = 64 * 1024;
/** DATA frames from this size on are worth an extra small read per frame to keep their data out of the reused buffer. */
const LARGE_FRAME = 2 * DIRECT_READ_MIN;

/** One gRPC server-streaming call on its own raw-socket HTTP/2 connection. */
export class RawPullClient implements H2FrameSink {
  private readonly parser: H2FrameParser;
  /** We advertise a 0-byte dynamic table; the decoder still accepts the protocol default (4096), to be lenient. */
  private readonly hpack = new HpackDecoder(4096);
  private readonly readBuffer: Buffer;
  private readonly readBytes: number;
  /** The header block being collected across HEADERS and CONTINUATION frames. */
  private readonly headerBlock = new HeaderBlockCollector();
  private gotResponse = false;
  private httpStatus = "";
  private ended = false;
  private paused = false;
  private unacked = 0;
  private lastError = "";
  private peerGoaway: string | null = null;
  /** Length of the last DATA frame (whether the sender uses frames large enough for direct reads). */
  private lastDataFrameBytes = 0;

  private constructor(private readonly opts: RawPullOptions, private readonly events: RawPullEvents, private readonly socket: net.Socket, readBuffer: Buffer) {
    this.readBuffer = readBuffer;
    this.readBytes = readBuffer.length - 3;
    this.parser = new H2FrameParser(opts.maxFrameBytes, MAX_CONTROL_BYTES, this);
  }

  /**
   * Connects, sends the preface, settings and the request, and resolves once the TCP connection is up;
   * rejects (naming the peer) if it cannot be opened before `deadline` (ms since the epoch).
   */
  static connect(opts: RawPullOptions, events: RawPullEvents, deadline: number): Promise<RawPullClient> {
    // 3 spare bytes: each read may start at offset 0..3 (see bodyAlignment)
    const readBuffer = Buffer.allocUnsafeSlow((opts.readBufferBytes ?? DEFAULT_READ_BUFFER) + 3);
    let client: RawPullClient | null = null;
    const onread = {
      buffer: (): Uint8Array => (client === null ? readBuffer : client.nextReadBuffer()),
      callback: (n: number, buf: Uint8Array): boolean => (client === null ? false : client.onRead(buf, n)),
    };
    const socket: net.Socket = opts.tls === undefined
      ? net.connect(opts.localPath !== undefined ? { path: opts.localPath, onread } : { host: opts.host, port: opts.port, noDelay: true, onread })
      // node:tls honours onread (documented for tls.connect) although @types/node leaves it out of ConnectionOptions
      : tls.connect({ host: opts.host, port: opts.port, ...opts.tls, ALPNProtocols: ["h2"], onread } as tls.ConnectionOptions);
    client = new RawPullClient(opts, events, socket, readBuffer);
    const c = client;
    return new Promise((resolve, reject) => {
      let tcpUp = false;
      socket.once("connect", () => (tcpUp = true));
      const fail = (why: string, handshake = false): void => {
        clearTimeout(t);
        socket.destroy();
        reject(new RawConnectError(`cannot connect to ${opts.peer}: ${why}`, handshake));
      };
      const t = setTimeout(() => fail(tcpUp ? "no TLS session before the deadline" : "no TCP connection before the deadline"), Math.max(1, deadline - Date.now()));
      // a TLS handshake that fails once the TCP connection is up (a certificate not signed by the CA, a name
      // that does not match) will not succeed on retry; a refused or reset connection might
      const onErr = (e: Error): void => fail(opts.tls === undefined ? e.message : `TLS: ${e.message}`, opts.tls !== undefined && tcpUp);
      socket.once("error", onErr);
      socket.once(opts.tls === undefined ? "connect" : "secureConnect", () => {
        if (socket instanceof tls.TLSSocket && socket.alpnProtocol !== "h2") {
          fail(`TLS: the server did not agree to HTTP/2 (ALPN ${JSON.stringify(socket.alpnProtocol)})`, true);
          return;
        }
        clearTimeout(t);
        socket.removeListener("error", onErr);
        socket.setNoDelay(true);
        c.start();
        resolve(c);
      });
    });
  }

  /** True once the call ended, failed or was cancelled. */
  get done(): boolean {
    return this.ended;
  }

  /** Stops reading the socket and withholds flow-control credit until resume(). */
  pause(): void {
    this.paused = true;
  }

  /** Resumes reading and returns the credit held back while paused. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.ended) return;
    this.sendCredit(true);
    if (!this.socket.destroyed) this.socket.resume();
  }

  /** Cancels the call (RST_STREAM CANCEL) and closes the connection; no further events. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    this.finishConnection(rstStreamFrame(STREAM_ID, H2Error.CANCEL), H2Error.NO_ERROR);
  }

  private start(): void {
    const { opts, socket } = this;
    socket.on("error", (e: Error) => (this.lastError = e.message));
    socket.on("close", () => {
      if (this.ended) return;
      const why = this.peerGoaway !== null ? `it sent GOAWAY ${this.peerGoaway} and closed the connection`
        : this.lastError !== "" ? `connection lost: ${this.lastError}` : "connection closed by the peer";
      this.end(null, `stream from ${opts.peer} ended without a gRPC status: ${why}`);
    });
    const window = Math.min(2 ** 31 - 1, opts.windowBytes);
    const head = encodeLiteralHeaders([
      { name: ":method", value: "POST" }, { name: ":scheme", value: "http" }, { name: ":path", value: opts.path },
      { name: ":authority", value: `${opts.host}:${opts.port}` }, { name: "content-type", value: "application/grpc" },
      { name: "te", value: "trailers" }, ...opts.headers,
    ]);
    socket.cork();
    socket.write(CLIENT_PREFACE);
    socket.write(settingsFrame([
      [Setting.ENABLE_PUSH, 0], [Setting.HEADER_TABLE_SIZE, 0], [Setting.INITIAL_WINDOW_SIZE, window], [Setting.MAX_FRAME_SIZE, opts.maxFrameBytes],
    ]));
    if (window > DEFAULT_WINDOW) socket.write(windowUpdateFrame(0, window - DEFAULT_WINDOW));
    socket.write(frame(FrameType.HEADERS, Flag.END_HEADERS, STREAM_ID, head));
    socket.write(frame(FrameType.DATA, Flag.END_STREAM, STREAM_ID, opts.body));
    socket.uncork();
  }

  /**
   * Where the next socket read goes: the reused buffer, from the offset (0..3) that aligns the next body byte
   * (body byte j further on wants residue want + j). Inside a large DATA frame the read stops at the frame's
   * end, so the next frame's data (after a 9-byte header) can be aligned by the following read; when only a
   * small rest of the frame is left, the read is placed to align the next frame's data instead. Small frames
   * (node:http2 sends 16 KiB ones) cannot all be aligned and are simply read in bulk.
   */
  private nextReadBuffer(): Uint8Array {
    const direct = this.directReadBuffer();
    if (direct !== null) return direct;
    const left = this.parser.dataLeftInFrame;
    const want = this.events.bodyAlignment?.() ?? -1;
    const before = want < 0 ? -1 : this.parser.bytesBeforeData;
    if (before < 0) return this.readBuffer.subarray(0, this.readBytes);
    let len = this.readBytes;
    let gap = before;
    if (left >= ALIGNED_READ_MIN && left < len) len = left;
    else if (left >= 0 && left < ALIGNED_READ_MIN) gap = FRAME_HEADER_BYTES; // body byte `left` on wants want + left, sits at left + 9
    const shift = (((want - gap) % 4) + 4) % 4;
    return this.readBuffer.subarray(shift, shift + len);
  }

  /**
   * A read that serves bodyTarget, or null: straight into the consumer's memory inside a DATA frame; and, while
   * the sender uses large frames, reads that stop at the next frame's data (the small rest of a frame plus the
   * next header, or a header alone), so that no large frame's data lands in the reused buffer first.
   */
  private directReadBuffer(): Uint8Array | null {
    if (this.events.bodyTarget === undefined) return null;
    const before = this.parser.bytesBeforeData;
    const left = this.parser.dataLeftInFrame;
    const largeFrames = this.lastDataFrameBytes >= LARGE_FRAME;
    if (before === 0 && left > 0) {
      const target = this.events.bodyTarget(left);
      if (target === null) return null;
      if (target.length >= DIRECT_READ_MIN) return target;
      return target.length === left && largeFrames ? this.readBuffer.subarray(0, left + FRAME_HEADER_BYTES) : null;
    }
    if (before > 0 && largeFrames && this.events.bodyTarget(1) !== null) return this.readBuffer.subarray(0, before);
    return null;
  }

  /** onread callback: parses `n` fresh bytes at the start of `buf` (the reused buffer, or the consumer's memory from bodyTarget); false pauses the socket. */
  private onRead(buf: Uint8Array, n: number): boolean {
    if (this.ended) return false;
    try {
      this.parser.push(Buffer.from(buf.buffer, buf.byteOffset, n));
    } catch (e) {
      if (e instanceof H2FrameError) this.connectionError(e.code, e.message);
      else if (e instanceof HpackError) this.connectionError(H2Error.COMPRESSION_ERROR, `undecodable header block: ${e.message}`);
      else throw e;
      return false;
    }
    if (this.ended) return false;
    if (this.paused) return false;
    this.sendCredit(false);
    return true;
  }

  // H2FrameSink -----------------------------------------------------------------------------------------------

  /** @internal DATA piece (frame parser callback). */
  onData(streamId: number, piece: Buffer): void {
    if (streamId !== STREAM_ID) throw new H2FrameError(`DATA on stream ${streamId}, which we never opened`, H2Error.PROTOCOL_ERROR);
    if (!this.gotResponse) throw new H2FrameError("DATA before the response headers", H2Error.PROTOCOL_ERROR);
    if (!this.ended && piece.length > 0) this.events.onData(piece);
  }

  /** @internal end of a DATA frame (frame parser callback). */
  onDataEnd(_streamId: number, flowBytes: number, flags: number): void {
    this.unacked += flowBytes;
    this.lastDataFrameBytes = flowBytes;
    if ((flags & Flag.END_STREAM) !== 0 && !this.ended) this.end(null, `${this.opts.peer} ended the stream without trailers (no gRPC status)`);
  }

  /** @internal any other frame (frame parser callback). */
  onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    this.headerBlock.checkOrder(type);
    switch (type) {
      case FrameType.HEADERS:
      case FrameType.CONTINUATION: {
        const complete = this.headerBlock.onFrame(type, flags, streamId, payload);
        if (complete !== undefined) this.endHeaderBlock(complete);
        return;
      }
      case FrameType.SETTINGS:
        // the values do not matter here: this side only sends the small request, within any peer's limits
        if (settingsOf(flags, streamId, payload) !== null) this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        return;
      case FrameType.PING: {
        const ack = pingAck(flags, payload);
        if (ack !== null) this.write(ack);
        return;
      }
      case FrameType.RST_STREAM: {
        if (streamId !== STREAM_ID || payload.length !== 4) return;
        const code = payload.readUInt32BE(0);
        this.end(null, `${this.opts.peer} reset the stream: HTTP/2 ${h2ErrorName(code)}`);
        this.finishConnection(null, H2Error.NO_ERROR);
        return;
      }
      case FrameType.GOAWAY: {
        const { lastStreamId, reason } = goawayOf(payload);
        this.peerGoaway = reason;
        if (lastStreamId < STREAM_ID) {
          this.end(null, `${this.opts.peer} refused the stream: GOAWAY ${this.peerGoaway}`);
          this.finishConnection(null, H2Error.NO_ERROR);
        }
        return;
      }
      case FrameType.PUSH_PROMISE:
        throw new H2FrameError("PUSH_PROMISE although push is disabled", H2Error.PROTOCOL_ERROR);
      default:
        return; // PRIORITY, WINDOW_UPDATE (we send only the small request) and unknown types
    }
  }

  private endHeaderBlock({ streamId, flags, block }: HeaderBlock): void {
    const fields = this.hpack.decode(block);
    if (streamId !== STREAM_ID || this.ended) return; // decoded only to keep the HPACK state in step
    const h: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [name, value] of fields) h[name] = name in h ? `${h[name]},${value}` : value;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (!this.gotResponse) {
      this.gotResponse = true;
      this.httpStatus = h[":status"] ?? "";
      if (this.httpStatus !== "200") {
        if (endStream) this.end({ code: GrpcStatus.UNKNOWN, details: `HTTP status ${this.httpStatus}` }, "");
        return;
      }
      if (h["grpc-status"] !== undefined || endStream) return this.end(statusOf(h), "");
      this.events.onResponse(h);
      return;
    }
    if (!endStream) throw new H2FrameError("a second header block without END_STREAM", H2Error.PROTOCOL_ERROR);
    if (this.httpStatus !== "200") return this.end({ code: GrpcStatus.UNKNOWN, details: `HTTP status ${this.httpStatus}` }, "");
    this.end(statusOf(h), "");
  }

  // -----------------------------------------------------------------------------------------------------------

  private end(status: CallStatus | null, detail: string): void {
    if (this.ended) return;
    this.ended = true;
    this.events.onEnd(status, detail);
    this.finishConnection(null, H2Error.NO_ERROR);
  }

  private connectionError(code: number, message: string): void {
    this.end(null, `HTTP/2 error on the stream from ${this.opts.peer}: ${message}`);
    this.finishConnection(null, code);
  }

  /** Sends `first` (if any) and GOAWAY, then closes the socket once they are flushed. */
  private finishConnection(first: Buffer | null, code: number): void {
    const s = this.socket;
    if (s.destroyed) return;
    try {
      if (first !== null) s.write(first);
      s.end(goawayFrame(0, code));
    } catch {
      s.destroy();
    }
    setTimeout(() => s.destroy(), 1000).unref();
  }

  /** Returns consumed flow-control credit once a quarter of the window is used (or any, when `force`). */
  private sendCredit(force: boolean): void {
    const u = this.unacked;
    if (u === 0 || (!force && u < this.opts.windowBytes / 4)) return;
    this.unacked = 0;
    this.socket.cork();
    this.write(windowUpdateFrame(0, u));
    this.write(windowUpdateFrame(STREAM_ID, u));
    this.socket.uncork();
  }

  private write(b: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(b);
  }
}

function statusOf(h: Readonly<Record<string, string>>): CallStatus {
  const raw = h["grpc-status"];
  const code = raw === undefined || !/^\d+$/.test(raw) ? GrpcStatus.UNKNOWN : Number(raw);
  const msg = h["grpc-message"] ?? (raw === undefined ? "response has no grpc-status" : "");
  let details = msg;
  try {
    details = decodeURIComponent(msg);
  } catch {
    /* keep it raw */
  }
  return { code, details };
}
