import type { NamedGradient, OverlappingReducer, PendingReduction } from "../../shared/train/reducer";
import type { Collective } from "../collective/ring-thread";

/** Name under which the trainer's counters (target counts, loss sums) travel with the gradients. */
export const COUNTERS_TENSOR = "ringtrain.counters";
/** Name under which a step's target counts travel when summed before its backward pass (sumCounts). */
export const STEP_COUNTS_TENSOR = "ringtrain.step_counts";

/**
 * Framework glue: the trainer's GradientReducer on top of the ring. Gradients and the counters are summed in
 * one collective (the counters ride in the last bucket), so the global target count that normalises the
 * update costs no extra round trip; except over fp16/bf16 wire compression, which would round them: there they
 * follow in a float32 collective of their own.
 *
 * Overlapped (begin): the gradients travel in reverse parameter order, i.e. roughly the order in which the
 * backward pass finishes them (last layer first), so the first buckets fill while the lower layers are still
 * being differentiated; the embeddings and the counters come last.
 */
export class RingReducer implements OverlappingReducer {
  /** Bytes of float32 data all-reduced by the last call (before wire compression). */
  lastBytes = 0;
  /**
   * Wall time of the last all-reduce, milliseconds; when overlapped, only what was not hidden behind the
   * backward pass (exposed communication: from the end of the backward pass until the result was in).
   */
  lastMs = 0;
  /** Wall time from the start of the all-reduce (begin() when overlapped) until the result was in, milliseconds. */
  lastTotalMs = 0;
  /** performance.now() when the last all-reduce's result was in (this thread learnt of it). */
  lastDoneAt = 0;

  /**
   * `halfOnWire`: the ring's wire compression is fp16/bf16, which would round the counters (counts above 2048 in
   * fp16, 256 in bf16; loss sums to 3 significant digits): they then travel in a float32 collective of their own,
   * after the gradients'.
   */
  constructor(private readonly ring: Collective, private readonly halfOnWire = false) {}

  /** Starts the all-reduce of this step before the gradients exist; see PendingReduction. */
  begin(grads: NamedGradient[], counters: Float32Array, step: number): PendingReduction {
    const P = grads.length;
    const tensors = [...grads].reverse();
    if (!this.halfOnWire) tensors.push({ name: COUNTERS_TENSOR, data: counters });
    this.lastBytes = tensors.reduce((a, t) => a + t.data.byteLength, 0) + (this.halfOnWire ? counters.byteLength : 0);
    const t0 = performance.now();
    let computeDone = t0;
    const pending = this.ring.startAllReduce(tensors, { step, op: "sum" });
    // Over half-precision wire compression the counters follow in a float32 collective once they are final too.
    let countersFinal = (): void => undefined;
    const reduced = this.halfOnWire
      ? Promise.all([pending.done, new Promise<void>((resolve) => (countersFinal = resolve))])
        .then(() => this.ring.allReduce([{ name: COUNTERS_TENSOR, data: counters }], { step, op: "sum", exact: true }))
      : pending.done;
    const done = reduced.then(() => {
      const t1 = performance.now();
      this.lastDoneAt = t1;
      this.lastTotalMs = t1 - t0;
      this.lastMs = Math.max(0, t1 - computeDone); // what the backward pass did not hide
    });
    done.catch(() => undefined); // a failure is reported to whoever awaits done (the trainer), never as unhandled
    return {
      gradientReady: (i) => pending.ready(P - 1 - i),
      countersReady: () => {
        computeDone = performance.now(); // the counters are final last, when the micro-batch's backward pass is over
        if (this.halfOnWire) countersFinal();
        else pending.ready(P);
      },
      done,
    };
  }

  /**
   * Sums a step's target counts across all ranks, in place, in a collective of their own: objectives with an NSP
   * term (mlm+nsp) weigh it by the global counts before the step's first backward pass. Not counted in lastMs or
   * lastBytes, which describe the gradient reduction; the worker loop times this call itself.
   */
  async sumCounts(values: Float32Array, step: number): Promise<void> {
    await this.ring.allReduce([{ name: STEP_COUNTS_TENSOR, data: values }], { step, op: "sum", exact: true });
  }

  /** Sums gradients and counters across all ranks, in place. */
  async reduce(grads: NamedGradient[], counters: Float32Array, step: number): Promise<void> {
    const countersTensor = { name: COUNTERS_TENSOR, data: counters };
    const tensors = this.halfOnWire ? grads : [...grads, countersTensor];
    this.lastBytes = tensors.reduce((a, t) => a + t.data.byteLength, 0) + (this.halfOnWire ? counters.byteLength : 0);
    const t0 = performance.now();
    await this.ring.allReduce(tensors, { step, op: "sum" });
    if (this.halfOnWire) await this.ring.allReduce([countersTensor], { step, op: "sum", exact: true });
    this.lastDoneAt = performance.now();
    this.lastMs = this.lastDoneAt - t0;
    this.lastTotalMs = this.lastMs;
  }
}
