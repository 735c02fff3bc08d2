/**
 * Messages between a worker's main thread and its collective thread (ring-thread.ts, ring-thread-entry.ts).
 * Tensors cross as Float32Array views of SharedArrayBuffers, so both threads work on the same memory.
 */
import type { TlsFiles } from "../../shared/security/tls";
import type { RingOptions } from "./ring-communicator";
import type { CollectiveErrorInfo } from "./collective-error";
import type { CollectiveEvent } from "./collective-event";

/** What the collective thread starts with: the ring's options, with TLS as file paths (credentials cannot cross threads). */
export interface RingThreadData {
  options: Omit<RingOptions, "tls" | "onEvent">;
  tlsFiles?: TlsFiles;
  /** Send the communicator's trace events (RingOptions.onEvent) to the main thread. */
  forwardEvents: boolean;
}

/** Main thread -> collective thread. */
export type RingThreadRequest =
  | { kind: "connect"; id: number; addresses: string[] }
  | { kind: "start"; id: number; tensors: { name: string; data: Float32Array }[]; step: number; op: "sum" | "avg"; exact: boolean; gated: boolean }
  | { kind: "ready"; id: number; index: number }
  | { kind: "close"; id: number };

/** A failure as plain data; `info` is set for a CollectiveError. */
export interface SerializedError {
  name: string;
  message: string;
  info?: CollectiveErrorInfo;
  /** CollectiveError.detail, with `info`. */
  detail?: string;
}

/** Collective thread -> main thread. */
export type RingThreadReply =
  | { kind: "listening"; address: string }
  | { kind: "init-failed"; error: SerializedError }
  | { kind: "settled"; id: number; error?: SerializedError }
  | { kind: "event"; event: CollectiveEvent };
