/**
 * HTTP/2 settings for the bulk Pull connection that grpc-js has no channel option for.
 *
 * The receiver (the gRPC client of Pull) decides how large the DATA frames it receives may be
 * (SETTINGS_MAX_FRAME_SIZE, default 16 KiB). Node's HTTP/2 costs one JS callback and one Buffer per received
 * frame piece, so 16 KiB frames cap a stream at ~0.3–0.45 GB/s here; accepting 16 MiB frames lets the sender
 * write whole chunks in few frames. grpc-js 1.14 builds its client session with `http2.connect(url, options)`
 * and honours only `grpc-node.flow_control_window` for settings, so this module wraps `http2.connect` once
 * per process and merges extra settings into sessions whose authority ("host:port") was registered here.
 * Connections to other authorities are untouched. If a future grpc-js stops calling `http2.connect` through
 * the module object, only speed is affected, never correctness.
 */
import http2 = require("node:http2");

/** Largest SETTINGS_MAX_FRAME_SIZE HTTP/2 allows (2^24 - 1). */
export const MAX_HTTP2_FRAME_SIZE = 16 * 1024 * 1024 - 1;

interface Registration {
  settings: http2.Settings;
  refs: number;
}

const registry = new Map<string, Registration>();
let installed = false;

function authorityOf(a: unknown): string | null {
  if (typeof a === "string") {
    try {
      return new URL(a).host;
    } catch {
      return null;
    }
  }
  if (a instanceof URL) return a.host;
  return null;
}

function install(): void {
  if (installed) return;
  installed = true;
  const original = http2.connect;
  const wrapped = function connect(this: unknown, authority: string | URL, ...rest: unknown[]): http2.ClientHttp2Session {
    const reg = registry.get(authorityOf(authority) ?? "");
    if (reg !== undefined) {
      if (rest.length === 0 || typeof rest[0] === "function") rest.unshift({ settings: { ...reg.settings } });
      else if (rest[0] !== null && typeof rest[0] === "object") {
        const o = rest[0] as http2.ClientSessionOptions;
        rest[0] = { ...o, settings: { ...o.settings, ...reg.settings } };
      }
    }
    return (original as (...args: unknown[]) => http2.ClientHttp2Session).call(this, authority, ...rest);
  };
  (http2 as { connect: typeof http2.connect }).connect = wrapped as typeof http2.connect;
}

/**
 * Makes every HTTP/2 client session this process opens to `authority` ("host:port", as given to grpc-js)
 * advertise `settings` (merged over grpc-js's own). Returns a function that removes the registration
 * (registrations are counted, so two users of the same authority each remove their own).
 */
export function tuneClientSessions(authority: string, settings: http2.Settings): () => void {
  install();
  const reg = registry.get(authority);
  if (reg === undefined) registry.set(authority, { settings: { ...settings }, refs: 1 });
  else {
    reg.refs++;
    Object.assign(reg.settings, settings);
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    const r = registry.get(authority);
    if (r !== undefined && --r.refs === 0) registry.delete(authority);
  };
}

/** Settings the bulk receiver advertises: 16 MiB frames and a per-stream window of `windowBytes`. */
export function bulkReceiverSettings(windowBytes: number): http2.Settings {
  return { maxFrameSize: MAX_HTTP2_FRAME_SIZE, initialWindowSize: Math.min(2 ** 31 - 1, windowBytes) };
}
