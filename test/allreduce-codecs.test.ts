/**
 * Unit tests of the all-reduce building blocks: 16-bit codecs, Chunk wire format, the streaming gRPC frame reader,
 * bucket plans, ring geometry.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { addInto } from "../shared/codecs/float32-sum";
import { encodeHalf, decodeHalf, roundToHalf, halfToNumber, f32BitsToF16, f32BitsToBf16, HALF_UNIT_ROUNDOFF, HALF_SUBNORMAL_ABS_ERROR } from "../shared/codecs/half";
import { encodeChunk, decodeChunk, RingPhase, WireDtype, type ChunkHeader, type DecodedChunk, type MalformedChunk } from "../worker/transport/chunk-wire";
import { GrpcChunkReader, MAX_HEAD_BYTES } from "../worker/transport/grpc-frame-reader";
import { chunkProtoType } from "../worker/transport/peer-service";
import { planBuckets } from "../worker/collective/bucket-plan";
import { segmentStart, segmentLength, chunkCount, reduceScatterSegment, allGatherSegment } from "../worker/collective/ring-geometry";
import { Rng } from "../shared/rng";

function bitsOf(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}

test("fp16 encodes known values, rounds to nearest even and keeps specials", () => {
  const cases: [number, number][] = [
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [Infinity, 0x7c00],
    [-Infinity, 0xfc00], [2 ** -14, 0x0400], [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001],
    [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [1 + 2 ** -10, 0x3c01],
  ];
  for (const [x, h] of cases) assert.equal(f32BitsToF16(bitsOf(x)), h, `fp16(${x})`);
  assert.ok(Number.isNaN(halfToNumber("fp16", f32BitsToF16(bitsOf(NaN)))));
  for (let h = 0; h < 0x7c00; h += 37) assert.equal(f32BitsToF16(bitsOf(halfToNumber("fp16", h))), h, `fp16 round trip of ${h}`);
});

test("bf16 encodes known values, rounds to nearest even and keeps specials", () => {
  assert.equal(f32BitsToBf16(bitsOf(1)), 0x3f80);
  assert.equal(f32BitsToBf16(bitsOf(-2)), 0xc000);
  assert.equal(f32BitsToBf16(bitsOf(1 + 2 ** -8)), 0x3f80); // tie -> even
  assert.equal(f32BitsToBf16(bitsOf(1 + 3 * 2 ** -8)), 0x3f82); // tie -> even (up)
  assert.equal(f32BitsToBf16(bitsOf(Infinity)), 0x7f80);
  assert.ok(Number.isNaN(halfToNumber("bf16", f32BitsToBf16(bitsOf(NaN)))));
  assert.equal(halfToNumber("bf16", f32BitsToBf16(bitsOf(3.4e38))), Infinity);
});

test("16-bit round trips stay within the stated unit roundoff and decode-add sums in float32", () => {
  const rng = new Rng(7);
  const x = new Float32Array(5000);
  for (let i = 0; i < x.length; i++) x[i] = rng.normal() * 10 ** (rng.int(8) - 4);
  for (const kind of ["fp16", "bf16"] as const) {
    const enc = new Uint16Array(x.length);
    encodeHalf(kind, x, enc);
    const back = new Float32Array(x.length);
    decodeHalf(kind, enc, back, false);
    const rounded = x.slice();
    roundToHalf(kind, rounded);
    assert.deepEqual(rounded, back, `${kind}: roundToHalf equals encode+decode`);
    let maxRel = 0;
    for (let i = 0; i < x.length; i++) {
      const err = Math.abs(back[i] - x[i]);
      assert.ok(err <= HALF_UNIT_ROUNDOFF[kind] * Math.abs(x[i]) + HALF_SUBNORMAL_ABS_ERROR[kind], `${kind} element ${i}: ${x[i]} -> ${back[i]}`);
      if (Math.abs(x[i]) > 1e-3) maxRel = Math.max(maxRel, err / Math.abs(x[i]));
    }
    assert.ok(maxRel > HALF_UNIT_ROUNDOFF[kind] / 4, `${kind}: the error bound is not vacuous (max rel ${maxRel})`);
    const acc = new Float32Array(x.length).fill(1);
    decodeHalf(kind, enc, acc, true);
    for (let i = 0; i < 50; i++) assert.equal(acc[i], Math.fround(1 + back[i]));
  }
});

test("the bulk 16-bit encoders agree with the scalar reference on every exponent, rounding boundary and special", () => {
  const patterns: number[] = [];
  // every exponent, both signs, mantissas around the float16 (13 dropped bits) and bfloat16 (16 dropped bits) ties
  const mants = [0, 1, 0x0fff, 0x1000, 0x1001, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0x18000, 0x7fe000, 0x7ff000, 0x7fefff, 0x7fffff];
  for (let e = 0; e < 256; e++) for (const m of mants) for (const s of [0, 0x80000000]) patterns.push((s | (e << 23) | m) >>> 0);
  for (let k = 0; k < 65536; k++) patterns.push((k * 65537 + 12345) >>> 0); // a sweep over all 2^32 patterns
  const src = new Float32Array(new Uint32Array(patterns).buffer);
  for (const [kind, ref] of [["fp16", f32BitsToF16], ["bf16", f32BitsToBf16]] as const) {
    const out = new Uint16Array(src.length);
    encodeHalf(kind, src, out);
    const rounded = src.slice();
    roundToHalf(kind, rounded);
    const roundedBits = new Uint32Array(rounded.buffer);
    for (let i = 0; i < patterns.length; i++) {
      const want = ref(patterns[i]);
      if (out[i] !== want) assert.fail(`${kind}: bits 0x${patterns[i].toString(16)} encoded to 0x${out[i].toString(16)}, reference 0x${want.toString(16)}`);
      const back = new Uint32Array(new Float32Array([halfToNumber(kind, want)]).buffer)[0];
      if (!Number.isNaN(halfToNumber(kind, want)) && roundedBits[i] !== back) assert.fail(`${kind}: roundToHalf of 0x${patterns[i].toString(16)}`);
    }
  }
});

function header(over: Partial<ChunkHeader> = {}): ChunkHeader {
  return {
    jobId: "job-7", senderRank: 3, collectiveId: 12, step: 2 ** 40 + 5, bucket: 4, phase: RingPhase.ALL_GATHER, hop: 2, segment: 1,
    chunkIndex: 9, elementOffset: 123456789, elementCount: 5, chunkBytes: 20, dtype: WireDtype.FLOAT32,
    layoutHash: "0123456789abcdef", bucketCount: 6, totalElements: 2 ** 35, op: 2, ...over,
  };
}

test("Chunk wire encoding round-trips, aligns the payload and is standard protobuf (protobufjs decodes it)", () => {
  const src = new Float32Array([1.5, -2, 3.25, 0, 1e30]);
  const h = header();
  const wire = encodeChunk(h, src, null);
  // emulate grpc-js framing: 5-byte prefix, then the message
  const frame = Buffer.alloc(wire.byteLength + 5);
  wire.copy(frame, 5);
  const msg = frame.subarray(5);
  const d = decodeChunk(msg);
  assert.ok(d.ok);
  assert.deepEqual(d.header, h);
  assert.equal(d.payload.byteOffset % 4, 0, "payload is 4-byte aligned in the frame");
  assert.deepEqual(new Float32Array(d.payload.buffer, d.payload.byteOffset, 5), src);
  const pb = chunkProtoType().toObject(chunkProtoType().decode(msg), { longs: String, enums: Number, bytes: Buffer }) as Record<string, unknown>;
  assert.equal(pb.jobId, "job-7");
  assert.equal(pb.step, String(2 ** 40 + 5));
  assert.equal(pb.phase, RingPhase.ALL_GATHER);
  assert.equal(pb.layoutHash, BigInt("0x0123456789abcdef").toString());
  assert.equal(pb.totalElements, String(2 ** 35));
  assert.deepEqual(Buffer.from(pb.payload as Uint8Array), Buffer.from(src.buffer));
  // fp16 payload
  const wire16 = encodeChunk(header({ dtype: WireDtype.FLOAT16, chunkBytes: 10 }), src.subarray(0, 5), "fp16");
  const d16 = decodeChunk(wire16.toBuffer());
  assert.ok(d16.ok);
  assert.equal(d16.payload.length, 10);
});

test("decodeChunk reports truncated and garbage frames instead of throwing", () => {
  const good = encodeChunk(header(), new Float32Array(5), null).toBuffer();
  for (const bad of [good.subarray(0, 5), good.subarray(0, good.length - 3), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Buffer.from([0x0f])]) {
    const d = decodeChunk(bad);
    assert.equal(d.ok, false);
    if (!d.ok) assert.match(d.reason, /truncated|invalid|unsupported|range/);
  }
});

/** A gRPC frame (5-byte prefix + message) holding a Chunk encoded by encodeChunk. */
function grpcFrameOf(h: ChunkHeader, src: Float32Array | null, half: "fp16" | "bf16" | null, extra = Buffer.alloc(0)): Buffer {
  const msg = Buffer.concat([encodeChunk(h, src, half).toBuffer(), extra]);
  const f = Buffer.alloc(5 + msg.length);
  f.writeUInt32BE(msg.length, 1);
  msg.copy(f, 5);
  return f;
}

test("GrpcChunkReader streams payloads into place across arbitrary piece boundaries and alignments", () => {
  const rng = new Rng(99);
  const n = 3001; // odd: elements straddle pieces
  const a = new Float32Array(n).map(() => rng.normal());
  const b = new Float32Array(n).map(() => rng.normal());
  const h16 = new Float32Array(n).map(() => rng.normal());
  const base = (over: Partial<ChunkHeader>): ChunkHeader => header({ elementOffset: 0, elementCount: n, chunkBytes: 4 * n, ...over });
  const frames = [
    grpcFrameOf(base({ phase: RingPhase.BEGIN, elementCount: 0, chunkBytes: 0 }), null, null),
    grpcFrameOf(base({ phase: RingPhase.REDUCE_SCATTER, chunkIndex: 0 }), a, null), // streamed, add
    grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 1 }), b, null), // streamed, copy
    grpcFrameOf(base({ phase: RingPhase.REDUCE_SCATTER, chunkIndex: 2, dtype: WireDtype.FLOAT16, chunkBytes: 2 * n }), h16, "fp16"), // streamed, fp16 add
    grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 3, elementCount: 5, chunkBytes: 20 }), a.subarray(0, 5), null), // small: whole
    grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 4 }), b, null, Buffer.from([0xa0, 0x01, 0x07])), // payload not last: whole
    grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 5 }), a, null), // consumer wants it whole
    grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 6 }), a, null), // consumer skips it
  ];
  const stream = Buffer.concat(frames);
  const expectAdd = new Float32Array(n).map((_, i) => Math.fround(1 + a[i]));
  const fp16Back = new Float32Array(n);
  decodeHalf("fp16", (() => {
    const e = new Uint16Array(n);
    encodeHalf("fp16", h16, e);
    return e;
  })(), fp16Back, false);
  for (let trial = 0; trial < 60; trial++) {
    const targets = [new Float32Array(n).fill(1), new Float32Array(n).fill(7), new Float32Array(n).fill(2)];
    const events: string[] = [];
    const whole: (DecodedChunk | MalformedChunk)[] = [];
    const reader = new GrpcChunkReader(1 << 20, {
      onChunk: (m) => {
        whole.push(m);
        events.push(m.ok ? `whole ${m.header.phase}/${m.header.chunkIndex}` : `bad ${m.reason}`);
      },
      onChunkHeader: (h, bytes) => {
        events.push(`head ${h.phase}/${h.chunkIndex}/${bytes}`);
        assert.deepEqual({ ...h, phase: 0, chunkIndex: 0, dtype: 0, chunkBytes: 0, elementCount: 0 }, { ...header({ elementOffset: 0 }), phase: 0, chunkIndex: 0, dtype: 0, chunkBytes: 0, elementCount: 0 });
        if (h.chunkIndex <= 2) {
          return { kind: "into", target: targets[h.chunkIndex], add: h.phase === RingPhase.REDUCE_SCATTER, done: () => events.push(`done ${h.chunkIndex}`) };
        }
        return h.chunkIndex === 5 ? { kind: "whole" } : { kind: "skip" };
      },
    });
    // random cut points, each piece copied to a random offset of its own ArrayBuffer (random alignment)
    let at = 0;
    while (at < stream.length) {
      const len = Math.min(stream.length - at, trial < 5 ? 1 + trial : 1 + rng.int(trial % 2 ? 64 : 9000));
      const ab = new ArrayBuffer(len + 8);
      const off = rng.int(8);
      const piece = Buffer.from(ab, off, len);
      stream.copy(piece, 0, at, at + len);
      reader.push(piece);
      at += len;
    }
    assert.ok(reader.atMessageBoundary, `trial ${trial}: ends at a message boundary`);
    assert.deepEqual(events, [
      "whole 1/9", `head 2/0/${4 * n}`, "done 0", `head 3/1/${4 * n}`, "done 1", `head 2/2/${2 * n}`, "done 2", "whole 3/3", "whole 3/4",
      `head 3/5/${4 * n}`, "whole 3/5", `head 3/6/${4 * n}`,
    ], `trial ${trial}`);
    assert.deepEqual(targets[0], expectAdd, `trial ${trial}: float32 add`);
    assert.deepEqual(targets[1], b, `trial ${trial}: float32 copy`);
    for (let i = 0; i < n; i++) if (targets[2][i] !== Math.fround(2 + fp16Back[i])) assert.fail(`trial ${trial}: fp16 add element ${i}`);
    const w = whole.filter((m): m is DecodedChunk => m.ok);
    assert.deepEqual(new Float32Array(new Uint8Array(w[1].payload).buffer), a.subarray(0, 5));
    assert.deepEqual(new Float32Array(new Uint8Array(w[2].payload).buffer), b);
    assert.deepEqual(new Float32Array(new Uint8Array(w[3].payload).buffer), a);
  }
});

test("GrpcChunkReader offers the target for direct reads only inside a plain copy, and bytes read there land once", async () => {
  const n = 50_000;
  const rng = new Rng(5);
  const src = new Float32Array(n).map(() => rng.normal());
  const base = (over: Partial<ChunkHeader>): ChunkHeader => header({ elementOffset: 0, elementCount: n, chunkBytes: 4 * n, ...over });
  const copyMsg = grpcFrameOf(base({ phase: RingPhase.ALL_GATHER, chunkIndex: 1 }), src, null);
  const addMsg = grpcFrameOf(base({ phase: RingPhase.REDUCE_SCATTER, chunkIndex: 0 }), src, null);
  const payloadStart = copyMsg.length - 4 * n; // the payload is the message's last field
  const target = new Float32Array(n).fill(-1);
  const acc = new Float32Array(n).fill(1);
  const done: number[] = [];
  const reader = new GrpcChunkReader(1 << 20, {
    onChunk: () => assert.fail("no message is collected whole"),
    onChunkHeader: (h) => ({ kind: "into", target: h.chunkIndex === 1 ? target : acc, add: h.phase === RingPhase.REDUCE_SCATTER, done: () => done.push(h.chunkIndex) }),
  });
  assert.equal(reader.directTarget(1 << 20), null, "not inside a payload");
  // the head (the reader collects MAX_HEAD_BYTES of a large message first) and a split element arrive normally
  let pre = 5 + MAX_HEAD_BYTES + 1;
  while ((pre - payloadStart) % 4 === 0) pre++;
  reader.push(Buffer.from(copyMsg.subarray(0, pre)));
  let at = pre - payloadStart;
  assert.ok(at % 4 !== 0);
  while (at < 4 * n) {
    const view = reader.directTarget(7777);
    assert.ok(view !== null, `direct view at byte ${at}`);
    assert.equal(view.buffer, target.buffer);
    assert.equal(view.byteOffset, at, "the view starts where the next payload byte belongs");
    assert.equal(view.length, Math.min(7777, 4 * n - at), "at most maxBytes, never past the payload");
    // what a socket read into the view does: the bytes appear there, then the same memory is pushed
    view.set(copyMsg.subarray(payloadStart + at, payloadStart + at + view.length));
    reader.pushTransient(Buffer.from(view.buffer, view.byteOffset, view.length));
    at += view.length;
  }
  assert.deepEqual(done, [1]);
  assert.deepEqual(target, src);
  assert.equal(reader.directTarget(1 << 20), null, "after the payload");
  // a summed payload is never offered: its bytes must be added, not stored
  reader.push(Buffer.from(addMsg.subarray(0, payloadStart + 8)));
  assert.equal(reader.directTarget(1 << 20), null, "inside a summed payload");
  reader.pause();
  assert.equal(reader.directTarget(1 << 20), null, "paused");
  reader.resume();
  reader.push(Buffer.from(addMsg.subarray(payloadStart + 8)));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(done, [1, 0]);
  assert.deepEqual(acc, src.map((x) => Math.fround(1 + x)));
});

test("GrpcChunkReader rejects oversized and compressed messages before storing them", () => {
  const got: string[] = [];
  const sink = { onChunk: (m: DecodedChunk | MalformedChunk) => got.push(m.ok ? "ok" : m.reason) };
  const big = new GrpcChunkReader(100, sink);
  big.push(Buffer.from([0, 0, 0, 0, 101, 1, 2, 3]));
  big.push(Buffer.from([0, 0, 0, 0, 1, 1]));
  assert.ok(big.failed);
  const comp = new GrpcChunkReader(100, sink);
  comp.push(Buffer.from([1, 0, 0, 0, 3, 1, 2, 3]));
  assert.deepEqual(got, ["message of 101 bytes exceeds the limit of 100 bytes", "compressed or unknown message flag 1 (compression is not used on this stream)"]);
});

test("bucket plans are deterministic, respect the size, never split a tensor, and hash the layout", () => {
  const tensors = [{ name: "a", length: 10 }, { name: "b", length: 0 }, { name: "c", length: 30 }, { name: "d", length: 100 }, { name: "e", length: 5 }];
  const p = planBuckets(tensors, 160, "s");
  assert.deepEqual(p.buckets.map((b) => b.entries.map((e) => e.tensor)), [[0, 1, 2], [3], [4]]);
  assert.deepEqual(p.buckets.map((b) => b.elements), [40, 100, 5]);
  assert.equal(p.totalElements, 145);
  assert.equal(planBuckets(tensors, 160, "s").layoutHash, p.layoutHash);
  assert.notEqual(planBuckets(tensors, 1000, "s").layoutHash, p.layoutHash, "a different bucketing changes the hash");
  assert.notEqual(planBuckets(tensors, 160, "t").layoutHash, p.layoutHash, "settings change the hash");
  assert.notEqual(planBuckets([...tensors.slice(0, 4), { name: "e", length: 6 }], 160, "s").layoutHash, p.layoutHash);
  assert.notEqual(planBuckets([tensors[1], tensors[0], ...tensors.slice(2)], 160, "s").layoutHash, p.layoutHash, "order matters");
  assert.throws(() => planBuckets([{ name: "x", length: -1 }], 160, "s"), /tensor 0 \("x"\) has invalid length/);
});

test("ring geometry: segments partition any length, and each rank receives every segment but its own", () => {
  for (const N of [1, 2, 3, 4, 7]) {
    for (const L of [0, 1, 2, N - 1, N, N + 1, 97]) {
      let next = 0;
      for (let g = 0; g < N; g++) {
        assert.equal(segmentStart(L, N, g), next);
        next += segmentLength(L, N, g);
        assert.equal(chunkCount(L, N, g, 4), Math.ceil(segmentLength(L, N, g) / 4));
      }
      assert.equal(next, L);
    }
    for (let r = 0; r < N; r++) {
      const rs = Array.from({ length: N - 1 }, (_, h) => reduceScatterSegment(r, N, h)).sort();
      const ag = Array.from({ length: N - 1 }, (_, h) => allGatherSegment(r, N, h)).sort();
      assert.deepEqual(rs, [...Array(N).keys()].filter((g) => g !== r));
      assert.deepEqual(ag, [...Array(N).keys()].filter((g) => g !== (r + 1) % N));
      if (N > 1) assert.equal(reduceScatterSegment(r, N, N - 2), (r + 1) % N, "the last reduce-scatter hop completes the segment this rank owns");
    }
  }
});

test("addInto (the unrolled ring sum) is bit-identical to the plain loop at every length and offset", () => {
  const r = new Rng(7);
  const rng = (): number => r.next();
  for (const n of [0, 1, 7, 8, 9, 15, 16, 17, 63, 1000, 4099]) {
    for (const offset of [0, 1, 3]) {
      const dst = new Float32Array(n + offset + 2);
      const src = new Float32Array(n + 5);
      for (let i = 0; i < dst.length; i++) dst[i] = (rng() - 0.5) * 10 ** Math.floor(rng() * 12 - 6);
      for (let i = 0; i < src.length; i++) src[i] = (rng() - 0.5) * 10 ** Math.floor(rng() * 12 - 6);
      if (n > 3) [src[0], src[1], src[2], dst[offset + 3]] = [NaN, Infinity, -0, -Infinity];
      const expected = dst.slice();
      for (let i = 0; i < n; i++) expected[offset + i] += src[i];
      addInto(dst.subarray(offset, offset + n), src);
      const [got, want] = [new Uint32Array(dst.buffer), new Uint32Array(expected.buffer)];
      for (let i = 0; i < dst.length; i++) {
        if (got[i] !== want[i]) assert.fail(`n ${n}, offset ${offset}, element ${i}: ${dst[i]} != ${expected[i]}`);
      }
    }
  }
  assert.throws(() => addInto(new Float32Array(4), new Float32Array(3)), /source has 3 elements, destination 4/);
});
