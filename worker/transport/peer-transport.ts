/**
 * The seam between the collective ("what to reduce and when") and the transport ("how bytes move").
 *
 * A PeerTransport connects one rank to its two ring neighbours: it receives every Chunk from the left
 * neighbour and sends Chunks to the right one, in order, and it carries best-effort Abort notices both ways.
 * Authentication, wire encoding (including 16-bit payload encoding, chosen by the header's dtype), stream and
 * connection handling and connect deadlines are the transport's; the collective never sees gRPC. Two
 * implementations: `GrpcPeerTransport` (grpc-peer-transport.ts, on grpc-js) and `Http2PeerTransport`
 * (http2-peer-transport.ts, the same gRPC wire protocol spoken directly on node:http2, which streams payloads
 * into place through `onChunkHeader`); another transport only has to implement this interface.
 */
import type { ChunkHeader, DecodedChunk, MalformedChunk } from "./chunk-wire";

/**
 * What the collective wants done with an inbound Chunk whose header (everything but the payload) has arrived.
 * - "into": the header was validated; write the payload into `target` (float32 elements; a 16-bit payload is
 *   decoded), adding to what is there when `add`, else overwriting; call `done()` once all of it is in place.
 * - "whole": deliver the complete message through onChunk instead (e.g. it belongs to a later collective).
 * - "skip": discard the payload (the message needed none, or the collective failed).
 */
export type InboundPlan =
  | { kind: "into"; target: Float32Array; add: boolean; done(): void }
  | { kind: "whole" }
  | { kind: "skip" };

/** Which neighbour a transport problem concerns. */
export type PeerSide = "left" | "right";

/** A transport-level failure, reported without knowledge of collectives; the collective adds rank and phase. */
export interface TransportFault {
  side: PeerSide;
  /** Short machine-readable kind: timeout, peer-lost, auth, aborted, closed. */
  kind: string;
  detail: string;
}

/** Type guard for TransportFault values (connect() rejects with one). */
export function isTransportFault(e: unknown): e is TransportFault {
  return e !== null && typeof e === "object" && "side" in e && "kind" in e && "detail" in e && !(e instanceof Error);
}

/** Why a neighbour left a collective (the AbortRequest of peer.proto, minus transport fields). */
export interface AbortNotice {
  senderRank: number;
  collectiveId: number;
  step: number;
  culpritRank: number;
  culpritAddress: string;
  phase: string;
  reason: string;
}

/** Callbacks the collective gives its transport. All are called from the event loop, never re-entrantly. */
export interface TransportEvents {
  /** A message from the left neighbour (or a frame that did not decode), in arrival order. */
  onChunk(m: DecodedChunk | MalformedChunk): void;
  /**
   * Optional streaming path: a transport that parses messages itself may hand over only the header of a
   * message whose payload is its last field (`payloadBytes` long, not yet read), and then act on the plan.
   * Messages take one path or the other, in arrival order.
   */
  onChunkHeader?(header: ChunkHeader, payloadBytes: number): InboundPlan;
  /** The right neighbour's receiving stream is open: send() may now be used. */
  onOutboundReady(): void;
  /** The inbound stream ended: `fault` null = clean end by the left neighbour. */
  onInboundEnd(fault: TransportFault | null): void;
  /** The outbound stream was cancelled or failed (`what` says how). */
  onOutboundLost(what: string): void;
  /** An authenticated Abort notice from a neighbour. */
  onAbort(notice: AbortNotice): void;
}

/** One rank's connection to its ring neighbours. */
export interface PeerTransport {
  /** "host:port" this rank listens on. */
  readonly address: string;
  /** Registers the collective's callbacks (once, before connect). */
  attach(events: TransportEvents): void;
  /**
   * Opens the inbound stream from addresses[left] and waits until the right neighbour has opened its stream
   * to us. Rejects with a TransportFault on timeout or authentication failure.
   */
  connect(addresses: readonly string[], timeoutMs: number): Promise<void>;
  /** True while the outbound stream is open and not failed. */
  readonly canSend: boolean;
  /** How the inbound stream reached the left neighbour, once connected ("unix": a same-host Unix socket); optional. */
  readonly inboundVia?: "unix" | "tcp" | null;
  /**
   * Sends one Chunk to the right neighbour. The payload (float32 elements, encoded as the header's dtype) is
   * read when the transport frames it, possibly after send() returns; `onWritten` runs once the transport no
   * longer reads it. Returns the encoded size in bytes.
   */
  send(header: ChunkHeader, payload: Float32Array | null, onWritten: () => void): number;
  /** Stops delivering inbound chunks until resumeInbound() (flow control back to the sender). */
  pauseInbound(): void;
  /** Resumes inbound delivery. */
  resumeInbound(): void;
  /** Drops both streams at once, without notice (used when there is nobody to tell). */
  teardown(reason: string): void;
  /** Tells both neighbours why this rank left (bounded wait), then tears both streams down. */
  abort(notice: AbortNotice): Promise<void>;
  /** Graceful close: ends the outbound stream, waits at most graceMs for the inbound one to end, shuts down. */
  close(graceMs: number): Promise<void>;
}
