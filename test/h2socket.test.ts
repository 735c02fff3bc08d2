/**
 * Tests of the raw-socket HTTP/2 server ("http2-socket" transport's peer port, h2-server.ts): DATA frames sized
 * by the client's SETTINGS_MAX_FRAME_SIZE (16 KiB by default, large when advertised), stream and connection
 * flow-control windows honoured (frames cut at the window, the rest after WINDOW_UPDATE), a node:http2 client
 * and RawPullClient get the body and trailers intact, resets and trailers-only answers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http2 = require("node:http2");
import * as net from "node:net";
import { H2Server } from "../worker/transport/h2-server";
import type { H2ServerStream } from "../worker/transport/h2-server-connection";
import { encodeLiteralHeaders, type OutgoingField } from "../worker/transport/hpack-encode";
import { H2FrameParser } from "../worker/transport/h2-frame-parser";
import { CLIENT_PREFACE, Flag, FrameType, Setting, frame, settingsFrame, windowUpdateFrame } from "../worker/transport/h2-frames";
import { RawPullClient, type CallStatus } from "../worker/transport/raw-pull-client";

const HEAD: OutgoingField[] = [{ name: ":status", value: "200" }, { name: "content-type", value: "application/grpc" }];
const OK: OutgoingField[] = [{ name: "grpc-status", value: "0" }];

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** A server answering every request with HEAD, `parts` as DATA, then OK trailers. */
async function serve(parts: Buffer[], onReq?: (st: H2ServerStream, h: Readonly<Record<string, string>>, body: Buffer | string) => boolean): Promise<H2Server> {
  return H2Server.listen({
    self: "test server", host: "127.0.0.1", port: 0, maxRequestBytes: 1024, maxConcurrentStreams: 4,
    onRequest: (st, h, body) => {
      if (onReq?.(st, h, body) === true) return;
      st.respond(HEAD);
      st.write(parts, null);
      st.end(OK);
    },
  });
}

interface RawExchange {
  dataFrames: number[];
  body: Buffer;
  trailers: boolean;
}

/**
 * Speaks HTTP/2 by hand: preface, `settings`, a request on stream 1; records every DATA frame length. When no
 * frame arrived for 100 ms (the server is out of credit), grants `grant` bytes on the stream and the connection.
 */
function rawExchange(port: number, settings: readonly (readonly [Setting, number])[], connExtra: number, grant: number): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const res: RawExchange = { dataFrames: [], body: Buffer.alloc(0), trailers: false };
    const pieces: Buffer[] = [];
    let maxFrame = 16384;
    for (const [id, v] of settings) if (id === Setting.MAX_FRAME_SIZE) maxFrame = v;
    const sock = net.connect({ host: "127.0.0.1", port });
    let idle: NodeJS.Timeout | null = null;
    const armIdle = (): void => {
      if (idle !== null) clearTimeout(idle);
      idle = setTimeout(() => {
        sock.write(windowUpdateFrame(1, grant));
        sock.write(windowUpdateFrame(0, grant));
      }, 100);
    };
    const parser = new H2FrameParser(maxFrame, 65536, {
      onData: (_id, p) => pieces.push(Buffer.from(p)),
      onDataEnd: (_id, n) => {
        res.dataFrames.push(n);
        armIdle();
      },
      onFrame: (type, flags, id) => {
        if (type === FrameType.HEADERS && id === 1 && (flags & Flag.END_STREAM) !== 0) {
          if (idle !== null) clearTimeout(idle);
          res.trailers = true;
          res.body = Buffer.concat(pieces);
          sock.destroy();
          resolve(res);
        }
      },
    });
    sock.on("data", (b: Buffer) => parser.push(b));
    sock.on("error", reject);
    sock.on("close", () => {
      if (!res.trailers) reject(new Error("connection closed before the trailers"));
    });
    const head = encodeLiteralHeaders([
      { name: ":method", value: "POST" }, { name: ":scheme", value: "http" }, { name: ":path", value: "/x" }, { name: ":authority", value: "t" },
      { name: "content-type", value: "application/grpc" },
    ]);
    sock.write(CLIENT_PREFACE);
    sock.write(settingsFrame(settings));
    if (connExtra > 0) sock.write(windowUpdateFrame(0, connExtra));
    sock.write(frame(FrameType.HEADERS, Flag.END_HEADERS, 1, head));
    sock.write(frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.from([0, 0, 0, 0, 0])));
    armIdle();
  });
}

test("H2Server: DATA frames up to the client's max frame size, cut at the stream window, the rest after WINDOW_UPDATE", async () => {
  const parts = [pattern(13, 1), pattern(300_000, 2)];
  const want = Buffer.concat(parts);
  const server = await serve(parts);
  try {
    // 1 MiB frames, stream window 30000, connection window 65535 + 1 MiB
    const a = await rawExchange(server.port, [[Setting.MAX_FRAME_SIZE, 1 << 20], [Setting.INITIAL_WINDOW_SIZE, 30_000]], 1 << 20, 1 << 20);
    assert.ok(a.trailers);
    assert.ok(a.body.equals(want), "body intact");
    assert.equal(a.dataFrames[0], 30_000, `first frame fills the stream window exactly, got ${a.dataFrames.join(",")}`);
    assert.equal(a.dataFrames[1], want.length - 30_000, `the rest in one frame after the update, got ${a.dataFrames.join(",")}`);
    // default settings: 16 KiB frames; connection window 65535 caps the first burst
    const b = await rawExchange(server.port, [[Setting.INITIAL_WINDOW_SIZE, 1 << 20]], 0, 1 << 20);
    assert.ok(b.body.equals(want), "body intact");
    assert.ok(b.dataFrames.every((n) => n <= 16384), `frames ≤ 16 KiB, got max ${Math.max(...b.dataFrames)}`);
    let first = 0;
    for (let i = 0; first + b.dataFrames[i] <= 65535 && i < b.dataFrames.length; i++) first += b.dataFrames[i];
    assert.equal(first, 65535, "the first burst is exactly the default connection window");
  } finally {
    await server.close(500);
  }
});

test("H2Server ↔ node:http2 client and RawPullClient: body and trailers intact; trailers-only answers and resets", async () => {
  const parts = [pattern(5, 3), pattern(2_000_003, 4)];
  const want = Buffer.concat(parts);
  let resetSeen: string | null = null;
  const server = await serve(parts, (st, h, body) => {
    if (h[":path"] === "/reject") {
      st.respondTrailersOnly([...HEAD, { name: "grpc-status", value: "7" }, { name: "grpc-message", value: "no%20way" }]);
      return true;
    }
    if (h[":path"] === "/hang") {
      st.onClose = (e) => (resetSeen = e);
      st.respond(HEAD);
      return true;
    }
    assert.ok(Buffer.isBuffer(body));
    return false;
  });
  try {
    const s = http2.connect(`http://127.0.0.1:${server.port}`);
    const got = await new Promise<{ body: Buffer; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const req = s.request({ ":method": "POST", ":path": "/ok", "content-type": "application/grpc" });
      const chunks: Buffer[] = [];
      let trailers: http2.IncomingHttpHeaders = {};
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("trailers", (t) => (trailers = t));
      req.on("end", () => resolve({ body: Buffer.concat(chunks), trailers }));
      req.on("error", reject);
      req.end(Buffer.alloc(5));
    });
    assert.ok(got.body.equals(want), "node:http2 client got the body");
    assert.equal(got.trailers["grpc-status"], "0");
    const rej = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const req = s.request({ ":method": "POST", ":path": "/reject", "content-type": "application/grpc" });
      req.on("response", resolve);
      req.on("error", reject);
      req.resume();
      req.end(Buffer.alloc(5));
    });
    assert.equal(rej["grpc-status"], "7");
    const hang = s.request({ ":method": "POST", ":path": "/hang", "content-type": "application/grpc" });
    hang.on("error", () => undefined);
    hang.end(Buffer.alloc(5));
    await new Promise((r) => hang.once("response", r));
    hang.close(http2.constants.NGHTTP2_CANCEL);
    for (let i = 0; i < 50 && resetSeen === null; i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(String(resetSeen), /reset the stream: HTTP\/2 CANCEL/);
    s.close();

    const pieces: Buffer[] = [];
    const status = await new Promise<CallStatus | null>((resolve, reject) => {
      RawPullClient.connect({
        host: "127.0.0.1", port: server.port, peer: "test server", path: "/ok", headers: [], body: Buffer.alloc(5), windowBytes: 1 << 20, maxFrameBytes: (1 << 24) - 1,
      }, {
        onResponse: () => undefined,
        onData: (p) => pieces.push(Buffer.from(p)),
        onEnd: (st) => resolve(st),
      }, Date.now() + 5000).catch(reject);
    });
    assert.deepEqual(status, { code: 0, details: "" });
    assert.ok(Buffer.concat(pieces).equals(want), "RawPullClient got the body");
  } finally {
    await server.close(500);
  }
});
