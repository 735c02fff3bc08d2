/**
 * A ring all-reduce group member whose communicator runs in its own thread (node:worker_threads).
 *
 * tfjs computes synchronously on the main thread: while a backward pass runs, the main event loop cannot read
 * sockets, so a ring living there makes no progress until the step's compute is over. Here the ring (peer sockets,
 * summing, forwarding) lives in a collective thread and works on the caller's tensors in shared memory: with
 * startAllReduce() a bucket starts travelling while the main thread is still computing the other gradients.
 *
 * Tensors must be views of SharedArrayBuffers for startAllReduce (use sharedFloat32); allReduce also accepts
 * ordinary arrays and copies them through shared staging memory.
 */
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { TlsFiles } from "../../shared/security/tls";
import { CollectiveError } from "./collective-error";
import type { AllReduceOptions, NamedTensor, PendingAllReduce, RingOptions } from "./ring-communicator";
import type { RingThreadData, RingThreadReply, RingThreadRequest, SerializedError } from "./ring-thread-protocol";

/** What the worker needs from a ring, in its main thread or in a collective thread. */
export interface Collective {
  /** "host:port" this rank's peer server listens on. */
  readonly address: string;
  readonly rank: number;
  readonly worldSize: number;
  connect(addresses: string[]): Promise<void>;
  allReduce(tensors: NamedTensor[], opts: AllReduceOptions): Promise<void>;
  startAllReduce(tensors: NamedTensor[], opts: AllReduceOptions): PendingAllReduce;
  close(): Promise<void>;
}

/** A zeroed Float32Array of `length` elements on a SharedArrayBuffer (readable and writable from the collective thread). */
export function sharedFloat32(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(4 * length));
}

function isShared(a: Float32Array): boolean {
  return a.buffer instanceof SharedArrayBuffer;
}

/** Rebuilds an error sent by the collective thread, keeping a CollectiveError's fields and exact message. */
function revive(e: SerializedError): Error {
  if (e.info !== undefined) {
    const err = new CollectiveError(e.info, e.detail ?? "");
    err.message = e.message;
    return err;
  }
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

/** The ring of RingCommunicator, driven from a collective thread. */
export class ThreadedRing implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve(): void; reject(e: Error): void }>();
  private dead: Error | null = null;
  private closed = false;

  private constructor(private readonly thread: Worker, readonly address: string, opts: RingOptions) {
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    const onEvent = opts.onEvent;
    thread.on("message", (m: RingThreadReply) => {
      if (m.kind === "event") onEvent?.(m.event);
      if (m.kind !== "settled") return;
      const w = this.waiting.get(m.id);
      if (w === undefined) return;
      this.waiting.delete(m.id);
      if (m.error === undefined) w.resolve();
      else w.reject(revive(m.error));
    });
    const lost = (why: string): void => {
      this.dead ??= new CollectiveError({ rank: this.rank, address: this.address, phase: "idle", step: -1, reportedBy: this.rank, kind: "internal" }, why);
      for (const w of this.waiting.values()) w.reject(this.dead);
      this.waiting.clear();
    };
    thread.on("error", (e: Error) => lost(`collective thread failed: ${e.message}`));
    thread.on("exit", (code) => {
      if (!this.closed) lost(`collective thread exited (code ${code})`);
    });
  }

  /**
   * Starts the collective thread, which validates `opts` and binds the peer server. TLS is given as file paths
   * (`tlsFiles`), loaded in the thread; `opts.tls` must be unset. `opts.onEvent` receives the thread's trace
   * events here, asynchronously (their timestamps are taken in the thread).
   */
  static async listen(opts: RingOptions, tlsFiles?: TlsFiles): Promise<ThreadedRing> {
    if (opts.tls !== undefined) throw new Error("ThreadedRing.listen: pass TLS as tlsFiles (credentials cannot cross threads)");
    const { onEvent, tls: _tls, ...options } = opts;
    const data: RingThreadData = { options, tlsFiles, forwardEvents: onEvent !== undefined };
    const thread = new Worker(path.join(__dirname, "ring-thread-entry.js"), { workerData: data });
    let onMessage!: (m: RingThreadReply) => void;
    let onError!: (e: Error) => void;
    let onExit!: (code: number) => void;
    const first = await new Promise<RingThreadReply>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new Error(`collective thread exited (code ${code}) before listening`));
      thread.once("message", onMessage);
      thread.once("error", onError);
      thread.once("exit", onExit);
    }).finally(() => {
      thread.off("message", onMessage);
      thread.off("error", onError);
      thread.off("exit", onExit);
    });
    if (first.kind === "init-failed") {
      await thread.terminate();
      throw revive(first.error);
    }
    if (first.kind !== "listening") throw new Error(`collective thread: unexpected first message ${first.kind}`);
    return new ThreadedRing(thread, first.address, opts);
  }

  /** Connects the ring (see RingCommunicator.connect). */
  connect(addresses: string[]): Promise<void> {
    return this.request((id) => ({ kind: "connect", id, addresses }));
  }

  /** Sums or averages the tensors across ranks in place (see RingCommunicator.allReduce); any Float32Arrays. */
  async allReduce(tensors: NamedTensor[], opts: AllReduceOptions): Promise<void> {
    const staged = tensors.map((t) => {
      if (!(t?.data instanceof Float32Array) || isShared(t.data)) return t;
      const copy = sharedFloat32(t.data.length);
      copy.set(t.data);
      return { name: t.name, data: copy };
    });
    await this.request((id) => ({ kind: "start", id, tensors: staged, step: opts.step, op: opts.op, exact: opts.exact === true, gated: false }));
    staged.forEach((s, i) => {
      if (s !== tensors[i]) tensors[i].data.set(s.data);
    });
  }

  /**
   * Starts an all-reduce whose tensors become final one by one (see RingCommunicator.startAllReduce). Every
   * tensor must live in a SharedArrayBuffer (sharedFloat32); ready(i) is a message to the collective thread,
   * which starts a bucket once all its tensors are ready, even while this thread is busy.
   */
  startAllReduce(tensors: NamedTensor[], opts: AllReduceOptions): PendingAllReduce {
    tensors.forEach((t, i) => {
      if (!(t?.data instanceof Float32Array) || !isShared(t.data)) throw new Error(`startAllReduce: tensor ${i} ("${t?.name}") must be a Float32Array on a SharedArrayBuffer`);
    });
    let id = -1;
    const done = this.request((i) => {
      id = i;
      return { kind: "start", id: i, tensors, step: opts.step, op: opts.op, exact: opts.exact === true, gated: true };
    });
    const marked = new Uint8Array(tensors.length);
    return {
      done,
      ready: (index: number) => {
        if (!Number.isInteger(index) || index < 0 || index >= tensors.length) throw new Error(`ready(${index}): no tensor ${index} (${tensors.length} tensors)`);
        if (marked[index] !== 0) throw new Error(`ready(${index}) called twice`);
        marked[index] = 1;
        if (this.dead === null) this.thread.postMessage({ kind: "ready", id, index } satisfies RingThreadRequest);
      },
    };
  }

  /** Closes the ring gracefully (see RingCommunicator.close), then ends the thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.dead === null) await this.request((id) => ({ kind: "close", id }));
    } finally {
      this.closed = true;
      await this.thread.terminate();
    }
  }

  private request(make: (id: number) => RingThreadRequest): Promise<void> {
    if (this.dead !== null) return Promise.reject(this.dead);
    if (this.closed) return Promise.reject(new Error("ring is closed"));
    const id = this.nextId++;
    const p = new Promise<void>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    p.catch(() => undefined); // observed by whoever awaits
    this.thread.postMessage(make(id));
    return p;
  }
}
