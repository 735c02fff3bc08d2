import type { GradientReducer, NamedGradient } from "../../shared/train/reducer";
import type { RingCommunicator } from "../collective/ring-communicator";

/** Name under which the trainer's counters (target counts, loss sums) travel with the gradients. */
export const COUNTERS_TENSOR = "ringtrain.counters";

/**
 * Framework glue: the trainer's GradientReducer on top of the ring. Gradients and the counters are summed in
 * one collective (the counters ride in the last bucket), so the global target count that normalises the
 * update costs no extra round trip.
 */
export class RingReducer implements GradientReducer {
  /** Bytes of float32 data all-reduced by the last call (before wire compression). */
  lastBytes = 0;
  /** Wall time of the last all-reduce, milliseconds. */
  lastMs = 0;

  constructor(private readonly ring: RingCommunicator) {}

  /** Sums gradients and counters across all ranks, in place. */
  async reduce(grads: NamedGradient[], counters: Float32Array, step: number): Promise<void> {
    const tensors = [...grads, { name: COUNTERS_TENSOR, data: counters }];
    this.lastBytes = tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const t0 = performance.now();
    await this.ring.allReduce(tensors, { step, op: "sum" });
    this.lastMs = performance.now() - t0;
  }
}
