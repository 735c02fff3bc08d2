/**
 * PeerTransport over gRPC (proto/peer.proto): the peer server, the Pull stream in each direction and Abort.
 *
 * Bulk data flows server -> client: rank r's right neighbour opens one server-streaming Pull on r at connect
 * time, and r writes every Chunk for that neighbour into it (server->client is the direction whose HTTP/2
 * window grpc-js lets us open). The server's sockets get TCP_NODELAY (server-socket.ts), Chunks are encoded
 * by the copy-avoiding codec in chunk-wire.ts, and the receiving client session can optionally advertise
 * 16 MiB DATA frames (http2-tuning.ts, `largeFrames`).
 */
import * as grpc from "@grpc/grpc-js";
import { joinHostPort } from "../../shared/net/host-port";
import type { MutualTls } from "../../shared/security/tls";
import { encodeChunk, WireDtype, type ChunkHeader, type DecodedChunk, type MalformedChunk } from "./chunk-wire";
import {
  peerServiceDefinition, tokenMatches, tokenMetadata, tokenProof, PROOF_KEY, clientChannelOptions, serverOptions,
  type AbortRequest, type OutgoingChunk, type PullRequest,
} from "./peer-service";
import { enableServerNoDelay } from "./server-socket";
import { bulkReceiverSettings, tuneClientSessions } from "./http2-tuning";
import type { AbortNotice, PeerTransport, TransportEvents, TransportFault } from "./peer-transport";

/** Configuration of a GrpcPeerTransport. */
export interface GrpcTransportOptions {
  jobId: string;
  /** Shared secret every peer call must carry. */
  token: string;
  rank: number;
  worldSize: number;
  /** Bind host (default 127.0.0.1) and port (default 0 = any free port). */
  host?: string;
  port?: number;
  /** Largest Chunk payload in bytes (sizes the receive limit and the HTTP/2 windows). */
  chunkBytes: number;
  /** Let grpc-js copy payloads straight from tensor memory into its frames (default true). */
  zeroCopySend?: boolean;
  /** Mutual TLS on the peer server and both neighbour channels; plaintext when absent. */
  tls?: MutualTls;
  /**
   * Advertise 16 MiB HTTP/2 DATA frames on the inbound connection (default false: on the 2-core reference
   * machine it cost ~15-20% more CPU per 4 MiB all-reduce at N = 2 and was neutral at N = 4; see
   * docs/PERFORMANCE.md, bench flag --large-frames).
   */
  largeFrames?: boolean;
}

function halfOf(dtype: number): "fp16" | "bf16" | null {
  return dtype === WireDtype.FLOAT16 ? "fp16" : dtype === WireDtype.BFLOAT16 ? "bf16" : null;
}

/** The gRPC implementation of PeerTransport. */
export class GrpcPeerTransport implements PeerTransport {
  readonly address: string;

  private events: TransportEvents | null = null;
  private readonly left: number;
  private readonly right: number;
  private readonly zeroCopy: boolean;
  private leftClient: grpc.Client | null = null;
  private rightClient: grpc.Client | null = null;
  private inStream: grpc.ClientReadableStream<DecodedChunk | MalformedChunk> | null = null;
  private outStream: grpc.ServerWritableStream<PullRequest, OutgoingChunk> | null = null;
  private outReady: (() => void) | null = null;
  private outOpened = false;
  /** Set once the transport failed or is closing: new Pulls are refused, stream events are ignored. */
  private down = false;
  private untune: (() => void) | null = null;

  private constructor(private readonly opts: GrpcTransportOptions, private readonly server: grpc.Server, address: string) {
    this.address = address;
    this.left = (opts.rank - 1 + opts.worldSize) % opts.worldSize;
    this.right = (opts.rank + 1) % opts.worldSize;
    this.zeroCopy = opts.zeroCopySend ?? true;
  }

  /** Binds the peer server and returns the transport (not yet connected). */
  static async listen(opts: GrpcTransportOptions): Promise<GrpcPeerTransport> {
    const server = new grpc.Server(serverOptions());
    let self: GrpcPeerTransport | null = null;
    const unavailable = { code: grpc.status.UNAVAILABLE, details: "peer server is starting" };
    server.addService(peerServiceDefinition, {
      Pull: (call: grpc.ServerWritableStream<PullRequest, OutgoingChunk>) => (self ? self.onPull(call) : call.emit("error", unavailable)),
      Abort: (call: grpc.ServerUnaryCall<AbortRequest, Record<string, never>>, cb: grpc.sendUnaryData<Record<string, never>>) =>
        (self ? self.onAbortCall(call, cb) : cb(unavailable)),
    } as grpc.UntypedServiceImplementation);
    const host = opts.host ?? "127.0.0.1";
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(joinHostPort(host, opts.port ?? 0), opts.tls?.server() ?? grpc.ServerCredentials.createInsecure(), (err, p) => {
        if (err) reject(new Error(`rank ${opts.rank}: cannot bind peer server on ${host}:${opts.port ?? 0}: ${err.message}`));
        else resolve(p);
      });
    });
    enableServerNoDelay(server);
    self = new GrpcPeerTransport(opts, server, joinHostPort(host, port));
    return self;
  }

  /** Registers the collective's callbacks. */
  attach(events: TransportEvents): void {
    if (this.events !== null) throw new Error("GrpcPeerTransport.attach: already attached");
    this.events = events;
  }

  private ev(): TransportEvents {
    if (this.events === null) throw new Error("GrpcPeerTransport: no events attached");
    return this.events;
  }

  get canSend(): boolean {
    return this.outStream !== null && !this.down;
  }

  /** Opens our inbound Pull on the left neighbour and waits for the right neighbour's Pull on us. */
  async connect(addresses: readonly string[], timeoutMs: number): Promise<void> {
    const { jobId, token, rank, worldSize, chunkBytes } = this.opts;
    const deadline = Date.now() + timeoutMs;
    const leftAddr = addresses[this.left];
    if (this.opts.largeFrames === true) {
      this.untune = tuneClientSessions(leftAddr, bulkReceiverSettings(Math.max(8 * 1024 * 1024, 4 * chunkBytes)));
    }
    const credentials = (): grpc.ChannelCredentials => this.opts.tls?.channel() ?? grpc.credentials.createInsecure();
    this.leftClient = new grpc.Client(leftAddr, credentials(), clientChannelOptions(chunkBytes));
    this.rightClient = new grpc.Client(addresses[this.right], credentials());
    const leftClient = this.leftClient;
    try {
      // the left neighbour may not be listening yet: let the channel retry until the deadline
      await new Promise<void>((resolve, reject) => leftClient.waitForReady(deadline, (e) => (e ? reject(e) : resolve())));
    } catch (e) {
      throw fault("left", "timeout", `not reachable within ${timeoutMs} ms: ${e instanceof Error ? e.message : String(e)}`);
    }
    const rightReady = new Promise<void>((resolve) => {
      if (this.outOpened) resolve();
      else this.outReady = resolve;
    });
    let leftSettled = false;
    const leftReady = new Promise<void>((resolve, reject) => {
      const req: PullRequest = { jobId, receiverRank: rank, senderRank: this.left, worldSize };
      const def = peerServiceDefinition.Pull;
      const stream = leftClient.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, req, tokenMetadata(token));
      this.inStream = stream;
      stream.on("metadata", (md: grpc.Metadata) => {
        if (md.get(PROOF_KEY)[0] !== tokenProof(token, jobId, this.left)) {
          this.inStream = null; // its cancellation below is ours, not the neighbour's failure
          stream.cancel();
          reject(fault("left", "auth", "peer did not prove it holds the job token"));
        } else {
          leftSettled = true;
          resolve();
        }
      });
      stream.on("data", (m: DecodedChunk | MalformedChunk) => {
        if (this.inStream === stream && !this.down) this.ev().onChunk(m);
      });
      stream.on("error", (e: grpc.ServiceError) => this.onInboundEnd(stream, e));
      stream.on("end", () => this.onInboundEnd(stream, null));
    });
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

  send(header: ChunkHeader, payload: Float32Array | null, onWritten: () => void): number {
    const out = this.outStream;
    if (out === null || this.down) throw new Error("GrpcPeerTransport.send: outbound stream not open");
    const wire = encodeChunk(header, payload, halfOf(header.dtype));
    out.write({ wire, zeroCopy: this.zeroCopy } satisfies OutgoingChunk, onWritten);
    return wire.byteLength;
  }

  pauseInbound(): void {
    this.inStream?.pause();
  }

  resumeInbound(): void {
    this.inStream?.resume();
  }

  async abort(notice: AbortNotice): Promise<void> {
    this.down = true;
    const req: AbortRequest = { jobId: this.opts.jobId, ...notice };
    const targets = [this.leftClient, this.rightClient].filter((c): c is grpc.Client => c !== null);
    const def = peerServiceDefinition.Abort;
    // Abort first (it carries the reason), then drop the streams, so neighbours learn why rather than just "cancelled".
    await Promise.all(targets.map((c) => new Promise<void>((resolve) => {
      c.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, tokenMetadata(this.opts.token),
        { deadline: Date.now() + 1000 }, () => resolve());
    })));
    this.teardown(notice.reason);
  }

  /** Drops both streams at once (no notice). */
  teardown(reason: string): void {
    this.down = true;
    if (this.outStream !== null) {
      const s = this.outStream;
      this.outStream = null;
      try {
        s.emit("error", { code: grpc.status.ABORTED, details: reason });
      } catch {
        /* stream already closed */
      }
    }
    if (this.inStream !== null) {
      const s = this.inStream;
      this.inStream = null;
      s.cancel();
    }
  }

  async close(graceMs: number): Promise<void> {
    this.down = true;
    const inStream = this.inStream;
    const endOut = (): void => {
      try {
        this.outStream?.end();
      } catch {
        /* already ended */
      }
    };
    if (inStream !== null) {
      const ended = new Promise<void>((resolve) => {
        inStream.once("end", resolve);
        inStream.once("error", () => resolve());
        inStream.once("close", resolve);
      });
      inStream.resume();
      endOut();
      let t: NodeJS.Timeout | null = null;
      await Promise.race([ended, new Promise<void>((resolve) => (t = setTimeout(resolve, graceMs)))]);
      if (t !== null) clearTimeout(t);
      inStream.cancel();
    } else endOut();
    this.leftClient?.close();
    this.rightClient?.close();
    this.untune?.();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 1000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // ---------------------------------------------------------------------------------------------------------

  private onInboundEnd(stream: grpc.ClientReadableStream<DecodedChunk | MalformedChunk>, e: grpc.ServiceError | null): void {
    if (this.inStream !== stream || this.down) return;
    if (e === null) return this.ev().onInboundEnd(null);
    const kind = e.code === grpc.status.UNAUTHENTICATED ? "auth" : e.code === grpc.status.ABORTED ? "aborted" : "peer-lost";
    this.ev().onInboundEnd(fault("left", kind, `stream to us failed: ${grpc.status[e.code] ?? e.code} ${e.details}`));
  }

  private onPull(call: grpc.ServerWritableStream<PullRequest, OutgoingChunk>): void {
    const { jobId, token, rank, worldSize } = this.opts;
    const reject = (code: grpc.status, details: string): void => {
      call.emit("error", { code, details: `rank ${rank} (${this.address}) rejected Pull: ${details}` });
    };
    if (!tokenMatches(call.metadata, token)) return reject(grpc.status.UNAUTHENTICATED, "missing or wrong job token");
    const q = call.request;
    if (q.jobId !== jobId) return reject(grpc.status.PERMISSION_DENIED, `job id "${q.jobId}" is not this job's ("${jobId}")`);
    if (q.worldSize !== worldSize) return reject(grpc.status.FAILED_PRECONDITION, `world size ${q.worldSize}, this ring has ${worldSize}`);
    if (q.senderRank !== rank) return reject(grpc.status.FAILED_PRECONDITION, `caller expects rank ${q.senderRank}, this is rank ${rank}`);
    if (q.receiverRank !== this.right || worldSize === 1) {
      return reject(grpc.status.PERMISSION_DENIED, `only the right neighbour (rank ${this.right}) may pull, caller says it is rank ${q.receiverRank}`);
    }
    if (this.down || this.events === null) return reject(grpc.status.UNAVAILABLE, "communicator closed or failed");
    if (this.outOpened) return reject(grpc.status.ALREADY_EXISTS, `rank ${this.right} already holds the stream`);
    this.outStream = call;
    this.outOpened = true;
    const md = new grpc.Metadata();
    md.set(PROOF_KEY, tokenProof(token, jobId, rank));
    call.sendMetadata(md);
    const lost = (what: string): void => {
      if (this.outStream === call && !this.down) this.ev().onOutboundLost(what);
    };
    call.on("cancelled", () => lost("was cancelled or the connection dropped"));
    call.on("error", () => lost("failed"));
    this.outReady?.();
    this.outReady = null;
    this.ev().onOutboundReady();
  }

  private onAbortCall(call: grpc.ServerUnaryCall<AbortRequest, Record<string, never>>, cb: grpc.sendUnaryData<Record<string, never>>): void {
    const { jobId, token, rank } = this.opts;
    if (!tokenMatches(call.metadata, token)) return cb({ code: grpc.status.UNAUTHENTICATED, details: "missing or wrong job token" });
    const q = call.request;
    if (q.jobId !== jobId) return cb({ code: grpc.status.PERMISSION_DENIED, details: `job id "${q.jobId}" is not this job's` });
    if (q.senderRank !== this.left && q.senderRank !== this.right) {
      return cb({ code: grpc.status.PERMISSION_DENIED, details: `rank ${q.senderRank} is not a neighbour of rank ${rank}` });
    }
    cb(null, {});
    if (this.down || this.events === null) return;
    const { jobId: _job, ...notice } = q;
    this.events.onAbort(notice);
  }
}

function fault(side: "left" | "right", kind: string, detail: string): TransportFault {
  return { side, kind, detail };
}
