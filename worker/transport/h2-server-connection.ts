/**
 * The server side of one HTTP/2 connection (cleartext, prior knowledge) spoken directly on a net.Socket, for
 * the peer port of the "http2-socket" ring transport.
 *
 * Why: node:http2 always sends 16 KiB DATA frames whatever SETTINGS_MAX_FRAME_SIZE the receiver advertises and
 * copies every write into nghttp2. Here a response message is written as DATA frames of up to the peer's
 * SETTINGS_MAX_FRAME_SIZE, each one socket writev of [frame header, views of the queued buffers] (the tensor
 * memory itself, no copy), within the peer's connection and stream flow-control windows (a frame is cut short
 * when a window is, the rest waits for WINDOW_UPDATE). A grpc-js client advertises 16 KiB frames: it gets them.
 *
 * The rest is what a gRPC server of unary-request calls needs: the client preface, SETTINGS and their ACK
 * (INITIAL_WINDOW_SIZE changes applied to open streams), PING ACK, request HEADERS (+ CONTINUATION) through
 * HpackDecoder, request DATA collected per stream up to a limit (connection credit returned at once), response
 * headers and trailers as HPACK literals (hpack-encode.ts), RST_STREAM both ways, GOAWAY both ways.
 */
import type * as net from "node:net";
import { H2FrameError, H2FrameParser, HeaderBlockCollector, goawayOf, pingAck, settingsOf, type H2FrameSink, type HeaderBlock } from "./h2-frame-parser";
import {
  CLIENT_PREFACE, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, FRAME_HEADER_BYTES, Flag, FrameType, H2Error, Setting, frame, goawayFrame, h2ErrorName,
  rstStreamFrame, settingsFrame, windowUpdateFrame,
} from "./h2-frames";
import { HpackDecoder, HpackError } from "./hpack-decoder";
import { encodeLiteralHeaders, type OutgoingField } from "./hpack-encode";

/** Limits and callbacks of one server connection. */
export interface H2ServerConnectionOptions {
  /** How errors name this server, e.g. "rank 1 (127.0.0.1:4000)". */
  self: string;
  /** Largest request body (bytes, all DATA of the stream); larger requests are answered with `onRequest(…, string)`. */
  maxRequestBytes: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised and enforced (REFUSED_STREAM beyond it). */
  maxConcurrentStreams: number;
  /**
   * A request is complete (END_STREAM seen): `body` is all its DATA, or a string saying why it is unusable
   * (too large). Headers are lower-case names; repeated fields are joined with ",".
   */
  onRequest(stream: H2ServerStream, headers: Readonly<Record<string, string>>, body: Buffer | string): void;
}

/** Stream receive window we advertise: far above any request we accept, so requests never wait for credit. */
const STREAM_RECEIVE_WINDOW = 1024 * 1024;
const MAX_CONTROL_BYTES = 64 * 1024;
const MAX_WINDOW = 2 ** 31 - 1;
const REFUSED_STREAM = 0x7;
const STREAM_CLOSED = 0x5;

interface Queued {
  buf: Buffer;
  cb: (() => void) | null;
}

/**
 * One request/response stream of an H2ServerConnection, as the request handler sees it. Write order: respond()
 * once, then write() any number of times, then end(); or respondTrailersOnly(); cancel() at any time.
 */
export class H2ServerStream {
  /** Called once when the stream is over: `error` null after a clean end, else why (reset, connection lost). */
  onClose: ((error: string | null) => void) | null = null;
  /** @internal peer's flow-control window for this stream. */
  sendWindow: number;
  /** @internal DATA waiting to be sent (the head item is partly sent when `headOff` > 0). */
  readonly queue: Queued[] = [];
  /** @internal bytes of the head queue item already sent. */
  headOff = 0;
  /** @internal bytes in `queue` not yet sent. */
  queuedBytes = 0;
  /** @internal trailer block to send once the queue is empty. */
  trailers: Buffer | null = null;
  /** @internal request headers (lower-case names, repeated fields joined with ","). */
  requestHeaders: Record<string, string> = {};
  /** @internal request body parts and size. */
  readonly body: Buffer[] = [];
  bodyBytes = 0;
  /** @internal the request side ended (END_STREAM received). */
  remoteEnded = false;
  /** @internal we sent END_STREAM. */
  localEnded = false;
  private headersSent = false;
  private over = false;

  /** @internal created by the connection for a new request. */
  constructor(readonly id: number, private readonly conn: H2ServerConnection, sendWindow: number) {
    this.sendWindow = sendWindow;
  }

  /** True once the stream ended, was reset or its connection is gone. */
  get closed(): boolean {
    return this.over;
  }

  /** Sends the response headers (no END_STREAM). */
  respond(fields: readonly OutgoingField[]): void {
    if (this.over || this.headersSent) throw new Error(`H2ServerStream ${this.id}: respond() after the response started or the stream closed`);
    this.headersSent = true;
    this.conn.sendHeaders(this, fields, false);
  }

  /** Sends a response that is only a header block with END_STREAM (e.g. a gRPC trailers-only status). */
  respondTrailersOnly(fields: readonly OutgoingField[]): void {
    if (this.over || this.headersSent) return;
    this.headersSent = true;
    this.localEnded = true;
    this.conn.sendHeaders(this, fields, true);
    this.conn.settle(this);
  }

  /**
   * Queues `parts` as response DATA, in order, without copying; `onWritten` runs once the socket no longer reads
   * the last part's memory (written out, or dropped because the stream or connection closed).
   */
  write(parts: readonly Buffer[], onWritten: (() => void) | null): void {
    if (!this.headersSent || this.trailers !== null || this.localEnded) throw new Error(`H2ServerStream ${this.id}: write() outside the response body`);
    if (this.over) {
      if (onWritten !== null) process.nextTick(onWritten);
      return;
    }
    for (let i = 0; i < parts.length; i++) {
      const buf = parts[i];
      this.queue.push({ buf, cb: i === parts.length - 1 ? onWritten : null });
      this.queuedBytes += buf.length;
    }
    if (parts.length === 0 && onWritten !== null) process.nextTick(onWritten);
    this.conn.flush(this);
  }

  /** Ends the response with a trailer block (sent after all queued DATA). */
  end(trailers: readonly OutgoingField[]): void {
    if (this.over || this.trailers !== null || this.localEnded) return;
    this.trailers = encodeLiteralHeaders(trailers);
    this.conn.flush(this);
  }

  /** Resets the stream (RST_STREAM `code`); queued DATA is dropped. No onClose call follows. */
  cancel(code: number = H2Error.CANCEL): void {
    if (this.over) return;
    this.onClose = null;
    this.conn.reset(this, code);
  }

  /** @internal marks the stream over, releases queued memory and reports `error`. */
  finish(error: string | null): void {
    if (this.over) return;
    this.over = true;
    for (const q of this.queue) if (q.cb !== null) process.nextTick(q.cb);
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.headOff = 0;
    const cb = this.onClose;
    this.onClose = null;
    cb?.(error);
  }
}

/** One accepted HTTP/2 connection. */
export class H2ServerConnection implements H2FrameSink {
  private readonly parser: H2FrameParser;
  private readonly hpack = new HpackDecoder(4096);
  private readonly streams = new Map<number, H2ServerStream>();
  /** Streams with DATA or trailers waiting for flow-control credit. */
  private readonly blocked = new Set<H2ServerStream>();
  private prefaceHave = 0;
  private connWindow = DEFAULT_WINDOW;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private lastStreamId = 0;
  /** The header block being collected across HEADERS and CONTINUATION frames. */
  private readonly headerBlock = new HeaderBlockCollector();
  private dead = false;
  private goingAway = false;
  private peerGoaway: string | null = null;
  private lastError = "";

  /** Takes over `socket` (already connected) and sends the server preface. */
  /** Who is at the other end, for error texts ("host:port", or the Unix socket). */
  readonly remote: string;

  constructor(private readonly socket: net.Socket, private readonly opts: H2ServerConnectionOptions) {
    // read now: a closed socket no longer has an address; a same-host neighbour on the Unix socket (local-socket.ts) never had one
    this.remote = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort ?? "?"}` : "a neighbour on this machine's Unix socket";
    this.parser = new H2FrameParser(DEFAULT_MAX_FRAME, MAX_CONTROL_BYTES, this);
    socket.setNoDelay(true);
    socket.on("data", (b: Buffer) => this.onBytes(b));
    socket.on("error", (e: Error) => (this.lastError = e.message));
    socket.on("close", () => this.onSocketClose());
    socket.write(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, opts.maxConcurrentStreams], [Setting.INITIAL_WINDOW_SIZE, STREAM_RECEIVE_WINDOW],
    ]));
  }


  /** Graceful close: GOAWAY now, the socket ends once every open stream is over. */
  close(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    this.write(goawayFrame(this.lastStreamId, H2Error.NO_ERROR));
    if (this.streams.size === 0) this.endSocket();
  }

  /** Drops the connection at once; open streams report it. */
  destroy(): void {
    this.socket.destroy();
  }

  // stream operations (called by H2ServerStream) ---------------------------------------------------------------

  /** @internal */
  sendHeaders(st: H2ServerStream, fields: readonly OutgoingField[], endStream: boolean): void {
    const block = encodeLiteralHeaders(fields);
    if (block.length > this.peerMaxFrame) throw new Error(`${this.opts.self}: response header block of ${block.length} bytes exceeds the peer's frame size`);
    this.write(frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), st.id, block));
  }

  /** @internal sends what flow control allows of `st`'s queue (and its trailers once the queue is empty). */
  flush(st: H2ServerStream): void {
    if (this.dead || st.closed) return;
    const s = this.socket;
    s.cork();
    try {
      while (st.queuedBytes > 0) {
        const n = Math.min(st.queuedBytes, st.sendWindow, this.connWindow, this.peerMaxFrame);
        if (n <= 0) break;
        this.writeData(st, n);
      }
      if (st.queuedBytes === 0 && st.trailers !== null) {
        const t = st.trailers;
        st.trailers = null;
        st.localEnded = true;
        this.write(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, st.id, t));
      }
    } finally {
      s.uncork();
    }
    if (st.queuedBytes > 0 || st.trailers !== null) this.blocked.add(st);
    else this.blocked.delete(st);
    if (st.localEnded) this.settle(st);
  }

  /** @internal closes `st` if both sides ended. */
  settle(st: H2ServerStream): void {
    if (st.localEnded && st.remoteEnded && !st.closed) this.closeStream(st, null);
  }

  /** @internal */
  reset(st: H2ServerStream, code: number): void {
    this.write(rstStreamFrame(st.id, code));
    this.closeStream(st, null);
  }

  // frame input ----------------------------------------------------------------------------------------------

  private onBytes(b: Buffer): void {
    if (this.dead) return;
    let off = 0;
    if (this.prefaceHave < CLIENT_PREFACE.length) {
      const take = Math.min(CLIENT_PREFACE.length - this.prefaceHave, b.length);
      if (!b.subarray(0, take).equals(CLIENT_PREFACE.subarray(this.prefaceHave, this.prefaceHave + take))) {
        return this.connectionError(H2Error.PROTOCOL_ERROR, "client did not send the HTTP/2 connection preface");
      }
      this.prefaceHave += take;
      off = take;
      if (off === b.length) return;
    }
    try {
      this.parser.push(off === 0 ? b : b.subarray(off));
    } catch (e) {
      if (e instanceof H2FrameError) this.connectionError(e.code, e.message);
      else if (e instanceof HpackError) this.connectionError(H2Error.COMPRESSION_ERROR, `undecodable header block: ${e.message}`);
      else throw e;
    }
  }

  /** @internal DATA piece (frame parser callback): request body. */
  onData(streamId: number, piece: Buffer): void {
    const st = this.streams.get(streamId);
    if (st === undefined || st.remoteEnded || st.closed) return; // counted for the connection window in onDataEnd
    if (st.bodyBytes + piece.length <= this.opts.maxRequestBytes) st.body.push(Buffer.from(piece));
    st.bodyBytes += piece.length;
  }

  /** @internal end of a DATA frame (frame parser callback). */
  onDataEnd(streamId: number, flowBytes: number, flags: number): void {
    if (streamId === 0) throw new H2FrameError("DATA on stream 0", H2Error.PROTOCOL_ERROR);
    if (flowBytes > 0) this.write(windowUpdateFrame(0, flowBytes));
    const st = this.streams.get(streamId);
    if (st === undefined) {
      if (streamId > this.lastStreamId) throw new H2FrameError(`DATA on idle stream ${streamId}`, H2Error.PROTOCOL_ERROR);
      return;
    }
    if ((flags & Flag.END_STREAM) !== 0) this.requestComplete(st);
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
      case FrameType.SETTINGS: {
        const settings = settingsOf(flags, streamId, payload);
        if (settings === null) return;
        for (const [id, value] of settings) this.applySetting(id, value);
        this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
        this.flushBlocked();
        return;
      }
      case FrameType.PING: {
        if (streamId !== 0) throw new H2FrameError("PING on a stream", H2Error.PROTOCOL_ERROR);
        const ack = pingAck(flags, payload);
        if (ack !== null) this.write(ack);
        return;
      }
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(streamId, payload);
      case FrameType.RST_STREAM: {
        if (payload.length !== 4) throw new H2FrameError(`RST_STREAM of ${payload.length} bytes`, H2Error.FRAME_SIZE_ERROR);
        const st = this.streams.get(streamId);
        if (st !== undefined) this.closeStream(st, `the client (${this.remote}) reset the stream: HTTP/2 ${h2ErrorName(payload.readUInt32BE(0))}`);
        return;
      }
      case FrameType.GOAWAY:
        this.peerGoaway = goawayOf(payload).reason;
        return; // streams already open run to completion; the client opens no new ones
      case FrameType.PUSH_PROMISE:
        throw new H2FrameError("PUSH_PROMISE from a client", H2Error.PROTOCOL_ERROR);
      default:
        return; // PRIORITY and unknown frame types
    }
  }

  private applySetting(id: number, v: number): void {
    if (id === Setting.INITIAL_WINDOW_SIZE) {
      if (v > MAX_WINDOW) throw new H2FrameError(`SETTINGS_INITIAL_WINDOW_SIZE ${v} above 2^31-1`, H2Error.FLOW_CONTROL_ERROR);
      const delta = v - this.peerInitialWindow;
      this.peerInitialWindow = v;
      for (const st of this.streams.values()) {
        st.sendWindow += delta;
        if (st.sendWindow > MAX_WINDOW) throw new H2FrameError(`SETTINGS_INITIAL_WINDOW_SIZE ${v} overflows the window of stream ${st.id}`, H2Error.FLOW_CONTROL_ERROR);
      }
    } else if (id === Setting.MAX_FRAME_SIZE) {
      if (v < DEFAULT_MAX_FRAME || v > 2 ** 24 - 1) throw new H2FrameError(`SETTINGS_MAX_FRAME_SIZE ${v} outside 16384 .. 2^24-1`, H2Error.PROTOCOL_ERROR);
      this.peerMaxFrame = v;
    } else if (id === Setting.ENABLE_PUSH && v > 1) {
      throw new H2FrameError(`SETTINGS_ENABLE_PUSH ${v}`, H2Error.PROTOCOL_ERROR);
    }
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2FrameError(`WINDOW_UPDATE of ${payload.length} bytes`, H2Error.FRAME_SIZE_ERROR);
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (inc === 0) throw new H2FrameError("connection WINDOW_UPDATE of 0", H2Error.PROTOCOL_ERROR);
      this.connWindow += inc;
      if (this.connWindow > MAX_WINDOW) throw new H2FrameError("connection window above 2^31-1", H2Error.FLOW_CONTROL_ERROR);
      this.flushBlocked();
      return;
    }
    const st = this.streams.get(streamId);
    if (st === undefined) return; // closed stream: allowed
    if (inc === 0) return this.reset(st, H2Error.PROTOCOL_ERROR);
    st.sendWindow += inc;
    if (st.sendWindow > MAX_WINDOW) return this.reset(st, H2Error.FLOW_CONTROL_ERROR);
    if (this.blocked.has(st)) this.flush(st);
  }

  private endHeaderBlock({ streamId, flags, block }: HeaderBlock): void {
    const fields = this.hpack.decode(block);
    const id = streamId;
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const open = this.streams.get(id);
    if (open !== undefined) {
      // request trailers: only allowed to end the request
      if (!endStream) throw new H2FrameError(`second header block on stream ${id} without END_STREAM`, H2Error.PROTOCOL_ERROR);
      this.requestComplete(open);
      return;
    }
    if (id === 0 || id % 2 === 0 || id <= this.lastStreamId) {
      if (id !== 0 && id <= this.lastStreamId) return this.write(rstStreamFrame(id, STREAM_CLOSED));
      throw new H2FrameError(`client opened stream ${id}`, H2Error.PROTOCOL_ERROR);
    }
    this.lastStreamId = id;
    if (this.goingAway || this.streams.size >= this.opts.maxConcurrentStreams) return this.write(rstStreamFrame(id, REFUSED_STREAM));
    const h: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [name, value] of fields) h[name] = name in h ? `${h[name]},${value}` : value;
    const st = new H2ServerStream(id, this, this.peerInitialWindow);
    this.streams.set(id, st);
    st.requestHeaders = h;
    if (endStream) this.requestComplete(st);
  }

  private requestComplete(st: H2ServerStream): void {
    if (st.remoteEnded) return;
    st.remoteEnded = true;
    const h = st.requestHeaders;
    const body = st.bodyBytes > this.opts.maxRequestBytes ? `request larger than ${this.opts.maxRequestBytes} bytes`
      : st.body.length === 1 ? st.body[0] : Buffer.concat(st.body);
    st.body.length = 0;
    this.opts.onRequest(st, h, body);
    this.settle(st);
  }

  // output ---------------------------------------------------------------------------------------------------

  /** Writes one DATA frame of `n` bytes from `st`'s queue: header + views, one writev (the socket is corked). */
  private writeData(st: H2ServerStream, n: number): void {
    const hdr = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    hdr[0] = (n >>> 16) & 0xff;
    hdr[1] = (n >>> 8) & 0xff;
    hdr[2] = n & 0xff;
    hdr[3] = FrameType.DATA;
    hdr[4] = 0;
    hdr.writeUInt32BE(st.id, 5);
    const s = this.socket;
    s.write(hdr);
    st.sendWindow -= n;
    this.connWindow -= n;
    st.queuedBytes -= n;
    let left = n;
    while (left > 0) {
      const q = st.queue[0];
      const off = st.headOff;
      const take = Math.min(q.buf.length - off, left);
      left -= take;
      if (off + take === q.buf.length) {
        st.queue.shift();
        st.headOff = 0;
        const piece = off === 0 ? q.buf : q.buf.subarray(off);
        if (q.cb !== null) s.write(piece, q.cb);
        else s.write(piece);
      } else {
        st.headOff = off + take;
        s.write(q.buf.subarray(off, off + take));
      }
    }
  }

  private flushBlocked(): void {
    for (const st of [...this.blocked]) {
      if (this.connWindow <= 0) return;
      this.flush(st);
    }
  }

  private write(b: Buffer): void {
    if (!this.dead && !this.socket.destroyed && this.socket.writable) this.socket.write(b);
  }

  private closeStream(st: H2ServerStream, error: string | null): void {
    this.streams.delete(st.id);
    this.blocked.delete(st);
    st.finish(error);
    if (this.goingAway && this.streams.size === 0) this.endSocket();
  }

  private connectionError(code: number, message: string): void {
    if (this.dead) return;
    const why = `HTTP/2 error on the connection from ${this.remote}: ${message}`;
    this.write(goawayFrame(this.lastStreamId, code));
    this.dead = true;
    this.closeAll(why);
    this.endSocket();
  }

  private endSocket(): void {
    const s = this.socket;
    if (s.destroyed) return;
    s.end();
    setTimeout(() => s.destroy(), 1000).unref();
  }

  private onSocketClose(): void {
    this.dead = true;
    const why = this.peerGoaway !== null ? `the client (${this.remote}) sent GOAWAY ${this.peerGoaway} and closed the connection`
      : this.lastError !== "" ? `connection from ${this.remote} lost: ${this.lastError}` : `connection from ${this.remote} closed`;
    this.closeAll(why);
  }

  private closeAll(why: string): void {
    for (const st of [...this.streams.values()]) this.closeStream(st, why);
  }
}
