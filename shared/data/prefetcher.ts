import * as path from "node:path";
import Piscina from "piscina";
import { batchOnBuffer, type Batch } from "./batch";
import type { BatchTask } from "./mask-worker";
import type { NspCorpus } from "./nsp";
import { buildBatch, type Objective, type StepPlan } from "./objective";
import type { PackedSequences } from "./packed";

/** Options of the Prefetcher. */
export interface PrefetchOptions {
  /** Batches built ahead of the one being consumed. Default 2. */
  depth?: number;
  /** Worker threads; 0 builds batches on the calling thread (for debugging). Default 1. */
  threads?: number;
}

/**
 * Builds upcoming batches in piscina worker threads while the training step runs. The caller gives the
 * plan: one (epoch, indices) per step, in order (the coordinator decides the indices of each rank). Up to
 * `depth` steps are in flight; next() returns the batches in plan order. The data arrays are copied once onto
 * SharedArrayBuffers so tasks share them instead of copying them; each finished batch comes back by transfer.
 */
export class Prefetcher {
  private readonly objective: Objective;
  private readonly plan: Iterator<StepPlan>;
  private readonly depth: number;
  private readonly pool: Piscina<BatchTask, Int32Array> | undefined;
  private readonly queue: Promise<Batch>[] = [];
  private done = false;

  /** Starts building the first `depth` steps at once. */
  constructor(objective: Objective, plan: Iterable<StepPlan>, opts: PrefetchOptions = {}) {
    this.depth = Math.max(1, opts.depth ?? 2);
    const threads = opts.threads ?? 1;
    this.objective = threads > 0 ? shareObjective(objective) : objective;
    this.plan = plan[Symbol.iterator]();
    this.pool =
      threads > 0
        ? new Piscina<BatchTask, Int32Array>({
            filename: path.join(__dirname, "mask-worker.js"),
            minThreads: threads,
            maxThreads: threads,
          })
        : undefined;
    this.fill();
  }

  /** The next step's batch, or undefined when the plan is exhausted. */
  async next(): Promise<Batch | undefined> {
    const head = this.queue.shift();
    this.fill();
    return head;
  }

  /** Stops the worker threads; batches still in flight are dropped. */
  async close(): Promise<void> {
    this.done = true;
    // Swallow the rejections of abandoned tasks: nobody will await them.
    for (const p of this.queue.splice(0)) p.catch(() => undefined);
    await this.pool?.destroy();
  }

  /** Async iteration over the remaining batches. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    for (;;) {
      const b = await this.next();
      if (b === undefined) return;
      yield b;
    }
  }

  private fill(): void {
    while (!this.done && this.queue.length < this.depth) {
      const r = this.plan.next();
      if (r.done === true) {
        this.done = true;
        break;
      }
      const p = this.start(r.value);
      // Keep an early failure from surfacing as an unhandled rejection before next() awaits it.
      p.catch(() => undefined);
      this.queue.push(p);
    }
  }

  private async start(step: StepPlan): Promise<Batch> {
    const indices = Int32Array.from(step.indices);
    const epoch = typeof step.epoch === "number" ? step.epoch : Int32Array.from(step.epoch);
    if (this.pool === undefined) return buildBatch(this.objective, { epoch, indices });
    const buf = await this.pool.run({ objective: this.objective, epoch, indices });
    return batchOnBuffer(buf, indices.length, this.objective.data.seqLen, this.objective.kind === "nsp");
  }
}

function shared<T extends Int32Array | Uint8Array>(a: T): T {
  const out = (a instanceof Int32Array ? new Int32Array(new SharedArrayBuffer(a.byteLength)) : new Uint8Array(new SharedArrayBuffer(a.byteLength))) as T;
  out.set(a);
  return out;
}

function sharePacked(p: PackedSequences): PackedSequences {
  const out: PackedSequences = { seqLen: p.seqLen, count: p.count, tokens: shared(p.tokens), lengths: shared(p.lengths) };
  if (p.wordStarts !== undefined) out.wordStarts = shared(p.wordStarts);
  return out;
}

function shareNsp(c: NspCorpus): NspCorpus {
  return {
    ...c,
    tokens: shared(c.tokens),
    wordStarts: shared(c.wordStarts),
    segStart: shared(c.segStart),
    segDoc: shared(c.segDoc),
    anchors: shared(c.anchors),
  };
}

/** The objective with its data arrays copied onto SharedArrayBuffers (cloned to workers without copying). */
function shareObjective(o: Objective): Objective {
  switch (o.kind) {
    case "mlm":
      return { ...o, data: sharePacked(o.data) };
    case "causal":
      return { ...o, data: sharePacked(o.data) };
    case "nsp":
      return { ...o, data: shareNsp(o.data) };
  }
}
