/**
 * Ring all-reduce: reduce-scatter then all-gather, each rank sending only to its right neighbour.
 *
 * This module decides WHAT is reduced and WHEN (bucket plans, ring schedule, pipelining, summing, validation of
 * every chunk against the local layout, deadlines of collectives, failure verdicts). HOW bytes move is behind
 * the PeerTransport interface (worker/transport/peer-transport.ts); `listen()` builds the transport chosen by
 * `RingOptions.transport`: "http2" (the gRPC wire protocol spoken directly on node:http2, which sums payloads
 * straight out of the received DATA pieces), "http2-raw" (the same, but the receiving side speaks HTTP/2 itself
 * on a socket that reads into one reused buffer), "http2-socket" (default without TLS: as "http2-raw", and the
 * sending side too, with large zero-copy DATA frames) or "grpc" (grpc-js; the default with TLS).
 * Each segment travels in sub-chunks of `chunkBytes`; a received sub-chunk is validated, summed (or copied)
 * into place and immediately forwarded, so sending, receiving and summing overlap.
 *
 * Memory rules that make the zero-copy send safe: a chunk's payload is read from the bucket buffer when the
 * transport frames it (possibly later than send()), and a region is only rewritten after data that causally depends on
 * that send has come back round the ring; allReduce resolves only after every write callback has fired.
 *
 * Failure: every collective has a deadline; a lost stream, a protocol violation or an Abort from a neighbour
 * fails the collective with a CollectiveError naming the responsible rank, and this rank tells both neighbours
 * (Abort notice, then stream teardown) so the whole ring leaves quickly. A communicator that failed stays failed.
 */
import { addInto } from "../../shared/codecs/float32-sum";
import { HOST_PORT_PATTERN } from "../../shared/net/host-port";
import { type HalfKind, roundToHalf, decodeHalf } from "../../shared/codecs/half";
import { RingPhase, WireDtype, bytesPerElement, type ChunkHeader, type DecodedChunk, type MalformedChunk } from "../transport/chunk-wire";
import { GrpcPeerTransport } from "../transport/grpc-peer-transport";
import { Http2PeerTransport } from "../transport/http2-peer-transport";
import type { MutualTls } from "../../shared/security/tls";
import { isTransportFault, type AbortNotice, type InboundPlan, type PeerTransport, type TransportFault } from "../transport/peer-transport";
import { CollectiveError, type CollectivePhase } from "./collective-error";
import { traceNow, type CollectiveObserver } from "./collective-event";
import { DEFAULT_BUCKET_BYTES, layoutSalt, planBuckets, type BucketPlan } from "./bucket-plan";
import { segmentStart, segmentLength, chunkCount, reduceScatterSegment, allGatherSegment } from "./ring-geometry";
import { Fifo } from "./fifo";

/** Default sub-chunk size: prototype measurements put the grpc-js sweet spot at 1-16 MiB messages. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

/** Configuration of one rank's communicator. */
export interface RingOptions {
  jobId: string;
  /** Shared secret every peer call must carry. */
  token: string;
  rank: number;
  worldSize: number;
  /** Deadline of connect() and of every collective, in milliseconds. */
  timeoutMs: number;
  /** Bind host, default 127.0.0.1. */
  host?: string;
  /** Bind port, 0 = any free port. */
  port?: number;
  /** Sub-chunk size in bytes of float32 data (multiple of 4); must be equal on every rank. */
  chunkBytes?: number;
  /** Fusion bucket size in bytes (default 25 MiB). */
  bucketBytes?: number;
  /** Wire compression; sums are always float32. */
  compression?: "none" | "fp16" | "bf16";
  /** Mutual TLS for the peer connections (communication.tls); plaintext when absent. */
  tls?: MutualTls;
  /** Let the transport copy payloads straight from tensor memory into its frames (default true). */
  zeroCopySend?: boolean;
  /** Bytes handed to the transport but not yet written out (default 2 chunks). */
  maxInflightBytes?: number;
  /**
   * Peer transport built by listen(): "http2" (gRPC wire format on node:http2 with streaming receive),
   * "http2-raw" (as "http2", but the inbound stream is read as HTTP/2 straight off a net.Socket into one reused
   * buffer, bypassing node:http2 on the receive path), "http2-socket" (the default: as "http2-raw", and the peer
   * port is served on raw sockets too: each Chunk leaves as DATA frames of up to the receiver's max frame size,
   * header and tensor view in one writev; the only http2 kind with `tls`) or "grpc" (grpc-js, with or without
   * `tls`). All speak proto/peer.proto on the same wire, so they interoperate; a ring normally uses one.
   */
  transport?: RingTransportKind;
  /** Tracing hook (the timeline): called synchronously at collective and bucket-phase boundaries; must be cheap. */
  onEvent?: CollectiveObserver;
  /**
   * Neighbours in the same network namespace talk over a Unix socket instead of loopback TCP ("http2-socket"
   * without TLS; communication.unix_sockets, default true). Same bytes, less kernel work; other peers use TCP.
   */
  localSockets?: boolean;
  /** The host this rank is listed under in the ring (names its Unix socket; default: `host`). */
  advertisedHost?: string;
}

/** Transports RingCommunicator.listen() can build. */
export type RingTransportKind = "grpc" | "http2" | "http2-raw" | "http2-socket";
/** Every RingTransportKind, for validating user input. */
export const RING_TRANSPORT_KINDS: readonly RingTransportKind[] = ["grpc", "http2", "http2-raw", "http2-socket"];
/** The transport listen() builds when RingOptions.transport is not set and no TLS is configured. */
export const DEFAULT_TRANSPORT: RingTransportKind = "http2-socket";

/** A named float32 tensor reduced in place. */
export interface NamedTensor {
  name: string;
  data: Float32Array;
}

/** Per-call options of allReduce. */
export interface AllReduceOptions {
  /** Training step; must be equal on every rank (checked on the wire). */
  step: number;
  op: "sum" | "avg";
  /**
   * Send float32 whatever the communicator's wire compression: for values that half precision would round, such
   * as target counts and loss sums (fp16 holds integers exactly only up to 2048, bf16 up to 256). Every rank must
   * pass the same value (it is part of the layout check).
   */
  exact?: boolean;
}

/**
 * An all-reduce started before its data exists (startAllReduce): the caller marks each tensor ready once its
 * final values are in place; a bucket starts travelling as soon as all of its tensors are ready, so communication
 * overlaps with the computation of the remaining tensors (DDP's gradient-bucket overlap).
 */
export interface PendingAllReduce {
  /** Marks tensor `index` (position in the tensor list) final; its memory must not change until `done` settles. */
  ready(index: number): void;
  /** Settles as allReduce() would: resolves once this rank holds every result, rejects with a CollectiveError. */
  readonly done: Promise<void>;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // rejections are observed by whoever awaits; never unhandled
  return { promise, resolve, reject };
}

/** State of one running collective. */
interface Run {
  id: number;
  step: number;
  op: number;
  /** Wire dtype of this collective: the communicator's compression, or float32 for an exact one. */
  dtype: number;
  /** The 16-bit format sent on the wire, or null for float32. */
  half: "fp16" | "bf16" | null;
  plan: BucketPlan;
  tensors: NamedTensor[];
  /** One float32 buffer per bucket: the tensor itself for single-tensor buckets, else a pooled packing buffer. */
  buffers: Float32Array[];
  packed: boolean[];
  /** Seen flags per bucket: index ((phase * N) + segment) * maxChunks + chunk. */
  seen: Uint8Array[];
  maxChunks: number[];
  begun: boolean;
  expectedRs: number;
  expectedAg: number;
  receivedRs: number;
  receivedAg: number;
  pendingWrites: number;
  done: Deferred<void>;
  timer: NodeJS.Timeout | null;
  /** Bucket of each tensor, whether the tensor was marked ready, and not-yet-ready tensors per bucket. */
  tensorBucket: Int32Array;
  tensorReady: Uint8Array;
  bucketPending: Int32Array;
  /** Buckets not yet started; the deadline starts when this reaches 0 (the wait for data is not the ring's). */
  bucketsWaiting: number;
  /** Inbound messages kept, in arrival order, because the first of them targets a bucket not ready here yet. */
  held: (DecodedChunk | MalformedChunk)[];
}

interface QueuedSend {
  run: Run;
  header: ChunkHeader;
  source: Float32Array | null;
}

const OPS = { sum: 1, avg: 2 } as const;
const EMPTY = new Float32Array(0);
const SKIP: InboundPlan = { kind: "skip" };
const WHOLE: InboundPlan = { kind: "whole" };
const DTYPES = { none: WireDtype.FLOAT32, fp16: WireDtype.FLOAT16, bf16: WireDtype.BFLOAT16 } as const;

/** One rank of a ring all-reduce group. */
export class RingCommunicator {
  /** "host:port" this rank's peer server listens on. */
  readonly address: string;
  readonly rank: number;
  readonly worldSize: number;

  private readonly jobId: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly chunkElems: number;
  private readonly bucketBytes: number;
  private readonly compression: "none" | "fp16" | "bf16";
  private readonly half: HalfKind | null;
  private readonly dtype: number;
  private readonly maxInflight: number;
  private readonly left: number;
  private readonly right: number;

  /** How the inbound stream reached the left neighbour once connected: "unix" (same-host socket), "tcp", or null when the transport does not say. */
  get inboundVia(): "unix" | "tcp" | null {
    return this.transport.inboundVia ?? null;
  }

  private addresses: string[] = [];
  private connected = false;
  private closing = false;
  private broken: CollectiveError | null = null;
  private connecting = false;
  /** Rejected by fail(): lets a pending connect() end with the failure's verdict. */
  private readonly failed = deferred<never>();
  private nextId = 0;
  private run: Run | null = null;
  private early: (DecodedChunk | MalformedChunk)[] = [];
  private paused = false;
  private readonly forwards = new Fifo<QueuedSend>();
  private readonly initial = new Fifo<QueuedSend>();
  private inflightBytes = 0;
  private pool: Float32Array[] = [];
  private readonly onEvent: CollectiveObserver | undefined;

  private constructor(opts: RingOptions, private readonly transport: PeerTransport) {
    this.address = transport.address;
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.jobId = opts.jobId;
    this.token = opts.token;
    this.timeoutMs = opts.timeoutMs;
    this.chunkElems = (opts.chunkBytes ?? DEFAULT_CHUNK_BYTES) / 4;
    this.bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.compression = opts.compression ?? "none";
    this.half = this.compression === "none" ? null : this.compression;
    this.dtype = DTYPES[this.compression];
    this.maxInflight = opts.maxInflightBytes ?? 2 * (opts.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    this.onEvent = opts.onEvent;
    this.left = (opts.rank - 1 + opts.worldSize) % opts.worldSize;
    this.right = (opts.rank + 1) % opts.worldSize;
    transport.attach({
      onChunk: (m) => this.onMessage(m),
      onChunkHeader: (h, n) => this.onHeader(h, n),
      onOutboundReady: () => this.pump(),
      onInboundEnd: (f) => this.onInboundEnd(f),
      onOutboundLost: (what) => this.onOutboundLost(what),
      onAbort: (n) => this.onAbortNotice(n),
    });
  }

  /** Validates options, binds the peer server (transport per `opts.transport`) and returns the communicator (not yet connected). */
  static async listen(opts: RingOptions): Promise<RingCommunicator> {
    validateOptions(opts);
    const base = {
      jobId: opts.jobId, token: opts.token, rank: opts.rank, worldSize: opts.worldSize, host: opts.host, port: opts.port,
      chunkBytes: opts.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    };
    const kind = opts.transport ?? DEFAULT_TRANSPORT;
    const transport: PeerTransport = kind === "grpc"
      ? await GrpcPeerTransport.listen({ ...base, zeroCopySend: opts.zeroCopySend, tls: opts.tls })
      : await Http2PeerTransport.listen({
        ...base, rawReceive: kind === "http2-raw" || kind === "http2-socket", rawSend: kind === "http2-socket", tls: opts.tls,
        localSockets: opts.localSockets ?? true, advertisedHost: opts.advertisedHost,
      });
    return new RingCommunicator(opts, transport);
  }

  /** Builds a communicator on another PeerTransport (already listening, not yet connected or attached). */
  static withTransport(opts: RingOptions, transport: PeerTransport): RingCommunicator {
    validateOptions(opts);
    return new RingCommunicator(opts, transport);
  }

  /** Connects the ring: `addresses` holds every rank's address in rank order (ours included). */
  async connect(addresses: string[]): Promise<void> {
    if (this.connected || this.connecting || this.addresses.length > 0) throw this.usage("connect", "connect() called twice");
    if (!Array.isArray(addresses) || addresses.length !== this.worldSize) {
      throw this.usage("connect", `expected ${this.worldSize} addresses, got ${Array.isArray(addresses) ? addresses.length : typeof addresses}`);
    }
    addresses.forEach((a, i) => {
      if (typeof a !== "string" || !HOST_PORT_PATTERN.test(a)) throw this.usage("connect", `address of rank ${i} is not "host:port": ${JSON.stringify(a)}`);
    });
    // Bound to all interfaces (multi-node), this rank is advertised under a routable host: only the port must match.
    const port = (a: string): string => a.slice(a.lastIndexOf(":"));
    const wildcard = this.address.startsWith("0.0.0.0:") || this.address.startsWith("[::]:");
    if (addresses[this.rank] !== this.address && !(wildcard && port(addresses[this.rank]) === port(this.address))) {
      throw this.usage("connect", `addresses[${this.rank}] is ${addresses[this.rank]}, but this rank listens on ${this.address}`);
    }
    this.addresses = addresses.slice();
    if (this.worldSize === 1) {
      this.connected = true;
      return;
    }
    this.connecting = true;
    try {
      await Promise.race([this.transport.connect(this.addresses, this.timeoutMs), this.failed.promise]);
      this.connected = true;
    } catch (e) {
      const err = e instanceof CollectiveError ? e
        : isTransportFault(e) ? this.faultError(e, "connect")
          : this.err(this.left, "connect", "peer-lost", String(e));
      this.fail(err);
      throw this.broken ?? err;
    } finally {
      this.connecting = false;
    }
  }
  private peerGone: CollectiveError | null = null;
  /**
   * The left neighbour ended its stream cleanly while messages for a later collective were still kept in
   * `early`: the next collective may still complete from them, so the verdict waits until they are processed.
   */
  private leftEnded: CollectiveError | null = null;
  /** Abort notices in flight after a failure; close() waits for them so neighbours learn the reason first. */
  private aborting: Promise<void> = Promise.resolve();

  /**
   * Sums (op "sum") or averages (op "avg") every tensor element-wise over all ranks, in place. Tensors are packed
   * into fusion buckets in list order; every rank must pass the same names and lengths in the same order and the
   * same step. Resolves when this rank holds the result and no send still reads its memory. On failure rejects
   * with a CollectiveError (tensor contents are then unspecified) and the communicator stays unusable.
   */
  async allReduce(tensors: NamedTensor[], opts: AllReduceOptions): Promise<void> {
    await this.begin(tensors, opts, false).done;
  }

  /**
   * Starts an all-reduce whose tensors are not final yet (e.g. gradients still being computed): BEGIN, with the
   * layout check, goes out at once; each bucket's reduce-scatter starts when the caller has marked all of its
   * tensors ready, and chunks from the left neighbour for a bucket not ready here wait (the inbound stream is
   * paused, so nothing is buffered without bound). The collective's deadline runs from the moment every bucket
   * is ready. Validation errors throw synchronously; failures later reject `done`.
   */
  startAllReduce(tensors: NamedTensor[], opts: AllReduceOptions): PendingAllReduce {
    return this.begin(tensors, opts, true);
  }

  private begin(tensors: NamedTensor[], opts: AllReduceOptions, gated: boolean): PendingAllReduce {
    const step = opts?.step;
    if (this.broken) throw this.err(this.broken.rank, this.broken.phase, this.broken.kind, `communicator unusable after an earlier failure: ${this.broken.message}`, step ?? -1);
    if (this.closing) throw this.usage("idle", "communicator is closed");
    if (this.peerGone !== null) throw this.peerGone;
    if (!this.connected) throw this.usage("idle", "allReduce() before connect()");
    if (this.run !== null) throw this.usage("idle", "allReduce() called while another collective is running");
    if (!Number.isSafeInteger(step) || step < 0) throw this.usage("idle", `step must be a non-negative integer, got ${step}`);
    if (opts.op !== "sum" && opts.op !== "avg") throw this.usage("idle", `op must be "sum" or "avg", got ${JSON.stringify(opts.op)}`);
    if (!Array.isArray(tensors)) throw this.usage("idle", "tensors must be an array");
    const names = new Set<string>();
    tensors.forEach((t, i) => {
      if (t === null || typeof t !== "object" || typeof t.name !== "string" || !(t.data instanceof Float32Array)) {
        throw this.usage("idle", `tensor ${i} must be { name: string, data: Float32Array }`);
      }
      if (names.has(t.name)) throw this.usage("idle", `duplicate tensor name "${t.name}"`);
      names.add(t.name);
    });
    const N = this.worldSize;
    if (N === 1) {
      // sum and average over one rank are the identity
      const marked = new Uint8Array(tensors.length);
      return { ready: (i) => this.markOnce(marked, i, tensors.length), done: Promise.resolve() };
    }
    const op = OPS[opts.op];
    const exact = opts.exact === true;
    const dtype = exact ? WireDtype.FLOAT32 : this.dtype;
    const plan = planBuckets(tensors.map((t) => ({ name: t.name, length: t.data.length })), this.bucketBytes,
      layoutSalt(N, op, dtype, this.chunkElems));
    const run = this.startRun(plan, tensors, step, op, gated, dtype, exact ? null : this.half);
    return { ready: (i) => this.markReady(run, i), done: run.done.promise };
  }

  private markOnce(marked: Uint8Array, i: number, n: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= n) throw this.usage("idle", `ready(${i}): no tensor ${i} (${n} tensors)`);
    if (marked[i] !== 0) throw this.usage("idle", `ready(${i}) called twice`);
    marked[i] = 1;
  }

  /** Tensor i of a deferred run is final: start its bucket when it was the last one missing. */
  private markReady(run: Run, i: number): void {
    this.markOnce(run.tensorReady, i, run.tensors.length);
    if (this.run !== run) return; // failed (done is rejected) or, for an empty run, already over
    const bi = run.tensorBucket[i];
    if (--run.bucketPending[bi] > 0) return;
    this.startBucket(run, bi);
    this.releaseHeld(run);
    this.pump();
  }

  /** Packs bucket bi (if shared by several tensors) and queues this rank's reduce-scatter chunks of it. */
  private startBucket(run: Run, bi: number): void {
    const b = run.plan.buckets[bi];
    if (run.packed[bi]) {
      const view = run.buffers[bi];
      for (const e of b.entries) view.set(run.tensors[e.tensor].data, e.offset);
    }
    const c = chunkCount(b.elements, this.worldSize, this.rank, this.chunkElems);
    for (let k = 0; k < c; k++) this.enqueue(run, this.initial, RingPhase.REDUCE_SCATTER, 0, bi, this.rank, k, run.buffers[bi]);
    this.onEvent?.({ kind: "bucket-start", at: traceNow(), collective: run.id, bucket: bi });
    if (--run.bucketsWaiting === 0) this.startDeadline(run);
  }

  /** Whether an inbound message must wait: one is already waiting, or it carries data for a bucket not started here. */
  private mustHold(run: Run, h: ChunkHeader): boolean {
    if (run.held.length > 0) return true;
    if (h.phase === RingPhase.BEGIN || h.bucket >= run.bucketPending.length) return false; // accept() judges it
    return run.bucketPending[h.bucket] > 0;
  }

  /** Delivers held messages in order up to the first one whose bucket is still not ready; resumes reading when all are out. */
  private releaseHeld(run: Run): void {
    while (run.held.length > 0 && this.run === run) {
      const m = run.held[0];
      if (m.ok && m.header.phase !== RingPhase.BEGIN && m.header.bucket < run.bucketPending.length && run.bucketPending[m.header.bucket] > 0) return;
      run.held.shift();
      this.onMessage(m);
    }
    if (this.run === run && run.held.length === 0 && this.paused && this.early.length === 0) {
      this.paused = false;
      this.transport.resumeInbound();
    }
  }

  /** Two-stage deadline: at 90% a rank whose left neighbour never even started (no BEGIN) blames it and aborts
   *  the ring; the others, whose neighbours are alive but starved, wait until 100% for that better verdict. */
  private startDeadline(run: Run): void {
    run.timer = setTimeout(() => {
      if (!run.begun) this.onTimeout(run);
      else run.timer = setTimeout(() => this.onTimeout(run), this.timeoutMs - Math.floor(0.9 * this.timeoutMs));
    }, Math.floor(0.9 * this.timeoutMs));
  }

  /**
   * Closes the communicator. Graceful: our stream to the right neighbour is ended after its queued chunks, and we
   * wait (at most min(timeoutMs, 5 s)) for the left neighbour to end its stream to us, so that a neighbour still
   * waiting for its last write confirmations is not cut off. A running collective is failed first.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    if (this.run !== null) this.fail(this.err(this.rank, this.phaseOf(this.run), "closed", "communicator closed during a collective"));
    await this.aborting;
    this.closing = true;
    this.forwards.clear();
    this.initial.clear();
    await this.transport.close(Math.min(this.timeoutMs, 5000));
  }

  // ---------------------------------------------------------------------------------------------------------
  // collective driver

  private startRun(plan: BucketPlan, tensors: NamedTensor[], step: number, op: number, gated: boolean, dtype: number, half: Run["half"]): Run {
    const N = this.worldSize;
    const r = this.rank;
    const ce = this.chunkElems;
    const buffers: Float32Array[] = [];
    const packed: boolean[] = [];
    const seen: Uint8Array[] = [];
    const maxChunks: number[] = [];
    let expectedRs = 0;
    let expectedAg = 0;
    const tensorBucket = new Int32Array(tensors.length);
    const bucketPending = new Int32Array(plan.buckets.length);
    plan.buckets.forEach((b, bi) => {
      for (const e of b.entries) tensorBucket[e.tensor] = bi;
      bucketPending[bi] = b.entries.length;
      if (b.entries.length === 1) {
        buffers.push(tensors[b.entries[0].tensor].data);
        packed.push(false);
      } else {
        let buf = this.pool[bi];
        if (buf === undefined || buf.length < b.elements) buf = this.pool[bi] = new Float32Array(b.elements);
        buffers.push(buf.subarray(0, b.elements)); // packed by startBucket() once its tensors are ready
        packed.push(true);
      }
      const L = b.elements;
      let mc = 0;
      for (let g = 0; g < N; g++) {
        const c = chunkCount(L, N, g, ce);
        mc = Math.max(mc, c);
        if (g !== r) expectedRs += c;
        if (g !== this.right) expectedAg += c;
      }
      maxChunks.push(mc);
      seen.push(new Uint8Array(2 * N * mc));
    });
    const run: Run = {
      id: this.nextId++, step, op, dtype, half, plan, tensors, buffers, packed, seen, maxChunks, begun: false,
      expectedRs, expectedAg, receivedRs: 0, receivedAg: 0, pendingWrites: 0, done: deferred<void>(), timer: null,
      tensorBucket, tensorReady: new Uint8Array(tensors.length), bucketPending, bucketsWaiting: plan.buckets.length, held: [],
    };
    this.run = run;
    this.onEvent?.({ kind: "start", at: traceNow(), collective: run.id, step, buckets: plan.buckets.map((b) => b.elements) });

    this.enqueue(run, this.initial, RingPhase.BEGIN, 0, 0, 0, 0, null);
    if (plan.buckets.length === 0) this.startDeadline(run);
    if (!gated) {
      run.tensorReady.fill(1);
      plan.buckets.forEach((_, bi) => {
        run.bucketPending[bi] = 0;
        this.startBucket(run, bi);
      });
    }
    // messages for this collective that arrived before it started
    const early = this.early;
    this.early = [];
    for (const m of early) this.onMessage(m);
    if (this.leftEnded !== null && this.early.length === 0) {
      const gone = this.leftEnded;
      this.leftEnded = null;
      this.peerGone = gone; // no later collective can get data from the left neighbour
      if (this.run === run && this.phaseOf(run) !== "finish") this.fail(this.err(this.left, this.phaseOf(run), "peer-lost", "closed its stream to us", step));
    }
    if (this.paused && this.run === run && run.held.length === 0) {
      this.paused = false;
      this.transport.resumeInbound();
    }
    this.pump();
    return run;
  }

  /** Queues the send of chunk k of `segment` (phase, hop) of bucket bi; the payload is read at framing time. */
  private enqueue(run: Run, q: Fifo<QueuedSend>, phase: number, hop: number, bi: number, segment: number, k: number, buf: Float32Array | null): void {
    const N = this.worldSize;
    let source: Float32Array | null = null;
    let offset = 0;
    let count = 0;
    if (buf !== null) {
      const L = buf.length;
      offset = segmentStart(L, N, segment) + k * this.chunkElems;
      count = Math.min(this.chunkElems, segmentLength(L, N, segment) - k * this.chunkElems);
      source = buf.subarray(offset, offset + count);
    }
    const header: ChunkHeader = {
      jobId: this.jobId, senderRank: this.rank, collectiveId: run.id, step: run.step, bucket: bi, phase, hop, segment,
      chunkIndex: k, elementOffset: offset, elementCount: count, chunkBytes: count * bytesPerElement(run.dtype),
      dtype: run.dtype, layoutHash: run.plan.layoutHash, bucketCount: run.plan.buckets.length,
      totalElements: run.plan.totalElements, op: run.op,
    };
    run.pendingWrites++;
    q.push({ run, header, source });
  }

  /** Hands queued chunks to the transport while fewer than maxInflight bytes are unconfirmed; forwards go first. */
  private pump(): void {
    const t = this.transport;
    if (!t.canSend || this.broken !== null) return;
    while (this.inflightBytes < this.maxInflight) {
      const item = this.forwards.shift() ?? this.initial.shift();
      if (item === undefined) return;
      let bytes = 0;
      bytes = t.send(item.header, item.source, () => {
        this.inflightBytes -= bytes;
        item.run.pendingWrites--;
        if (this.run === item.run) this.maybeFinish(item.run);
        this.pump();
      });
      this.inflightBytes += bytes;
    }
  }

  private onMessage(m: DecodedChunk | MalformedChunk): void {
    if (this.broken !== null || this.closing) return;
    const fail = (detail: string, kind = "protocol"): void => this.fail(this.err(this.left, this.run ? this.phaseOf(this.run) : "idle", kind, detail));
    if (!m.ok) return fail(`malformed Chunk message: ${m.reason}`);
    const run = this.route(m.header);
    if (run === "failed") return;
    if (run === "early") {
      // the neighbour is ahead of us: keep the message and stop reading until we catch up (flow control)
      this.early.push(m);
      if (!this.paused) {
        this.paused = true;
        this.transport.pauseInbound();
      }
      return;
    }
    if (this.mustHold(run, m.header)) {
      // data for a bucket whose tensors are not final here yet (overlap): keep it, stop reading until they are
      run.held.push(m);
      if (!this.paused) {
        this.paused = true;
        this.transport.pauseInbound();
      }
      return;
    }
    const region = this.accept(run, m.header, m.payload.length);
    if (region === null) return;
    if (region.length > 0) this.applyPayload(run, region, m.header, m.payload);
    this.complete(run, m.header, region);
  }

  /**
   * Streaming path: the transport has the header of a message whose payload (`payloadBytes`) it has not read
   * yet. Validates exactly as for a whole message and tells the transport where the payload goes.
   */
  private onHeader(h: ChunkHeader, payloadBytes: number): InboundPlan {
    if (this.broken !== null || this.closing) return SKIP;
    const run = this.route(h);
    if (run === "failed") return SKIP;
    if (run === "early" || this.mustHold(run, h)) return WHOLE; // delivered through onMessage, which keeps it for later
    const region = this.accept(run, h, payloadBytes);
    if (region === null) return SKIP;
    if (region.length === 0) {
      this.complete(run, h, region);
      return SKIP;
    }
    return {
      kind: "into", target: region, add: h.phase === RingPhase.REDUCE_SCATTER,
      done: () => {
        if (this.run === run && this.broken === null) this.complete(run, h, region);
      },
    };
  }

  /** Job, sender and collective checks: the current run, "early" (a later collective) or "failed". */
  private route(h: ChunkHeader): Run | "early" | "failed" {
    const fail = (detail: string): "failed" => {
      this.fail(this.err(this.left, this.run ? this.phaseOf(this.run) : "idle", "protocol", detail));
      return "failed";
    };
    if (h.jobId !== this.jobId) return fail(`wrong job id "${h.jobId}" (expected "${this.jobId}")`);
    if (h.senderRank !== this.left) return fail(`chunk claims sender rank ${h.senderRank}, expected ${this.left}`);
    const run = this.run;
    const current = run?.id ?? this.nextId;
    if (h.collectiveId < current) return fail(`chunk for collective ${h.collectiveId}, which is already over (current ${current})`);
    if (run === null || h.collectiveId > run.id) return "early";
    return run;
  }

  /**
   * Validates a chunk of the current run against the local layout before any memory is touched, marks it seen
   * and returns the region its payload goes to (empty for BEGIN); null when the chunk failed the collective.
   */
  private accept(run: Run, h: ChunkHeader, payloadBytes: number): Float32Array | null {
    const N = this.worldSize;
    const fail = (detail: string, kind = "protocol"): null => {
      this.fail(this.err(this.left, this.phaseOf(run), kind, detail, run.step));
      return null;
    };
    if (h.step !== run.step) return fail(`wrong step ${h.step} (this rank is at step ${run.step})`);
    if (h.phase === RingPhase.BEGIN) {
      if (run.begun) return fail("duplicate BEGIN message");
      if (h.layoutHash !== run.plan.layoutHash || h.bucketCount !== run.plan.buckets.length || h.totalElements !== run.plan.totalElements
        || h.op !== run.op || h.dtype !== run.dtype) {
        return fail(`bucket layout mismatch: left neighbour has ${h.bucketCount} buckets / ${h.totalElements} elements / op ${h.op} / dtype ${h.dtype} / layout hash ${h.layoutHash}, `
          + `this rank has ${run.plan.buckets.length} buckets / ${run.plan.totalElements} elements / op ${run.op} / dtype ${run.dtype} / layout hash ${run.plan.layoutHash} `
          + `(tensor names, lengths, order, bucket size, op, compression and chunk size must agree on every rank)`, "layout-mismatch");
      }
      return EMPTY;
    }
    if (!run.begun) return fail("data chunk before the BEGIN message");
    if (h.layoutHash !== run.plan.layoutHash) return fail(`layout hash ${h.layoutHash} differs from ours ${run.plan.layoutHash}`, "layout-mismatch");
    if (h.dtype !== run.dtype) return fail(`dtype ${h.dtype}, expected ${run.dtype}`);
    if (h.bucket >= run.buffers.length) return fail(`bucket index ${h.bucket} out of range (${run.buffers.length} buckets)`);
    if (h.phase !== RingPhase.REDUCE_SCATTER && h.phase !== RingPhase.ALL_GATHER) return fail(`invalid phase ${h.phase}`);
    if (h.hop >= N - 1) return fail(`hop ${h.hop} out of range (0..${N - 2})`);
    const rs = h.phase === RingPhase.REDUCE_SCATTER;
    const seg = rs ? reduceScatterSegment(this.rank, N, h.hop) : allGatherSegment(this.rank, N, h.hop);
    if (h.segment !== seg) return fail(`segment ${h.segment} at ${rs ? "reduce-scatter" : "all-gather"} hop ${h.hop}, expected ${seg}`);
    const buf = run.buffers[h.bucket];
    const L = buf.length;
    const nChunks = chunkCount(L, N, seg, this.chunkElems);
    if (h.chunkIndex >= nChunks) return fail(`chunk index ${h.chunkIndex} out of range (segment ${seg} of bucket ${h.bucket} has ${nChunks})`);
    const offset = segmentStart(L, N, seg) + h.chunkIndex * this.chunkElems;
    const count = Math.min(this.chunkElems, segmentLength(L, N, seg) - h.chunkIndex * this.chunkElems);
    if (h.elementOffset !== offset || h.elementCount !== count) {
      return fail(`chunk ${h.chunkIndex} of bucket ${h.bucket} covers elements [${h.elementOffset}, +${h.elementCount}), expected [${offset}, +${count}]`);
    }
    const bpe = bytesPerElement(run.dtype);
    if (h.chunkBytes !== count * bpe) return fail(`chunk_bytes ${h.chunkBytes}, expected ${count * bpe}`);
    if (payloadBytes !== h.chunkBytes) return fail(`payload length ${payloadBytes} bytes, chunk_bytes says ${h.chunkBytes}`);
    const seenArr = run.seen[h.bucket];
    const mc = run.maxChunks[h.bucket];
    const idx = ((rs ? 0 : 1) * N + seg) * mc + h.chunkIndex;
    if (seenArr[idx] !== 0) return fail(`duplicate chunk ${h.chunkIndex} of segment ${seg}, bucket ${h.bucket}`);
    if (!rs && seg !== this.rank && seenArr[seg * mc + h.chunkIndex] === 0) {
      return fail(`all-gather chunk ${h.chunkIndex} of segment ${seg} arrived before its reduce-scatter chunk`);
    }
    seenArr[idx] = 1;
    return buf.subarray(offset, offset + count);
  }

  /** Sums (reduce-scatter) or copies (all-gather) a whole received payload into its validated region. */
  private applyPayload(run: Run, region: Float32Array, h: ChunkHeader, payload: Buffer): void {
    const rs = h.phase === RingPhase.REDUCE_SCATTER;
    const count = region.length;
    if (run.half === null) {
      const src = payload.byteOffset % 4 === 0
        ? new Float32Array(payload.buffer, payload.byteOffset, count)
        : new Float32Array(new Uint8Array(payload).buffer, 0, count); // misaligned frame: copy once
      if (rs) addInto(region, src);
      else region.set(src);
    } else {
      const src = payload.byteOffset % 2 === 0
        ? new Uint16Array(payload.buffer, payload.byteOffset, count)
        : new Uint16Array(new Uint8Array(payload).buffer, 0, count);
      decodeHalf(run.half, src, region, rs);
    }
  }

  /** Bookkeeping once a validated chunk's payload is in place: BEGIN, forwarding, finalising, finishing. */
  private complete(run: Run, h: ChunkHeader, region: Float32Array): void {
    const N = this.worldSize;
    if (h.phase === RingPhase.BEGIN) {
      this.onEvent?.({ kind: "begin", at: traceNow(), collective: run.id });
      run.begun = true;
      this.maybeFinish(run);
      return;
    }
    const buf = run.buffers[h.bucket];
    const seg = h.segment;
    this.onEvent?.({ kind: "chunk", at: traceNow(), collective: run.id, bucket: h.bucket, phase: h.phase === RingPhase.REDUCE_SCATTER ? "reduce-scatter" : "all-gather", bytes: h.chunkBytes });
    if (h.phase === RingPhase.REDUCE_SCATTER) {
      run.receivedRs++;
      if (h.hop < N - 2) this.enqueue(run, this.forwards, RingPhase.REDUCE_SCATTER, h.hop + 1, h.bucket, seg, h.chunkIndex, buf);
      else {
        // this rank owns the fully reduced segment: finalise it, then start its all-gather
        if (run.op === OPS.avg) for (let i = 0; i < region.length; i++) region[i] = region[i] / N;
        if (run.half !== null) roundToHalf(run.half, region); // so every rank ends with identical bits
        this.enqueue(run, this.forwards, RingPhase.ALL_GATHER, 0, h.bucket, seg, h.chunkIndex, buf);
      }
    } else {
      run.receivedAg++;
      if (h.hop < N - 2) this.enqueue(run, this.forwards, RingPhase.ALL_GATHER, h.hop + 1, h.bucket, seg, h.chunkIndex, buf);
    }
    this.pump();
    this.maybeFinish(run);
  }

  private maybeFinish(run: Run): void {
    if (!run.begun || run.receivedRs !== run.expectedRs || run.receivedAg !== run.expectedAg || run.pendingWrites !== 0) return;
    if (run.timer !== null) clearTimeout(run.timer);
    run.plan.buckets.forEach((b, bi) => {
      if (!run.packed[bi]) return;
      const buf = run.buffers[bi];
      for (const e of b.entries) run.tensors[e.tensor].data.set(buf.subarray(e.offset, e.offset + e.length));
    });
    this.run = null;
    this.onEvent?.({ kind: "end", at: traceNow(), collective: run.id, ok: true });
    run.done.resolve();
  }

  private phaseOf(run: Run): CollectivePhase {
    if (!run.begun) return "begin";
    if (run.receivedRs < run.expectedRs) return "reduce-scatter";
    if (run.receivedAg < run.expectedAg) return "all-gather";
    return "finish";
  }

  private onTimeout(run: Run): void {
    if (this.run !== run) return;
    const phase = this.phaseOf(run);
    if (phase === "finish") {
      this.fail(this.err(this.right, phase, "timeout", `did not take our last ${run.pendingWrites} chunks within ${this.timeoutMs} ms`, run.step));
    } else {
      const got = run.receivedRs + run.receivedAg;
      this.fail(this.err(this.left, phase, "timeout",
        `no data from it for ${this.timeoutMs} ms (received ${got} of ${run.expectedRs + run.expectedAg} chunks${run.begun ? "" : ", no BEGIN"})`, run.step));
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // failure handling

  /** Fails the running collective (if any), marks the communicator broken and tells both neighbours. */
  private fail(err: CollectiveError): void {
    if (this.broken !== null) return;
    this.broken = err;
    const run = this.run;
    this.run = null;
    if (run !== null) {
      if (run.timer !== null) clearTimeout(run.timer);
      this.onEvent?.({ kind: "end", at: traceNow(), collective: run.id, ok: false, error: err.message });
      run.done.reject(err);
    }
    this.failed.reject(err);
    this.forwards.clear();
    this.initial.clear();
    this.early = [];
    if (this.closing || this.worldSize === 1 || this.addresses.length === 0) {
      this.transport.teardown(err.message);
      return;
    }
    const notice: AbortNotice = {
      senderRank: this.rank, collectiveId: run?.id ?? Math.max(0, this.nextId - 1), step: run?.step ?? err.step,
      culpritRank: err.rank, culpritAddress: err.address, phase: String(err.phase), reason: err.message,
    };
    this.aborting = this.transport.abort(notice);
  }

  /** Maps a transport fault about a neighbour to the error naming that neighbour's rank. */
  private faultError(f: TransportFault, phase: CollectivePhase | string): CollectiveError {
    return this.err(f.side === "left" ? this.left : this.right, phase, f.kind, f.detail);
  }

  private onInboundEnd(f: TransportFault | null): void {
    if (this.closing || this.broken !== null) return;
    if (f === null && (this.run === null || this.phaseOf(this.run) === "finish")) {
      // the left neighbour closed cleanly after everything we need from it arrived: not an error unless we
      // try another collective (which may still complete from messages it sent before closing)
      const gone = this.err(this.left, "idle", "closed", "closed its stream to us (its communicator was closed)");
      if (this.early.length > 0) this.leftEnded = gone;
      else this.peerGone = gone;
      return;
    }
    const phase = this.run ? this.phaseOf(this.run) : this.connected ? "idle" : "connect";
    this.fail(f === null
      ? this.err(this.left, phase, "peer-lost", "closed its stream to us", this.run?.step ?? -1)
      : this.err(this.left, phase, f.kind, f.detail, this.run?.step ?? -1));
  }

  private onOutboundLost(what: string): void {
    if (this.closing || this.broken !== null) return;
    if (this.run === null) {
      // the right neighbour went away between collectives (usually: it closed); only an error if we go on
      this.peerGone ??= this.err(this.right, "idle", "peer-lost", `our stream to it ${what}`);
      return;
    }
    this.fail(this.err(this.right, this.phaseOf(this.run), "peer-lost", `our stream to it ${what}`, this.run.step));
  }

  private onAbortNotice(q: AbortNotice): void {
    if (this.closing || this.broken !== null) return;
    const phase = q.phase || (this.run ? this.phaseOf(this.run) : "idle");
    this.fail(new CollectiveError({
      rank: q.culpritRank, address: q.culpritAddress, phase, step: this.run?.step ?? q.step, reportedBy: this.rank, kind: "aborted",
    }, `neighbour rank ${q.senderRank} (${this.addresses[q.senderRank] ?? "?"}) left the collective: ${q.reason}`));
  }

  // ---------------------------------------------------------------------------------------------------------

  private err(rank: number, phase: CollectivePhase | string, kind: string, detail: string, step = this.run?.step ?? -1): CollectiveError {
    return new CollectiveError({ rank, address: this.addresses[rank] ?? (rank === this.rank ? this.address : ""), phase, step, reportedBy: this.rank, kind }, detail);
  }

  private usage(phase: CollectivePhase, detail: string): CollectiveError {
    return new CollectiveError({ rank: this.rank, address: this.address, phase, step: -1, reportedBy: this.rank, kind: "usage" }, detail);
  }
}

function validateOptions(o: RingOptions): void {
  const bad = (field: string, why: string): never => {
    throw new Error(`RingOptions.${field} ${why}`);
  };
  if (o === null || typeof o !== "object") bad("", "must be an object");
  if (typeof o.jobId !== "string" || o.jobId.length === 0 || Buffer.byteLength(o.jobId) > 256) bad("jobId", "must be a non-empty string of at most 256 bytes");
  if (typeof o.token !== "string" || o.token.length === 0) bad("token", "must be a non-empty string");
  if (!Number.isInteger(o.worldSize) || o.worldSize < 1) bad("worldSize", `must be an integer >= 1, got ${o.worldSize}`);
  if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) bad("rank", `must be an integer in [0, ${o.worldSize - 1}], got ${o.rank}`);
  if (!Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0) bad("timeoutMs", `must be a positive number, got ${o.timeoutMs}`);
  if (o.host !== undefined && (typeof o.host !== "string" || o.host.length === 0)) bad("host", "must be a non-empty string");
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535)) bad("port", `must be an integer in [0, 65535], got ${o.port}`);
  const cb = o.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(cb) || cb < 16 || cb % 4 !== 0 || cb > 64 * 1024 * 1024) bad("chunkBytes", `must be a multiple of 4 in [16, 64 MiB], got ${cb}`);
  const bb = o.bucketBytes ?? DEFAULT_BUCKET_BYTES;
  if (!Number.isInteger(bb) || bb < 4) bad("bucketBytes", `must be an integer >= 4, got ${bb}`);
  if (o.compression !== undefined && !["none", "fp16", "bf16"].includes(o.compression)) bad("compression", `must be "none", "fp16" or "bf16", got ${JSON.stringify(o.compression)}`);
  if (o.maxInflightBytes !== undefined && (!Number.isInteger(o.maxInflightBytes) || o.maxInflightBytes < 1)) bad("maxInflightBytes", "must be a positive integer");
  if (o.transport !== undefined && !RING_TRANSPORT_KINDS.includes(o.transport)) bad("transport", `must be one of ${RING_TRANSPORT_KINDS.map((k) => `"${k}"`).join(", ")}, got ${JSON.stringify(o.transport)}`);
  if ((o.transport === "http2" || o.transport === "http2-raw") && o.tls !== undefined) bad("transport", `"${o.transport}" does not support tls; use "http2-socket" (the default) or "grpc"`);
}
