/**
 * Shared description of what an all-reduce test child does, and the deterministic input data, so the test
 * can compute expected results independently of the child.
 */
import { Rng } from "../../shared/rng";

/** One all-reduce call a child makes. */
export interface CaseSpec {
  step: number;
  op: "sum" | "avg";
  tensors: { name: string; length: number }[];
  seed: number;
  /** "int": small multiples of 1/4 (sums exact in float32); "normal": N(0,1) samples. */
  values: "int" | "normal";
  /** Print "STARTED <step>" to stdout right before calling allReduce. */
  announce?: boolean;
  /** Before this case, print "GATE <step>" and wait for one more stdin line. */
  gate?: boolean;
  /** Instead of running this case, print "STALLED <step>" and idle forever. */
  stall?: boolean;
  /**
   * Overlap mode (startAllReduce): tensors start as NaN and each rank fills and marks them ready one by one, in
   * its own random order (seeded), sleeping up to maxDelayMs or busy-blocking its thread blockMs between tensors.
   */
  gated?: { seed: number; maxDelayMs: number; blockMs?: number };
}

/** Configuration of one child process. */
export interface ChildSpec {
  jobId: string;
  token: string;
  rank: number;
  worldSize: number;
  timeoutMs: number;
  chunkBytes?: number;
  bucketBytes?: number;
  compression?: "none" | "fp16" | "bf16";
  /** Peer transport (default: the communicator's default). */
  transport?: "grpc" | "http2" | "http2-raw" | "http2-socket";
  /** Run the communicator in its own thread (ThreadedRing) instead of the child's main thread. */
  threaded?: boolean;
  /** Mutual TLS PEM files (communication.tls); plaintext when absent. */
  tls?: { ca_file: string; cert_file: string; key_file: string };
  /** RingOptions.localSockets (Unix sockets between same-host neighbours; the communicator's default when absent). */
  localSockets?: boolean;
  cases: CaseSpec[];
  outFile: string;
}

/** Serialized error of a failed case. */
export interface ChildError {
  name: string;
  message: string;
  rank?: number;
  address?: string;
  phase?: string;
  step?: number;
  kind?: string;
  elapsedMs: number;
}

/** What a child writes to outFile. */
export interface ChildResult {
  rank: number;
  address: string;
  /** How the rank's inbound stream reached its left neighbour (RingCommunicator.inboundVia; absent when threaded). */
  via?: "unix" | "tcp" | null;
  /** On failure, `tensorsAfter` holds the tensors as the failed call left them (to check nothing was corrupted). */
  cases: ({ ok: true; tensors: string[] } | { ok: false; error: ChildError; tensorsAfter?: string[] })[];
}

/** Input tensor `t` of rank `rank` for a case (identical in the child and the test). */
export function inputTensor(c: CaseSpec, rank: number, t: number): Float32Array {
  const n = c.tensors[t].length;
  const out = new Float32Array(n);
  if (c.values === "int") {
    for (let i = 0; i < n; i++) out[i] = (((i * 7 + t * 13 + rank * 31 + c.seed) % 17) - 8) * 0.25;
  } else {
    const rng = new Rng(c.seed, rank, t);
    for (let i = 0; i < n; i++) out[i] = rng.normal();
  }
  return out;
}

/** Element-wise sum over ranks in float64, computed without the communicator. */
export function referenceSum(c: CaseSpec, worldSize: number, t: number): Float64Array {
  const out = new Float64Array(c.tensors[t].length);
  for (let r = 0; r < worldSize; r++) {
    const x = inputTensor(c, r, t);
    for (let i = 0; i < x.length; i++) out[i] += x[i];
  }
  return out;
}

/** Decodes a base64 result tensor. */
export function decodeTensor(b64: string): Float32Array {
  const buf = Buffer.from(b64, "base64");
  const copy = new Uint8Array(buf.length);
  copy.set(buf);
  return new Float32Array(copy.buffer);
}
