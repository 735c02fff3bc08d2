/**
 * Unit and interop tests of the raw-socket HTTP/2 receive path ("http2-raw" transport): the HPACK Huffman
 * decoder and header-block decoder (RFC 7541 examples and node:http2's real encoder output), the incremental
 * frame parser (every split point), and RawPullClient against a node:http2 server (headers, streamed body,
 * Huffman-coded trailers, trailers-only errors, resets, a dead server, flow control over many windows).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http2 = require("node:http2");
import * as net from "node:net";
import { decodeHuffman, HuffmanError } from "../worker/transport/hpack-huffman";
import { HpackDecoder, HpackError } from "../worker/transport/hpack-decoder";
import { encodeLiteralHeaders } from "../worker/transport/hpack-encode";
import { H2FrameParser, H2FrameError } from "../worker/transport/h2-frame-parser";
import { Flag, FrameType, frame } from "../worker/transport/h2-frames";
import { RawPullClient, type CallStatus } from "../worker/transport/raw-pull-client";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

test("Huffman: RFC 7541 C.4 / C.6 strings decode; bad padding and EOS are errors", () => {
  assert.equal(decodeHuffman(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"), 0, 12), "www.example.com");
  assert.equal(decodeHuffman(hex("a8eb 1064 9cbf"), 0, 6), "no-cache");
  assert.equal(decodeHuffman(hex("6402"), 0, 2), "302");
  assert.equal(decodeHuffman(hex("aec3 771a 4b"), 0, 5), "private");
  const h = (s: string): string => decodeHuffman(hex(s), 0, hex(s).length);
  assert.equal(h("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"), "Mon, 21 Oct 2013 20:13:21 GMT");
  assert.equal(h("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"), "https://www.example.com");
  assert.equal(decodeHuffman(new Uint8Array(0), 0, 0), "");
  // "0" is 00000 (5 bits): padding must be 1s
  assert.throws(() => decodeHuffman(hex("00"), 0, 1), HuffmanError);
  // a full byte of padding (> 7 bits) is an error
  assert.throws(() => decodeHuffman(hex("ff"), 0, 1), HuffmanError);
  // EOS (30 ones) inside the data
  assert.throws(() => decodeHuffman(hex("ffffffff"), 0, 4), HuffmanError);
});

test("HPACK: RFC 7541 C.6.1-3 response blocks (Huffman, dynamic table with eviction at 256 bytes)", () => {
  const d = new HpackDecoder(256);
  const b1 = hex("4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3");
  assert.deepEqual(d.decode(b1), [[":status", "302"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]]);
  assert.deepEqual(d.decode(hex("4883 640e ff c1 c0 bf")), [[":status", "307"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]]);
  const b3 = hex("88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07");
  assert.deepEqual(d.decode(b3), [[":status", "200"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:22 GMT"], ["location", "https://www.example.com"],
    ["content-encoding", "gzip"], ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"]]);
});

test("HPACK: our literal encoder round-trips; malformed blocks and oversize table updates are errors", () => {
  const fields = [{ name: ":path", value: "/a/b" }, { name: "x-token", value: "s3cret", sensitive: true }, { name: "long", value: "v".repeat(300) }];
  assert.deepEqual(new HpackDecoder().decode(encodeLiteralHeaders(fields)), fields.map((f) => [f.name, f.value]));
  assert.throws(() => new HpackDecoder().decode(hex("be")), HpackError); // index 62: empty dynamic table
  assert.throws(() => new HpackDecoder().decode(hex("80")), HpackError); // index 0
  assert.throws(() => new HpackDecoder().decode(hex("0005 6162")), HpackError); // string past the end
  assert.throws(() => new HpackDecoder(0).decode(hex("3f e1 1f")), HpackError); // size update to 4096 > 0
  assert.deepEqual(new HpackDecoder(0).decode(hex("20 88")), [[":status", "200"]]);
  assert.throws(() => new HpackDecoder().decode(hex("88 20")), HpackError); // size update after a field
});

test("frame parser: same frames at every split point, DATA streamed without padding, oversize frames rejected", () => {
  const padded = Buffer.concat([Buffer.from([3]), Buffer.from("hello"), Buffer.alloc(3)]);
  const stream = Buffer.concat([
    frame(FrameType.SETTINGS, 0, 0, hex("000400010000")), frame(FrameType.DATA, Flag.PADDED, 1, padded), frame(FrameType.DATA, 0, 1, Buffer.from("world!")),
    frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7)), frame(FrameType.DATA, Flag.END_STREAM, 1), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, hex("88")),
  ]);
  const run = (cuts: number[]): string => {
    const log: string[] = [];
    let data = "";
    const p = new H2FrameParser(1 << 20, 1024, {
      onFrame: (t, f, s, pl) => log.push(`F${t}/${f}/${s}/${pl.toString("hex")}`),
      onData: (_s, piece) => (data += piece.toString("latin1")),
      onDataEnd: (s, n, f) => log.push(`D${s}/${n}/${f}/${data}`),
    });
    let at = 0;
    for (const c of [...cuts, stream.length]) {
      p.push(stream.subarray(at, c));
      at = c;
    }
    assert.ok(p.atFrameBoundary);
    return log.join(" ");
  };
  const whole = run([]);
  assert.match(whole, /D1\/9\/8\/hello D1\/6\/0\/helloworld! F6\/0\/0\/0707070707070707 D1\/0\/1\/helloworld!/);
  for (let i = 1; i < stream.length; i++) assert.equal(run([i]), whole, `split at ${i}`);
  for (let i = 1; i + 7 < stream.length; i += 3) assert.equal(run([i, i + 1, i + 7]), whole);
  const big = new H2FrameParser(100, 50, { onFrame: () => undefined, onData: () => undefined, onDataEnd: () => undefined });
  assert.throws(() => big.push(frame(FrameType.DATA, 0, 1, Buffer.alloc(101))), H2FrameError);
  const ctl = new H2FrameParser(100, 50, { onFrame: () => undefined, onData: () => undefined, onDataEnd: () => undefined });
  assert.throws(() => ctl.push(frame(FrameType.HEADERS, 0, 1, Buffer.alloc(51))), H2FrameError);
  const pad = new H2FrameParser(100, 50, { onFrame: () => undefined, onData: () => undefined, onDataEnd: () => undefined });
  assert.throws(() => pad.push(frame(FrameType.DATA, Flag.PADDED, 1, Buffer.from([9, 1, 2]))), H2FrameError);
});

type Handler = (st: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

async function server(handler: Handler): Promise<{ port: number; close(): Promise<void>; sockets: Set<net.Socket> }> {
  const srv = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  const sockets = new Set<net.Socket>();
  srv.on("connection", (sock: net.Socket) => sockets.add(sock));
  srv.on("session", (s) => {
    sessions.add(s);
    s.on("error", () => undefined);
    s.on("close", () => sessions.delete(s));
  });
  srv.on("stream", (st: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => {
    st.on("error", () => undefined);
    handler(st, h);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    sockets,
    close: () => new Promise<void>((r) => {
      for (const s of sessions) s.destroy();
      srv.close(() => r());
    }),
  };
}

interface CallResult {
  headers: Record<string, string> | null;
  body: Buffer;
  status: CallStatus | null;
  detail: string;
  /** Pieces (and their bytes) whose body offset and buffer address agreed modulo 4. */
  aligned: { pieces: number; bytes: number };
}

function call(port: number, opts: { windowBytes?: number; readBufferBytes?: number; onClient?: (c: RawPullClient) => void } = {}): Promise<CallResult> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let headers: Record<string, string> | null = null;
    let received = 0;
    const aligned = { pieces: 0, bytes: 0 };
    RawPullClient.connect({
      host: "127.0.0.1", port, peer: `rank 9 (127.0.0.1:${port})`, path: "/svc/Pull", headers: [{ name: "x-token", value: "tok", sensitive: true }],
      body: Buffer.from([0, 0, 0, 0, 2, 8, 1]), windowBytes: opts.windowBytes ?? 1 << 20, maxFrameBytes: 16 * 1024 * 1024 - 1, readBufferBytes: opts.readBufferBytes,
    }, {
      onResponse: (h) => (headers = { ...h }),
      onData: (p) => {
        parts.push(Buffer.from(p));
        if ((p.byteOffset - received) % 4 === 0) {
          aligned.pieces++;
          aligned.bytes += p.length;
        }
        received += p.length;
      },
      onEnd: (status, detail) => resolve({ headers, body: Buffer.concat(parts), status, detail, aligned }),
      bodyAlignment: () => received % 4,
    }, Date.now() + 5000).then((c) => opts.onClient?.(c), reject);
  });
}

function readAll(st: http2.ServerHttp2Stream): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    st.on("data", (d: Buffer) => parts.push(d));
    st.on("end", () => resolve(Buffer.concat(parts)));
  });
}

test("RawPullClient ↔ node:http2 server: request headers and body arrive, Huffman headers/trailers and a 40 MB body come back", async () => {
  const payload = Buffer.alloc(40_000_003);
  for (let i = 0; i < payload.length; i += 4099) payload[i] = i & 0xff;
  let seen: { headers: http2.IncomingHttpHeaders; body: Buffer } | null = null;
  const long = "Mon, 21 Oct 2013 20:13:21 GMT; the quick brown fox jumps over the lazy dog 0123456789";
  const srv = await server((st, h) => {
    void readAll(st).then((body) => {
      seen = { headers: h, body };
      st.respond({ ":status": 200, "content-type": "application/grpc", "x-proof": long, "x-other": "abc" }, { waitForTrailers: true });
      st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": "0", "grpc-message": encodeURI("all good: done"), "x-trailer": long }));
      st.end(payload);
    });
  });
  try {
    const r = await call(srv.port, { windowBytes: 1 << 20, readBufferBytes: 65536 });
    assert.equal(r.detail, "");
    assert.deepEqual(r.status, { code: 0, details: "all good: done" });
    assert.ok(r.headers);
    assert.equal(r.headers[":status"], "200");
    assert.equal(r.headers["x-proof"], long);
    assert.equal(r.headers["x-other"], "abc");
    assert.ok(r.body.equals(payload), "body arrives intact through many flow-control windows");
    // (node:http2 sends 16 KiB DATA frames whatever SETTINGS_MAX_FRAME_SIZE says, so read placement cannot align them all)
    const s = seen as { headers: http2.IncomingHttpHeaders; body: Buffer } | null;
    assert.ok(s);
    assert.equal(s.headers[":path"], "/svc/Pull");
    assert.equal(s.headers["content-type"], "application/grpc");
    assert.equal(s.headers["x-token"], "tok");
    assert.deepEqual([...s.body], [0, 0, 0, 0, 2, 8, 1]);
  } finally {
    await srv.close();
  }
});

/** A bare-socket HTTP/2 server that answers any request with `body` in 1 MiB DATA frames and an OK status. */
async function largeFrameServer(body: Buffer): Promise<net.Server> {
  const srv = net.createServer((sock) => {
    sock.once("data", () => {
      const parts: Buffer[] = [frame(FrameType.SETTINGS, 0, 0), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, encodeLiteralHeaders([{ name: ":status", value: "200" }]))];
      for (let at = 0; at < body.length; at += 1 << 20) parts.push(frame(FrameType.DATA, 0, 1, body.subarray(at, at + (1 << 20))));
      parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, encodeLiteralHeaders([{ name: "grpc-status", value: "0" }])));
      sock.write(Buffer.concat(parts));
      sock.on("data", () => undefined);
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return srv;
}

test("RawPullClient ↔ a server sending 1 MiB DATA frames: frames up to our max frame size, reads placed so the body is aligned", async () => {
  const body = Buffer.alloc(8 * 1024 * 1024 + 3);
  for (let i = 0; i < body.length; i += 997) body[i] = (i >> 3) & 0xff;
  const srv = await largeFrameServer(body);
  try {
    const r = await call((srv.address() as net.AddressInfo).port, { windowBytes: 64 * 1024 * 1024 });
    assert.deepEqual(r.status, { code: 0, details: "" });
    assert.ok(r.body.equals(body));
    // body byte i lands at an address = i (mod 4), except in reads that straddle a frame header
    assert.ok(r.aligned.bytes > 0.9 * body.length, `aligned ${r.aligned.bytes} of ${body.length} body bytes`);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("RawPullClient: inside large DATA frames, reads go straight into the memory the consumer offers (bodyTarget)", async () => {
  const body = Buffer.alloc(8 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 991) body[i] = (i >> 5) & 0xff;
  const srv = await largeFrameServer(body);
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const dest = new Uint8Array(body.length + 16).subarray(16); // the consumer's memory
    let received = 0;
    let inPlace = 0;
    const status = await new Promise<CallStatus | null>((resolve, reject) => {
      RawPullClient.connect({
        host: "127.0.0.1", port, peer: `rank 9 (127.0.0.1:${port})`, path: "/svc/Pull", headers: [], body: Buffer.from([0, 0, 0, 0, 0]),
        windowBytes: 64 * 1024 * 1024, maxFrameBytes: 16 * 1024 * 1024 - 1,
      }, {
        onResponse: () => undefined,
        onData: (p) => {
          if (p.buffer === dest.buffer && p.byteOffset === dest.byteOffset + received) inPlace += p.length;
          else dest.set(p, received);
          received += p.length;
        },
        onEnd: (s) => resolve(s),
        bodyTarget: (maxBytes) => dest.subarray(received, received + maxBytes),
      }, Date.now() + 5000).catch(reject);
    });
    assert.deepEqual(status, { code: 0, details: "" });
    assert.equal(received, body.length);
    assert.ok(Buffer.from(dest.buffer, dest.byteOffset, dest.length).equals(body), "every byte in its place");
    // all but the reads that straddle a frame header (and the small ends of frames) went straight in
    assert.ok(inPlace > 0.9 * body.length, `${inPlace} of ${body.length} bytes read in place`);
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});

test("RawPullClient: trailers-only rejection, stream reset, and a server that dies mid-stream are reported naming the peer", async () => {
  const srv = await server((st) => {
    void readAll(st).then(() => {
      st.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "16", "grpc-message": encodeURI("missing or wrong job token") }, { endStream: true });
    });
  });
  try {
    const r = await call(srv.port);
    assert.equal(r.headers, null);
    assert.deepEqual(r.status, { code: 16, details: "missing or wrong job token" });
  } finally {
    await srv.close();
  }
  const reset = await server((st) => {
    void readAll(st).then(() => {
      st.respond({ ":status": 200, "content-type": "application/grpc" });
      st.write(Buffer.alloc(1000));
      setTimeout(() => st.close(http2.constants.NGHTTP2_CANCEL), 20);
    });
  });
  try {
    const r = await call(reset.port);
    assert.equal(r.status, null);
    assert.equal(r.body.length, 1000);
    // node:http2 ends the stream before it resets it: either is reported as a failed stream, naming the peer
    assert.match(r.detail, /rank 9 \(127\.0\.0\.1:\d+\) (reset the stream: HTTP\/2 CANCEL \(8\)|ended the stream without trailers)/);
  } finally {
    await reset.close();
  }
  const dying: Awaited<ReturnType<typeof server>> = await server((st) => {
    void readAll(st).then(() => {
      st.respond({ ":status": 200, "content-type": "application/grpc" });
      st.write(Buffer.alloc(5000));
      setTimeout(() => {
        for (const sock of dying.sockets) sock.destroy(); // like a killed process: no GOAWAY, no RST_STREAM
      }, 20);
    });
  });
  try {
    const r = await call(dying.port);
    assert.equal(r.status, null);
    assert.match(r.detail, /stream from rank 9 \(127\.0\.0\.1:\d+\) ended without a gRPC status/);
  } finally {
    await dying.close();
  }
});

test("RawPullClient: pause withholds credit (the sender stops at the window) and resume lets the rest through", async () => {
  const total = 8 * 1024 * 1024;
  const srv = await server((st) => {
    void readAll(st).then(() => {
      st.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": "0" }));
      st.end(Buffer.alloc(total, 1));
    });
  });
  try {
    let client: RawPullClient | null = null;
    let got = 0;
    let resolveEnd: (s: CallStatus | null) => void = () => undefined;
    const ended = new Promise<CallStatus | null>((r) => (resolveEnd = r));
    client = await RawPullClient.connect({
      host: "127.0.0.1", port: srv.port, peer: "rank 1", path: "/svc/Pull", headers: [], body: Buffer.from([0, 0, 0, 0, 0]),
      windowBytes: 1 << 20, maxFrameBytes: 1 << 20,
    }, {
      onResponse: () => client?.pause(),
      onData: (p) => (got += p.length),
      onEnd: (s) => resolveEnd(s),
    }, Date.now() + 5000);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(got <= 1 << 20, `received ${got} bytes while paused, window is 1 MiB`);
    client.resume();
    assert.deepEqual(await ended, { code: 0, details: "" });
    assert.equal(got, total);
  } finally {
    await srv.close();
  }
});
