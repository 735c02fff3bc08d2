/**
 * PeerTransport that speaks the gRPC wire protocol of proto/peer.proto directly on node:http2.
 *
 * Same contract and same wire as GrpcPeerTransport (a grpc-js peer can call it and be called by it): HTTP/2,
 * `content-type: application/grpc`, 5-byte length-prefixed messages, status in `grpc-status` / `grpc-message`
 * trailers, the job token in the `x-ringtrain-token` header of every call, the HMAC proof in the Pull
 * response headers, and the same validation and error texts. What it does differently is the bulk path:
 * - send: the 5-byte prefix and the Chunk header are encoded into pooled buffers and written together with a
 *   view of the tensor memory (one writev, no copy, no per-message allocation; 16-bit payloads are encoded into
 *   pooled buffers); the write callback fires once node:http2 no longer reads that memory.
 * - receive: GrpcChunkReader parses the stream itself and, once the collective has validated a header, sums
 *   or copies the payload straight out of the DATA pieces node:http2 hands over (no reassembly buffer).
 * - HTTP/2 settings: the receiving session advertises large DATA frames (`maxFrameBytes`) and a large stream
 *   and connection window (`windowBytes`); both sockets have TCP_NODELAY.
 * - `rawReceive` (the "http2-raw" ring transport): the inbound Pull is spoken as HTTP/2 directly on a
 *   net.Socket that reads into one reused buffer (raw-pull-inbound.ts), not through node:http2; the wire is
 *   the same, so either kind of neighbour (or grpc-js) serves it.
 * - `rawSend` (with `rawReceive`: the "http2-socket" ring transport): the peer port is served by H2Server
 *   (h2-server.ts, h2-server-connection.ts) instead of node:http2, so each Chunk goes out as DATA frames of up
 *   to the receiver's SETTINGS_MAX_FRAME_SIZE, one writev of [frame header, gRPC prefix + Chunk header, tensor
 *   view] within the receiver's flow-control windows (node:http2 always sends 16 KiB frames). Same wire.
 */
import http2 = require("node:http2");
import { joinHostPort, splitHostPort } from "../../shared/net/host-port";
import { localSocketName, localSocketsSupported } from "./local-socket";
import * as net from "node:net";
import * as tls from "node:tls";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { encodeHalf, type HalfKind } from "../../shared/codecs/half";
import { encodeChunkHeadInto, MAX_CHUNK_HEAD_BYTES, WireDtype, type ChunkHeader } from "./chunk-wire";
import { GrpcChunkReader } from "./grpc-frame-reader";
import { H2Server } from "./h2-server";
import type { H2ServerStream } from "./h2-server-connection";
import type { OutgoingField } from "./hpack-encode";
import { RawPullInbound } from "./raw-pull-inbound";
import {
  decodeAbort, decodePull, encodeAbort, encodePull, grpcFrame, statusName, tokenProof, tokenValueMatches, PROOF_KEY, TOKEN_KEY,
  type AbortRequest, type PullRequest,
} from "./peer-service";
import type { AbortNotice, InboundPlan, PeerTransport, TransportEvents, TransportFault } from "./peer-transport";
import type { MutualTls } from "../../shared/security/tls";

/** Configuration of an Http2PeerTransport. */
export interface Http2TransportOptions {
  jobId: string;
  /** Shared secret every peer call must carry. */
  token: string;
  rank: number;
  worldSize: number;
  /** Bind host (default 127.0.0.1) and port (default 0 = any free port). */
  host?: string;
  port?: number;
  /** Largest Chunk payload in bytes (sizes the receive limit and the default window). */
  chunkBytes: number;
  /** SETTINGS_MAX_FRAME_SIZE the receiving session advertises (default 16 MiB - 1, the HTTP/2 maximum). */
  maxFrameBytes?: number;
  /** Receive window of the inbound stream and connection (default max(16 MiB, 4 chunks)). */
  windowBytes?: number;
  /** Receive the inbound Pull on a raw socket with a reused read buffer instead of node:http2 (default false). */
  rawReceive?: boolean;
  /** Serve the peer port (Pull and Abort) with H2Server on a raw socket instead of node:http2 (default false). */
  rawSend?: boolean;
  /**
   * Mutual TLS on every peer connection (communication.tls): only with rawReceive + rawSend ("http2-socket").
   * Peers must present a certificate signed by the CA, and the server's must match the address dialled.
   */
  tls?: MutualTls;
  /**
   * Between neighbours in the same network namespace, use a Unix socket instead of loopback TCP (local-socket.ts;
   * "http2-socket" without TLS only; default false here, the ring turns it on): the peer port also listens on the
   * socket named after `advertisedHost`:port, and the inbound Pull dials the left neighbour's name first.
   */
  localSockets?: boolean;
  /** The host the ring lists this rank under (default: `host`; with a wildcard `host` and none, no Unix socket). */
  advertisedHost?: string;
}

const PULL_PATH = "/ringtrain.peer.Peer/Pull";
const ABORT_PATH = "/ringtrain.peer.Peer/Abort";
const MAX_REQUEST_BYTES = 64 * 1024;
const MAX_FRAME = 16 * 1024 * 1024 - 1;
const { NGHTTP2_CANCEL } = http2.constants;

interface CallStatus {
  code: number;
  details: string;
}

function fault(side: "left" | "right", kind: string, detail: string): TransportFault {
  return { side, kind, detail };
}

/** The host of this rank's advertised address when it serves a Unix socket too (see localSockets), else undefined. */
function localAddressHost(o: Http2TransportOptions): string | undefined {
  if (o.localSockets !== true || o.tls !== undefined || o.rawSend !== true || !localSocketsSupported()) return undefined;
  const host = o.advertisedHost ?? o.host ?? "127.0.0.1";
  return host === "0.0.0.0" || host === "::" ? undefined : host;
}


/** Reads the single length-prefixed message of a gRPC request body (at most MAX_REQUEST_BYTES). */
function readUnaryBody(st: http2.ServerHttp2Stream): Promise<Buffer | string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let n = 0;
    let settled = false;
    const settle = (v: Buffer | string): void => {
      if (settled) return;
      settled = true;
      resolve(v);
    };
    st.on("data", (d: Buffer) => {
      n += d.length;
      if (n > MAX_REQUEST_BYTES) settle(`request larger than ${MAX_REQUEST_BYTES} bytes`);
      else parts.push(d);
    });
    st.on("end", () => settle(unaryMessage(Buffer.concat(parts))));
    st.on("close", () => settle("stream closed before the request ended"));
  });
}

/** Ends a server stream with a gRPC status only (trailers-only response). */
function respondStatus(st: http2.ServerHttp2Stream, code: number, details: string): void {
  if (st.destroyed || st.headersSent) return;
  try {
    st.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(code), "grpc-message": encodeURI(details) }, { endStream: true });
  } catch {
    /* stream went away */
  }
  st.resume(); // discard whatever the caller still sends
}

/** The node:http2 implementation of PeerTransport (gRPC wire format, streaming receive). */
export class Http2PeerTransport implements PeerTransport {
  readonly address: string;

  private events: TransportEvents | null = null;
  private readonly left: number;
  private readonly right: number;
  private readonly windowBytes: number;
  private readonly maxFrameBytes: number;
  private addresses: readonly string[] = [];
  private leftSession: http2.ClientHttp2Session | null = null;
  private inStream: http2.ClientHttp2Stream | null = null;
  private reader: GrpcChunkReader | null = null;
  /** The inbound Pull when `rawReceive` is set (then leftSession, inStream and reader stay null). */
  private rawIn: RawPullInbound | null = null;
  private outStream: http2.ServerHttp2Stream | null = null;
  /** The outbound Pull when `rawSend` is set (then outStream stays null). */
  private rawOut: H2ServerStream | null = null;
  private outReady: (() => void) | null = null;
  private outOpened = false;
  /** Set once the transport failed or is closing: new Pulls are refused, stream events are ignored. */
  private down = false;
  private readonly serverSessions = new Set<http2.ServerHttp2Session>();
  private readonly headPool: Buffer[] = [];
  private readonly halfPool: Buffer[] = [];
  private readonly otherSessions = new Set<http2.ClientHttp2Session>();

  private constructor(private readonly opts: Http2TransportOptions, private readonly server: http2.Http2Server | H2Server, address: string) {
    this.address = address;
    this.left = (opts.rank - 1 + opts.worldSize) % opts.worldSize;
    this.right = (opts.rank + 1) % opts.worldSize;
    this.windowBytes = Math.min(2 ** 31 - 1, opts.windowBytes ?? Math.max(16 * 1024 * 1024, 4 * opts.chunkBytes));
    this.maxFrameBytes = Math.max(16384, Math.min(MAX_FRAME, opts.maxFrameBytes ?? MAX_FRAME));
  }

  /** Binds the peer server and returns the transport (not yet connected). */
  static async listen(opts: Http2TransportOptions): Promise<Http2PeerTransport> {
    if (opts.tls !== undefined && (opts.rawSend !== true || opts.rawReceive !== true)) {
      throw new Error("Http2PeerTransport: tls needs rawReceive and rawSend (the http2-socket transport)");
    }
    if (opts.rawSend === true) return Http2PeerTransport.listenRaw(opts);
    const server = http2.createServer({
      settings: { maxConcurrentStreams: 16, enablePush: false },
      maxSessionMemory: 256,
    });
    let self: Http2PeerTransport | null = null;
    server.on("connection", (sock: net.Socket) => sock.setNoDelay(true));
    server.on("sessionError", () => undefined);
    server.on("session", (s: http2.ServerHttp2Session) => {
      s.on("error", () => undefined);
      if (self === null) return;
      const set = self.serverSessions;
      set.add(s);
      s.on("close", () => set.delete(s));
    });
    server.on("stream", (st: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      st.on("error", () => undefined);
      if (self === null) respondStatus(st, GrpcStatus.UNAVAILABLE, "peer server is starting");
      else self.onStream(st, headers);
    });
    const host = opts.host ?? "127.0.0.1";
    const port = await new Promise<number>((resolve, reject) => {
      const onErr = (e: Error): void => reject(new Error(`rank ${opts.rank}: cannot bind peer server on ${host}:${opts.port ?? 0}: ${e.message}`));
      server.once("error", onErr);
      server.listen(opts.port ?? 0, host, () => {
        server.removeListener("error", onErr);
        server.on("error", () => undefined);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
    self = new Http2PeerTransport(opts, server, joinHostPort(host, port));
    return self;
  }

  /** listen() for `rawSend`: the peer port served by H2Server. */
  private static async listenRaw(opts: Http2TransportOptions): Promise<Http2PeerTransport> {
    const host = opts.host ?? "127.0.0.1";
    const localHost = localAddressHost(opts);
    let self: Http2PeerTransport | null = null;
    const server = await H2Server.listen({
      self: `rank ${opts.rank} (${host}:${opts.port ?? 0})`, host, port: opts.port ?? 0, maxRequestBytes: MAX_REQUEST_BYTES, maxConcurrentStreams: 16,
      ...(opts.tls !== undefined ? { tls: opts.tls.pem } : {}),
      ...(localHost !== undefined ? { localName: (port: number) => localSocketName(opts.jobId, joinHostPort(localHost, port)) } : {}),
      onRequest: (st, headers, body) => {
        if (self === null) st.respondTrailersOnly(trailersOnly(GrpcStatus.UNAVAILABLE, "peer server is starting"));
        else self.onRawRequest(st, headers, body);
      },
    });
    self = new Http2PeerTransport(opts, server, joinHostPort(host, server.port));
    return self;
  }

  /** How the inbound Pull reached the left neighbour: "unix" (localSockets, same namespace), "tcp", or null (not yet, or node:http2). */
  get inboundVia(): "unix" | "tcp" | null {
    return this.rawIn?.connectedVia ?? null;
  }

  /** Registers the collective's callbacks. */
  attach(events: TransportEvents): void {
    if (this.events !== null) throw new Error("Http2PeerTransport.attach: already attached");
    this.events = events;
  }

  private ev(): TransportEvents {
    if (this.events === null) throw new Error("Http2PeerTransport: no events attached");
    return this.events;
  }

  get canSend(): boolean {
    if (this.down) return false;
    if (this.rawOut !== null) return !this.rawOut.closed;
    return this.outStream !== null && !this.outStream.destroyed;
  }

  /** Opens our inbound Pull on the left neighbour and waits for the right neighbour's Pull on us. */
  async connect(addresses: readonly string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.addresses = addresses.slice();
    const leftAddr = addresses[this.left];
    if (this.opts.rawReceive === true) return this.connectRaw(leftAddr, deadline, timeoutMs);
    let session: http2.ClientHttp2Session | null = null;
    let lastErr = "";
    // the left neighbour may not be listening yet: retry until the deadline
    while (session === null) {
      if (this.down) throw fault("left", "closed", "transport closed while connecting");
      try {
        session = await this.openSession(leftAddr, deadline, true);
      } catch (e) {
        lastErr = e instanceof Error ? e.message : String(e);
        if (Date.now() + 50 >= deadline) throw fault("left", "timeout", `not reachable within ${timeoutMs} ms: ${lastErr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    this.leftSession = session;
    await this.bothStreamsOpen((settled) => this.openPull(session, settled), deadline, timeoutMs);
  }

  /**
   * Waits until our inbound Pull is accepted by the left neighbour (`openLeft`, which calls `settled` once it is)
   * and the right neighbour has opened its Pull on us; a timeout names the side that did not.
   */
  private async bothStreamsOpen(openLeft: (settled: () => void) => Promise<void>, deadline: number, timeoutMs: number): Promise<void> {
    const rightReady = new Promise<void>((resolve) => {
      if (this.outOpened) resolve();
      else this.outReady = resolve;
    });
    let leftSettled = false;
    const leftReady = openLeft(() => (leftSettled = true));
    let timer: NodeJS.Timeout | null = null;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(leftSettled
        ? fault("right", "timeout", `did not open its Pull stream within ${timeoutMs} ms`)
        : fault("left", "timeout", `did not accept our Pull stream within ${timeoutMs} ms`)), Math.max(1, deadline - Date.now()));
    });
    try {
      await Promise.race([Promise.all([leftReady, rightReady]), timeout]);
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }

  /** connect() for `rawReceive`: the inbound Pull through RawPullInbound. */
  private async connectRaw(leftAddr: string, deadline: number, timeoutMs: number): Promise<void> {
    const { jobId, token, rank, worldSize, chunkBytes } = this.opts;
    const inbound = new RawPullInbound({
      jobId, token, rank, worldSize, left: this.left, leftAddress: leftAddr, chunkBytes, windowBytes: this.windowBytes,
      maxFrameBytes: this.maxFrameBytes, events: () => this.ev(), live: () => this.rawIn === inbound && !this.down,
      ...(this.opts.tls !== undefined ? { tls: this.opts.tls.pem } : {}),
      localSockets: this.opts.localSockets === true,
    });
    this.rawIn = inbound;
    await this.bothStreamsOpen((settled) => inbound.open(deadline, timeoutMs).then(settled), deadline, timeoutMs);
  }

  send(header: ChunkHeader, payload: Float32Array | null, onWritten: () => void): number {
    const st = this.outStream;
    const raw = this.rawOut;
    if (this.down || (raw === null ? st === null || st.destroyed : raw.closed)) throw new Error("Http2PeerTransport.send: outbound stream not open");
    const half: HalfKind | null = header.dtype === WireDtype.FLOAT16 ? "fp16" : header.dtype === WireDtype.BFLOAT16 ? "bf16" : null;
    const elems = payload === null ? 0 : payload.length;
    const payloadBytes = elems * (half === null ? 4 : 2);
    if (payloadBytes !== header.chunkBytes) throw new Error(`Http2PeerTransport.send: payload has ${payloadBytes} bytes, header says ${header.chunkBytes}`);
    const head = this.headPool.pop() ?? Buffer.allocUnsafeSlow(5 + MAX_CHUNK_HEAD_BYTES);
    const headEnd = encodeChunkHeadInto(header, head, 5, 5);
    const msgLen = headEnd - 5 + payloadBytes;
    head[0] = 0;
    head.writeUInt32BE(msgLen, 1);
    let body: Buffer | null = null;
    let pooled: Buffer | null = null;
    if (payload !== null && payloadBytes > 0) {
      if (half === null) body = Buffer.from(payload.buffer, payload.byteOffset, payloadBytes);
      else {
        pooled = this.halfPool.pop() ?? null;
        if (pooled === null || pooled.length < payloadBytes) pooled = Buffer.allocUnsafeSlow(Math.max(payloadBytes, this.opts.chunkBytes / 2 + 8));
        encodeHalf(half, payload, new Uint16Array(pooled.buffer, pooled.byteOffset, elems));
        body = pooled.subarray(0, payloadBytes);
      }
    }
    const written = (): void => {
      this.headPool.push(head);
      if (pooled !== null) this.halfPool.push(pooled);
      onWritten();
    };
    if (raw !== null) {
      raw.write(body === null ? [head.subarray(0, headEnd)] : [head.subarray(0, headEnd), body], written);
      return msgLen;
    }
    if (st === null) throw new Error("Http2PeerTransport.send: outbound stream not open");
    st.cork();
    if (body === null) st.write(head.subarray(0, headEnd), written);
    else {
      st.write(head.subarray(0, headEnd));
      st.write(body, written);
    }
    st.uncork();
    return msgLen;
  }

  pauseInbound(): void {
    this.rawIn?.pause();
    this.reader?.pause();
    this.inStream?.pause();
  }

  resumeInbound(): void {
    this.rawIn?.resume();
    this.inStream?.resume();
    this.reader?.resume();
  }

  async abort(notice: AbortNotice): Promise<void> {
    this.down = true;
    this.reader?.stop();
    this.rawIn?.stop();
    const req: AbortRequest = { jobId: this.opts.jobId, ...notice };
    const body = grpcFrame(encodeAbort(req));
    const targets = [...new Set([this.addresses[this.left], this.addresses[this.right]].filter((a): a is string => typeof a === "string"))];
    // Abort first (it carries the reason), then drop the streams, so neighbours learn why rather than just "cancelled".
    await Promise.all(targets.map((addr) => this.callAbort(addr, body, Date.now() + 1000)));
    this.teardown(notice.reason);
  }

  /** Drops both streams at once (no notice). */
  teardown(_reason: string): void {
    this.down = true;
    this.reader?.stop();
    const out = this.outStream;
    this.outStream = null;
    if (out !== null && !out.destroyed) out.close(NGHTTP2_CANCEL);
    const rawOut = this.rawOut;
    this.rawOut = null;
    rawOut?.cancel();
    const inS = this.inStream;
    this.inStream = null;
    if (inS !== null && !inS.destroyed) inS.close(NGHTTP2_CANCEL);
    this.rawIn?.cancel();
  }

  async close(graceMs: number): Promise<void> {
    this.down = true;
    this.reader?.stop();
    this.rawIn?.stop();
    const out = this.outStream;
    if (out !== null && !out.destroyed && !out.writableEnded) {
      try {
        out.end();
      } catch {
        /* already gone */
      }
    }
    this.rawOut?.end(statusFields(GrpcStatus.OK, ""));
    const inS = this.inStream;
    if (inS !== null && !inS.closed && !inS.destroyed) {
      const ended = new Promise<void>((resolve) => inS.once("close", () => resolve()));
      inS.resume(); // let the neighbour's last bytes and trailers through (they are ignored now)
      let t: NodeJS.Timeout | null = null;
      await Promise.race([ended, new Promise<void>((resolve) => (t = setTimeout(resolve, graceMs)))]);
      if (t !== null) clearTimeout(t);
      if (!inS.destroyed) inS.close(NGHTTP2_CANCEL);
    }
    await this.rawIn?.finish(graceMs);
    this.leftSession?.close();
    for (const s of this.otherSessions) s.destroy();
    const server = this.server;
    if (server instanceof H2Server) {
      await server.close(1000);
      this.leftSession?.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        for (const s of this.serverSessions) s.destroy();
        this.leftSession?.destroy();
        resolve();
      }, 1000);
      server.close(() => {
        clearTimeout(t);
        resolve();
      });
      for (const s of this.serverSessions) s.close();
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // client side

  private openSession(addr: string, deadline: number, bulk: boolean): Promise<http2.ClientHttp2Session> {
    const { host, port } = splitHostPort(addr);
    const settings: http2.Settings = bulk
      ? { enablePush: false, initialWindowSize: this.windowBytes, maxFrameSize: this.maxFrameBytes }
      : { enablePush: false };
    const pem = this.opts.tls?.pem;
    const s = http2.connect(`${pem === undefined ? "http" : "https"}://${host}:${port}`, {
      settings,
      maxSessionMemory: 256,
      createConnection: () => (pem === undefined
        ? net.connect({ host, port, noDelay: true })
        : tls.connect({ host, port, ...pem, ALPNProtocols: ["h2"] }).setNoDelay(true)),
    });
    return new Promise((resolve, reject) => {
      const onErr = (e: Error): void => {
        clearTimeout(t);
        s.destroy();
        reject(e);
      };
      const t = setTimeout(() => onErr(new Error(`no HTTP/2 session with ${addr} before the deadline`)), Math.max(1, deadline - Date.now()));
      s.once("error", onErr);
      s.once("connect", () => {
        clearTimeout(t);
        s.removeListener("error", onErr);
        s.on("error", () => undefined);
        if (bulk) s.setLocalWindowSize(this.windowBytes);
        resolve(s);
      });
    });
  }

  /** Starts the Pull on the left neighbour; resolves once it proved it holds the token. */
  private openPull(session: http2.ClientHttp2Session, onAccepted: () => void): Promise<void> {
    const { jobId, token, rank, worldSize, chunkBytes } = this.opts;
    const pull: PullRequest = { jobId, receiverRank: rank, senderRank: this.left, worldSize };
    return new Promise<void>((resolve, reject) => {
      const req = session.request({
        ":method": "POST", ":path": PULL_PATH, "content-type": "application/grpc", te: "trailers", [TOKEN_KEY]: token,
      });
      this.inStream = req;
      let final: CallStatus | null = null;
      const reader = new GrpcChunkReader(chunkBytes + 4096, {
        onChunk: (m) => {
          if (this.inStream === req && !this.down) this.ev().onChunk(m);
        },
        onChunkHeader: (h, n): InboundPlan => {
          if (this.inStream !== req || this.down) return { kind: "skip" };
          const ev = this.ev();
          return ev.onChunkHeader !== undefined ? ev.onChunkHeader(h, n) : { kind: "whole" };
        },
      });
      this.reader = reader;
      req.on("error", () => undefined);
      req.on("response", (headers: http2.IncomingHttpHeaders) => {
        const st = headers["grpc-status"];
        if (Number(headers[":status"]) !== 200) {
          final = { code: GrpcStatus.UNKNOWN, details: `HTTP status ${String(headers[":status"])}` };
          return;
        }
        if (st !== undefined) {
          // trailers-only response: the call was rejected
          final = { code: Number(st), details: decodeURIComponentSafe(headers["grpc-message"]) };
          return;
        }
        if (headers[PROOF_KEY] !== tokenProof(token, jobId, this.left)) {
          this.inStream = null; // its cancellation below is ours, not the neighbour's failure
          reader.stop();
          req.close(NGHTTP2_CANCEL);
          reject(fault("left", "auth", "peer did not prove it holds the job token"));
          return;
        }
        onAccepted();
        resolve();
      });
      req.on("trailers", (t: http2.IncomingHttpHeaders) => {
        final = { code: Number(t["grpc-status"] ?? GrpcStatus.UNKNOWN), details: decodeURIComponentSafe(t["grpc-message"]) };
      });
      req.on("data", (piece: Buffer) => {
        if (this.inStream === req && !this.down) reader.push(piece);
      });
      req.on("close", () => {
        if (this.inStream !== req || this.down) return;
        const f = final as CallStatus | null;
        if (f === null) {
          this.ev().onInboundEnd(fault("left", "peer-lost", `stream to us failed: connection lost or stream reset (HTTP/2 code ${req.rstCode ?? "?"})`));
        } else if (f.code === GrpcStatus.OK) {
          if (!reader.atMessageBoundary && !reader.failed) this.ev().onInboundEnd(fault("left", "peer-lost", "stream to us ended inside a message"));
          else this.ev().onInboundEnd(null);
        } else {
          const kind = f.code === GrpcStatus.UNAUTHENTICATED ? "auth" : f.code === GrpcStatus.ABORTED ? "aborted" : "peer-lost";
          this.ev().onInboundEnd(fault("left", kind, `stream to us failed: ${statusName(f.code)} ${f.details}`));
        }
      });
      req.end(grpcFrame(encodePull(pull)));
    });
  }

  /** Sends one Abort notice to `addr`; resolves when answered or at the deadline, never rejects. */
  private callAbort(addr: string, body: Buffer, deadline: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let session: http2.ClientHttp2Session | null = null;
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearTimeout(t);
        if (session !== null && session !== this.leftSession) {
          session.close();
          this.otherSessions.delete(session);
        }
        resolve();
      };
      const t = setTimeout(finish, Math.max(1, deadline - Date.now()));
      const use = (s: http2.ClientHttp2Session): void => {
        session = s;
        if (done) return finish();
        try {
          const req = s.request({
            ":method": "POST", ":path": ABORT_PATH, "content-type": "application/grpc", te: "trailers", [TOKEN_KEY]: this.opts.token,
            "grpc-timeout": `${Math.max(1, deadline - Date.now())}m`,
          });
          req.on("error", () => finish());
          req.on("close", () => finish());
          req.resume();
          req.end(body);
        } catch {
          finish();
        }
      };
      const ls = this.leftSession;
      if (addr === this.addresses[this.left] && ls !== null && !ls.destroyed && !ls.closed) use(ls);
      else {
        this.openSession(addr, deadline, false).then((s) => {
          this.otherSessions.add(s);
          use(s);
        }, () => finish());
      }
    });
  }

  // ---------------------------------------------------------------------------------------------------------
  // server side

  /** Checks method, content type, path and token of a call: "http" = not a gRPC request (answer 415). */
  private headerError(headers: Readonly<Record<string, string | string[] | undefined>>): CallStatus | "http" | null {
    const ct = headers["content-type"];
    if (headers[":method"] !== "POST" || typeof ct !== "string" || !ct.startsWith("application/grpc")) return "http";
    const path = headers[":path"];
    if (path !== PULL_PATH && path !== ABORT_PATH) return { code: GrpcStatus.UNIMPLEMENTED, details: `unknown method ${String(path)}` };
    if (!tokenValueMatches(headers[TOKEN_KEY], this.opts.token)) return { code: GrpcStatus.UNAUTHENTICATED, details: "missing or wrong job token" };
    return null;
  }

  /** Validates a Pull request body (a single gRPC message); null when the caller may have the outbound stream. */
  private pullError(body: Buffer): CallStatus | null {
    const { jobId, rank, worldSize } = this.opts;
    const reject = (code: number, details: string): CallStatus => ({ code, details: `rank ${rank} (${this.address}) rejected Pull: ${details}` });
    let q: PullRequest;
    try {
      q = decodePull(body);
    } catch (e) {
      return reject(GrpcStatus.INVALID_ARGUMENT, `malformed PullRequest: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (q.jobId !== jobId) return reject(GrpcStatus.PERMISSION_DENIED, `job id "${q.jobId}" is not this job's ("${jobId}")`);
    if (q.worldSize !== worldSize) return reject(GrpcStatus.FAILED_PRECONDITION, `world size ${q.worldSize}, this ring has ${worldSize}`);
    if (q.senderRank !== rank) return reject(GrpcStatus.FAILED_PRECONDITION, `caller expects rank ${q.senderRank}, this is rank ${rank}`);
    if (q.receiverRank !== this.right || worldSize === 1) {
      return reject(GrpcStatus.PERMISSION_DENIED, `only the right neighbour (rank ${this.right}) may pull, caller says it is rank ${q.receiverRank}`);
    }
    if (this.down || this.events === null) return reject(GrpcStatus.UNAVAILABLE, "communicator closed or failed");
    if (this.outOpened) return reject(GrpcStatus.ALREADY_EXISTS, `rank ${this.right} already holds the stream`);
    return null;
  }

  /** Validates an Abort request body; the notice, or the error status to answer with. */
  private abortCheck(body: Buffer): AbortRequest | CallStatus {
    const { jobId, rank } = this.opts;
    let q: AbortRequest;
    try {
      q = decodeAbort(body);
    } catch (e) {
      return { code: GrpcStatus.INVALID_ARGUMENT, details: `malformed AbortRequest: ${e instanceof Error ? e.message : String(e)}` };
    }
    if (q.jobId !== jobId) return { code: GrpcStatus.PERMISSION_DENIED, details: `job id "${q.jobId}" is not this job's` };
    if (q.senderRank !== this.left && q.senderRank !== this.right) {
      return { code: GrpcStatus.PERMISSION_DENIED, details: `rank ${q.senderRank} is not a neighbour of rank ${rank}` };
    }
    return q;
  }

  /** The outbound stream is open: tell whoever waits for it. */
  private outboundOpened(): void {
    this.outOpened = true;
    this.outReady?.();
    this.outReady = null;
    this.ev().onOutboundReady();
  }

  /** Hands an accepted Abort notice to the collective. */
  private deliverAbort(q: AbortRequest): void {
    if (this.down || this.events === null) return;
    const { jobId: _job, ...notice } = q;
    this.events.onAbort(notice);
  }

  private onStream(st: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    const herr = this.headerError(headers);
    if (herr === "http") {
      try {
        st.respond({ ":status": 415 }, { endStream: true });
      } catch {
        /* gone */
      }
      st.resume();
      return;
    }
    if (herr !== null) return respondStatus(st, herr.code, herr.details);
    const path = headers[":path"];
    void readUnaryBody(st).then((body) => {
      if (typeof body === "string") return respondStatus(st, GrpcStatus.INVALID_ARGUMENT, body);
      if (path === PULL_PATH) this.onPull(st, body);
      else this.onAbortCall(st, body);
    });
  }

  private onPull(st: http2.ServerHttp2Stream, body: Buffer): void {
    const { jobId, token, rank } = this.opts;
    const err = this.pullError(body);
    if (err !== null) return respondStatus(st, err.code, err.details);
    if (st.destroyed) return;
    this.outStream = st;
    st.respond({ ":status": 200, "content-type": "application/grpc", [PROOF_KEY]: tokenProof(token, jobId, rank) }, { waitForTrailers: true });
    st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": String(GrpcStatus.OK) }));
    st.on("close", () => {
      if (this.outStream === st && !this.down) this.ev().onOutboundLost(`was cancelled or the connection dropped (HTTP/2 code ${st.rstCode ?? "?"})`);
    });
    this.outboundOpened();
  }

  private onAbortCall(st: http2.ServerHttp2Stream, body: Buffer): void {
    const q = this.abortCheck(body);
    if ("code" in q) return respondStatus(st, q.code, q.details);
    // unary OK: headers, one empty AbortReply message, trailers
    if (!st.destroyed) {
      try {
        st.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": String(GrpcStatus.OK) }));
        st.end(Buffer.alloc(5));
      } catch {
        /* caller went away; the notice still counts */
      }
    }
    this.deliverAbort(q);
  }

  /** A complete request on the H2Server (`rawSend`): Pull opens the outbound stream, Abort is answered at once. */
  private onRawRequest(st: H2ServerStream, headers: Readonly<Record<string, string>>, body: Buffer | string): void {
    const herr = this.headerError(headers);
    if (herr === "http") return st.respondTrailersOnly([{ name: ":status", value: "415" }]);
    if (herr !== null) return st.respondTrailersOnly(trailersOnly(herr.code, herr.details));
    const msg = typeof body === "string" ? body : unaryMessage(body);
    if (typeof msg === "string") return st.respondTrailersOnly(trailersOnly(GrpcStatus.INVALID_ARGUMENT, msg));
    const grpcHead: OutgoingField[] = [{ name: ":status", value: "200" }, { name: "content-type", value: "application/grpc" }];
    if (headers[":path"] === ABORT_PATH) {
      const q = this.abortCheck(msg);
      if ("code" in q) return st.respondTrailersOnly(trailersOnly(q.code, q.details));
      st.respond(grpcHead);
      st.write([Buffer.alloc(5)], null);
      st.end(statusFields(GrpcStatus.OK, ""));
      this.deliverAbort(q);
      return;
    }
    const err = this.pullError(msg);
    if (err !== null) return st.respondTrailersOnly(trailersOnly(err.code, err.details));
    const { jobId, token, rank } = this.opts;
    this.rawOut = st;
    st.respond([...grpcHead, { name: PROOF_KEY, value: tokenProof(token, jobId, rank) }]);
    st.onClose = (error) => {
      if (this.rawOut === st && !this.down) this.ev().onOutboundLost(`was cancelled or the connection dropped (${error ?? "stream closed"})`);
    };
    this.outboundOpened();
  }
}

/** The single length-prefixed message of a gRPC request body, or why there is none. */
function unaryMessage(b: Buffer): Buffer | string {
  if (b.length < 5) return "request has no message";
  if (b[0] !== 0) return "compressed requests are not supported";
  const len = b.readUInt32BE(1);
  if (5 + len !== b.length) return "request is not exactly one message";
  return b.subarray(5);
}

/** A gRPC trailers-only response: HTTP 200, gRPC content type and the status. */
function trailersOnly(code: number, details: string): OutgoingField[] {
  return [{ name: ":status", value: "200" }, { name: "content-type", value: "application/grpc" }, ...statusFields(code, details)];
}

/** The trailer fields of a gRPC status. */
function statusFields(code: number, details: string): OutgoingField[] {
  const f: OutgoingField[] = [{ name: "grpc-status", value: String(code) }];
  if (details !== "") f.push({ name: "grpc-message", value: encodeURI(details.slice(0, 4096)) });
  return f;
}

function decodeURIComponentSafe(v: unknown): string {
  if (typeof v !== "string") return "";
  try {
    return decodeURI(v);
  } catch {
    return v;
  }
}
