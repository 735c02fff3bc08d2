/**
 * HTTP/2 frame constants and builders (RFC 9113) for the raw-socket client of raw-pull-client.ts.
 * Only what a client that opens one stream needs: the connection preface, SETTINGS (and their ACK), PING ACK,
 * WINDOW_UPDATE, HEADERS, DATA, RST_STREAM and GOAWAY.
 */

/** The client connection preface (RFC 9113 section 3.4). */
export const CLIENT_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** Size of a frame header. */
export const FRAME_HEADER_BYTES = 9;
/** Flow-control window every stream and the connection start with. */
export const DEFAULT_WINDOW = 65535;
/** Largest frame payload a peer may send before our SETTINGS_MAX_FRAME_SIZE is known. */
export const DEFAULT_MAX_FRAME = 16384;

/** Frame types (RFC 9113 section 6). */
export enum FrameType {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}

/** Frame flags (meaning depends on the frame type). */
export enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}

/** SETTINGS identifiers (RFC 9113 section 6.5.2). */
export enum Setting {
  HEADER_TABLE_SIZE = 0x1,
  ENABLE_PUSH = 0x2,
  MAX_CONCURRENT_STREAMS = 0x3,
  INITIAL_WINDOW_SIZE = 0x4,
  MAX_FRAME_SIZE = 0x5,
  MAX_HEADER_LIST_SIZE = 0x6,
}

/** Error codes (RFC 9113 section 7). */
export enum H2Error {
  NO_ERROR = 0x0,
  PROTOCOL_ERROR = 0x1,
  INTERNAL_ERROR = 0x2,
  FLOW_CONTROL_ERROR = 0x3,
  FRAME_SIZE_ERROR = 0x6,
  CANCEL = 0x8,
  COMPRESSION_ERROR = 0x9,
}

const ERROR_NAMES = [
  "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",
  "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
];

/** The RFC name of an HTTP/2 error code, e.g. "CANCEL (8)". */
export function h2ErrorName(code: number): string {
  return `${ERROR_NAMES[code] ?? "UNKNOWN"} (${code})`;
}

/** Builds one frame: 9-byte header followed by `payload`. */
export function frame(type: FrameType, flags: number, streamId: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const f = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(streamId & 0x7fffffff, 5);
  f.set(payload, FRAME_HEADER_BYTES);
  return f;
}

/** A SETTINGS frame carrying `values` (identifier, value) pairs. */
export function settingsFrame(values: readonly (readonly [Setting, number])[]): Buffer {
  const p = Buffer.allocUnsafe(6 * values.length);
  values.forEach(([id, v], i) => {
    p.writeUInt16BE(id, 6 * i);
    p.writeUInt32BE(v, 6 * i + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

/** A WINDOW_UPDATE granting `increment` (1 .. 2^31-1) bytes on `streamId` (0 = connection). */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(increment & 0x7fffffff, 0);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, p);
}

/** RST_STREAM with `code`. */
export function rstStreamFrame(streamId: number, code: number): Buffer {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(code, 0);
  return frame(FrameType.RST_STREAM, 0, streamId, p);
}

/** GOAWAY naming the last stream this side processed and `code`. */
export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const p = Buffer.allocUnsafe(8);
  p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  p.writeUInt32BE(code, 4);
  return frame(FrameType.GOAWAY, 0, 0, p);
}
