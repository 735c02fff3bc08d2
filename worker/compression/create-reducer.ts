/** Builds the worker's GradientReducer from the communication config: the plain ring, or compression over it. */
import type { GradientReducer } from "../../shared/train/reducer";
import { RingReducer } from "../tfjs/ring-reducer";
import { CompressingReducer, DEFAULT_GRADIENT_COMPRESSION, type AllReduceGroup, type GradientCompressionSettings } from "./compressing-reducer";

/** A reducer that reports what its last reduce() cost (the worker puts these in its step report). */
export interface MeasuredReducer extends GradientReducer {
  /** Bytes of float32 data all-reduced by the last reduce() (before wire compression). */
  readonly lastBytes: number;
  /** Wall time of the last reduce() not hidden behind computation, milliseconds. */
  readonly lastMs: number;
  /** Wall time of the last reduce() from its start to the result, milliseconds. */
  readonly lastTotalMs: number;
  /** performance.now() when the last result was in, if known (overlap: may be before the update began waiting). */
  readonly lastDoneAt?: number;
}

/** The ring the worker built (in-thread RingCommunicator or the threaded ring): what RingReducer wraps. */
export type WorkerRing = ConstructorParameters<typeof RingReducer>[0] & AllReduceGroup;

/**
 * The reducer for `communication` settings: RingReducer when gradient_compression.method is none (or absent),
 * else a CompressingReducer (top-k or PowerSGD with error feedback) over the same ring. The compressing reducer
 * does not overlap with the backward pass (it needs the whole gradient to select or factorise).
 */
export function createReducer(comm: { gradient_compression?: GradientCompressionSettings; compression?: "none" | "fp16" | "bf16" }, ring: WorkerRing): MeasuredReducer {
  const settings = comm.gradient_compression ?? DEFAULT_GRADIENT_COMPRESSION;
  const halfOnWire = comm.compression !== undefined && comm.compression !== "none";
  if (settings.method === "none") return new RingReducer(ring, halfOnWire);
  return new CompressingReducer(ring, settings, halfOnWire);
}
