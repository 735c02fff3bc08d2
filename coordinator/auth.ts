import * as crypto from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { TOKEN_METADATA_KEY } from "../proto/coordinator";

/** Constant-time check of the job token carried in call metadata; returns an error to send back, or null. */
export function checkToken(metadata: grpc.Metadata, expected: string): grpc.ServiceError | null {
  const values = metadata.get(TOKEN_METADATA_KEY);
  const given = values.length === 1 ? String(values[0]) : "";
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  if (a.length === b.length && crypto.timingSafeEqual(a, b)) return null;
  return rpcError(grpc.status.PERMISSION_DENIED, values.length === 0 ? "missing job token" : "wrong job token");
}

/** A gRPC error with a status code and message. */
export function rpcError(code: grpc.status, message: string): grpc.ServiceError {
  return Object.assign(new Error(message), { code, details: message, metadata: new grpc.Metadata() });
}
