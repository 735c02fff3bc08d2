/**
 * Observation points of a ring collective, for tracing (the per-rank timeline, worker/timeline.ts).
 *
 * The communicator calls `RingOptions.onEvent` with one of these plain, serialisable objects at the boundaries
 * that matter: the collective starts, a bucket's reduce-scatter sends are queued, the left neighbour's BEGIN
 * arrives, a data chunk of a bucket arrives (reduce-scatter or all-gather), the collective ends or fails.
 * Times are absolute (`traceNow()`: milliseconds since the Unix epoch with sub-millisecond resolution), so
 * events recorded in another thread or process line up with the main thread's without conversion.
 */

/** Phase of a data chunk as seen by the observer. */
export type ChunkPhase = "reduce-scatter" | "all-gather";

/** One observation of a collective. `collective` is the communicator's collective id, `at` is `traceNow()`. */
export type CollectiveEvent =
  | { kind: "start"; at: number; collective: number; step: number; /** Elements (float32) per bucket. */ buckets: number[] }
  | { kind: "bucket-start"; at: number; collective: number; bucket: number }
  | { kind: "begin"; at: number; collective: number }
  | { kind: "chunk"; at: number; collective: number; bucket: number; phase: ChunkPhase; /** Wire bytes of the payload. */ bytes: number }
  | { kind: "end"; at: number; collective: number; ok: boolean; /** Failure message when !ok. */ error?: string };

/** Receives collective events; called synchronously on the communicator's thread, so it must be cheap. */
export type CollectiveObserver = (e: CollectiveEvent) => void;

/** Absolute time in milliseconds since the Unix epoch, sub-millisecond, monotonic within one thread. */
export function traceNow(): number {
  return performance.timeOrigin + performance.now();
}
