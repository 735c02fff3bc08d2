/**
 * grpc-js definition of the `ringtrain.peer.Peer` service (proto/peer.proto).
 *
 * PullRequest / AbortRequest / AbortReply are encoded with protobufjs loaded from the .proto at run time;
 * Chunk uses the copy-avoiding codec in chunk-wire.ts. Also holds the auth metadata helpers and the grpc-js
 * channel options tuned for bulk transfer.
 */
import * as crypto from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import * as protobuf from "protobufjs";
import { protoPath } from "../../shared/paths";
import { decodeChunk, type DecodedChunk, type MalformedChunk, type WireChunk } from "./chunk-wire";

/** A protobuf message as one gRPC length-prefixed frame (flag byte 0 = uncompressed, 4-byte big-endian length). */
export function grpcFrame(message: Buffer): Buffer {
  const f = Buffer.allocUnsafe(5 + message.length);
  f[0] = 0;
  f.writeUInt32BE(message.length, 1);
  message.copy(f, 5);
  return f;
}

/** The name of a gRPC status code (e.g. UNAVAILABLE), or the number when unknown. */
export function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}

/** Metadata key carrying the job's shared token on every peer call. */
export const TOKEN_KEY = "x-ringtrain-token";
/** Response metadata key with the server's proof that it knows the token. */
export const PROOF_KEY = "x-ringtrain-proof";

/** Decoded PullRequest. */
export interface PullRequest {
  jobId: string;
  receiverRank: number;
  senderRank: number;
  worldSize: number;
}

/** Decoded AbortRequest. */
export interface AbortRequest {
  jobId: string;
  senderRank: number;
  collectiveId: number;
  step: number;
  culpritRank: number;
  culpritAddress: string;
  phase: string;
  reason: string;
}

let root: protobuf.Root | null = null;
function types(): { pull: protobuf.Type; abort: protobuf.Type; reply: protobuf.Type; chunk: protobuf.Type } {
  root ??= protobuf.loadSync(protoPath("peer.proto"));
  return {
    pull: root.lookupType("ringtrain.peer.PullRequest"),
    abort: root.lookupType("ringtrain.peer.AbortRequest"),
    reply: root.lookupType("ringtrain.peer.AbortReply"),
    chunk: root.lookupType("ringtrain.peer.Chunk"),
  };
}

/** The protobufjs Chunk type from peer.proto (for tests that cross-check the hand-written codec). */
export function chunkProtoType(): protobuf.Type {
  return types().chunk;
}

function toNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "string") return Number(v);
  if (v !== null && typeof v === "object" && "toNumber" in v && typeof (v as { toNumber: unknown }).toNumber === "function") {
    return (v as { toNumber(): number }).toNumber();
  }
  return 0;
}

/** Encodes a PullRequest (protobufjs, from peer.proto). */
export function encodePull(m: PullRequest): Buffer {
  const t = types().pull;
  return Buffer.from(t.encode(t.fromObject(m)).finish());
}
/** Decodes a PullRequest; throws on malformed input. */
export function decodePull(b: Buffer): PullRequest {
  const o = types().pull.toObject(types().pull.decode(b), { defaults: true, longs: Number }) as Record<string, unknown>;
  return { jobId: String(o.jobId), receiverRank: toNumber(o.receiverRank), senderRank: toNumber(o.senderRank), worldSize: toNumber(o.worldSize) };
}
/** Encodes an AbortRequest (protobufjs, from peer.proto). */
export function encodeAbort(m: AbortRequest): Buffer {
  const t = types().abort;
  return Buffer.from(t.encode(t.fromObject(m)).finish());
}
/** Decodes an AbortRequest; throws on malformed input. */
export function decodeAbort(b: Buffer): AbortRequest {
  const o = types().abort.toObject(types().abort.decode(b), { defaults: true, longs: Number }) as Record<string, unknown>;
  return {
    jobId: String(o.jobId), senderRank: toNumber(o.senderRank), collectiveId: toNumber(o.collectiveId), step: toNumber(o.step),
    culpritRank: toNumber(o.culpritRank), culpritAddress: String(o.culpritAddress), phase: String(o.phase), reason: String(o.reason),
  };
}

/** What the chunk serializer accepts: a WireChunk, framed zero-copy unless `zeroCopy` is false. */
export interface OutgoingChunk {
  wire: WireChunk;
  zeroCopy: boolean;
}

function serializeChunk(m: OutgoingChunk): Buffer {
  // grpc-js only reads byteLength/length and calls copy(target, 5) on what the serializer returns
  // (see WireChunk); the fallback produces a real Buffer.
  return m.zeroCopy ? (m.wire as unknown as Buffer) : m.wire.toBuffer();
}

/** Paths and codecs of the Peer service. */
export const peerServiceDefinition = {
  Pull: {
    path: "/ringtrain.peer.Peer/Pull",
    requestStream: false,
    responseStream: true,
    requestSerialize: encodePull,
    requestDeserialize: decodePull,
    responseSerialize: serializeChunk,
    responseDeserialize: (b: Buffer): DecodedChunk | MalformedChunk => decodeChunk(b),
  },
  Abort: {
    path: "/ringtrain.peer.Peer/Abort",
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeAbort,
    requestDeserialize: decodeAbort,
    responseSerialize: (_: Record<string, never>): Buffer => Buffer.alloc(0),
    responseDeserialize: (_: Buffer): Record<string, never> => ({}),
  },
} satisfies grpc.ServiceDefinition;

/** HMAC proof that a server knows the token: hex HMAC-SHA256(token, "<jobId>:<senderRank>"). */
export function tokenProof(token: string, jobId: string, senderRank: number): string {
  return crypto.createHmac("sha256", token).update(`${jobId}:${senderRank}`).digest("hex");
}

/** Constant-time comparison of the token found in call metadata with the expected one. */
export function tokenMatches(md: grpc.Metadata, token: string): boolean {
  const got = md.get(TOKEN_KEY);
  if (got.length !== 1) return false;
  return tokenValueMatches(got[0], token);
}

/** Constant-time comparison of one raw header value (e.g. from node:http2, possibly absent or repeated) with the token. */
export function tokenValueMatches(got: unknown, token: string): boolean {
  if (typeof got !== "string") return false;
  const a = crypto.createHash("sha256").update(got).digest();
  const b = crypto.createHash("sha256").update(token).digest();
  return crypto.timingSafeEqual(a, b);
}

/** Metadata carrying the token. */
export function tokenMetadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(TOKEN_KEY, token);
  return md;
}

/** Channel options for the receiving (client) side of the bulk stream. */
export function clientChannelOptions(chunkBytes: number): grpc.ChannelOptions {
  return {
    // chunk + header; larger frames are rejected by grpc-js before we see them
    "grpc.max_receive_message_length": chunkBytes + 4096,
    // the only window grpc-js lets us raise: server->client, i.e. the Pull direction
    "grpc-node.flow_control_window": Math.max(8 * 1024 * 1024, 4 * chunkBytes),
    // one TCP connection per neighbour pair, not shared with other channels of the process
    "grpc.use_local_subchannel_pool": 1,
  };
}

/** Server options: only small requests ever arrive at the server. */
export function serverOptions(): grpc.ServerOptions {
  return { "grpc.max_receive_message_length": 64 * 1024 };
}
