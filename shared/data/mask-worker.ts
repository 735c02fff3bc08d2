import Piscina from "piscina";
import { buildBatch, type Objective } from "./objective";

/** A task for the batch worker: the objective (its arrays on SharedArrayBuffers, so not copied) and one step. */
export interface BatchTask {
  objective: Objective;
  epoch: number | Int32Array;
  indices: Int32Array;
}

/**
 * Piscina worker: builds one batch and hands its single backing buffer back by transfer (no copy). The
 * caller rebuilds the views with batchOnBuffer, knowing batch size, seqLen and whether NSP labels exist.
 */
export default function buildBatchTask(task: BatchTask): ReturnType<typeof Piscina.move> {
  const batch = buildBatch(task.objective, { epoch: task.epoch, indices: task.indices });
  // All views of a batch share one buffer (allocBatch); recover it as one Int32Array from the first view.
  const whole = new Int32Array(batch.inputIds.buffer, 0, batch.inputIds.buffer.byteLength / 4);
  return Piscina.move(whole);
}
