/**
 * Ring all-reduce correctness with real processes talking gRPC on 127.0.0.1, for every transport ("http2": the
 * gRPC wire format on node:http2 with streaming receive, and "grpc": grpc-js): sums and averages equal an
 * independent element-wise reference for N = 1..4, odd and empty lengths, many buckets and many sub-chunks;
 * every rank ends with identical bits; float16/bfloat16 wire compression stays within its stated bound. The
 * small-chunk cases take the transports' whole-message path, the large-chunk cases (chunks above the 1 KiB head
 * limit, odd element counts) the streaming path.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startChildren, ringSpecs } from "./helpers/allreduce-harness";
import { referenceSum, decodeTensor, inputTensor, type CaseSpec, type ChildResult } from "./helpers/allreduce-spec";
import { HALF_UNIT_ROUNDOFF, HALF_SUBNORMAL_ABS_ERROR } from "../shared/codecs/half";

const TENSORS = [
  { name: "odd", length: 1001 }, { name: "empty", length: 0 }, { name: "small", length: 37 }, { name: "one", length: 1 },
  { name: "big", length: 5003 }, { name: "mid", length: 250 },
];

function okTensors(res: (ChildResult | null)[], caseIndex: number): Float32Array[][] {
  return res.map((r, rank) => {
    assert.ok(r, `rank ${rank} wrote a result`);
    const c = r.cases[caseIndex];
    assert.ok(c, `rank ${rank} ran case ${caseIndex}`);
    if (!c.ok) assert.fail(`rank ${rank} case ${caseIndex} failed: ${c.error.message}`);
    return c.tensors.map(decodeTensor);
  });
}

function assertIdenticalBits(all: Float32Array[][]): void {
  for (let r = 1; r < all.length; r++) {
    all[r].forEach((t, i) => assert.deepEqual(Buffer.from(t.buffer), Buffer.from(all[0][i].buffer), `rank ${r} tensor ${i} differs bitwise from rank 0`));
  }
}

const TRANSPORTS = ["http2", "http2-raw", "http2-socket", "grpc"] as const;

for (const transport of TRANSPORTS) for (const N of [1, 2, 3, 4]) {
  test(`${transport} N=${N}: sum and avg equal the independent reference exactly, bits identical on every rank`, async () => {
    const cases: CaseSpec[] = [
      { step: 0, op: "sum", tensors: TENSORS, seed: 11, values: "int" },
      { step: 1, op: "avg", tensors: TENSORS, seed: 12, values: "int" },
      { step: 2, op: "sum", tensors: TENSORS, seed: 13, values: "normal" },
      { step: 3, op: "sum", tensors: [], seed: 14, values: "int" },
    ];
    // 64-byte chunks and 400-byte buckets: many buckets, many pipelined sub-chunks per segment
    const ring = await startChildren(ringSpecs(N, { jobId: "job-ok", token: "tok", timeoutMs: 20_000, chunkBytes: 64, bucketBytes: 400, cases, transport }));
    const res = await ring.results();
    for (const ci of [0, 1]) {
      const all = okTensors(res, ci);
      assertIdenticalBits(all);
      const c = cases[ci];
      all[0].forEach((got, t) => {
        const ref = referenceSum(c, N, t);
        for (let i = 0; i < ref.length; i++) {
          const want = c.op === "sum" ? Math.fround(ref[i]) : Math.fround(Math.fround(ref[i]) / N);
          if (got[i] !== want) assert.fail(`case ${c.op} tensor ${c.tensors[t].name}[${i}]: got ${got[i]}, want ${want}`);
        }
      });
    }
    const normal = okTensors(res, 2);
    assertIdenticalBits(normal);
    normal[0].forEach((got, t) => {
      const ref = referenceSum(cases[2], N, t);
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i] - ref[i]) <= 1e-5 * (1 + Math.abs(ref[i])), `normal tensor ${t}[${i}]`);
    });
    assert.deepEqual(okTensors(res, 3), res.map(() => []));
  });
}

const BIG = [{ name: "a", length: 20_011 }, { name: "b", length: 3 }, { name: "c", length: 9_999 }];

for (const transport of TRANSPORTS) for (const N of [2, 3]) {
  test(`${transport} N=${N} large chunks (streaming path): sum and avg exact, bits identical on every rank`, async () => {
    const cases: CaseSpec[] = [
      { step: 0, op: "sum", tensors: BIG, seed: 31, values: "int" },
      { step: 1, op: "avg", tensors: BIG, seed: 32, values: "int" },
      { step: 2, op: "sum", tensors: BIG, seed: 33, values: "normal" },
    ];
    // 4 KiB + 12 byte chunks (not a power of two) and 40 KB buckets: many multi-piece messages per segment
    const ring = await startChildren(ringSpecs(N, { jobId: "job-big", token: "tok", timeoutMs: 20_000, chunkBytes: 4108, bucketBytes: 40_000, cases, transport }));
    const res = await ring.results();
    for (const ci of [0, 1]) {
      const all = okTensors(res, ci);
      assertIdenticalBits(all);
      const c = cases[ci];
      all[0].forEach((got, t) => {
        const ref = referenceSum(c, N, t);
        for (let i = 0; i < ref.length; i++) {
          const want = c.op === "sum" ? Math.fround(ref[i]) : Math.fround(Math.fround(ref[i]) / N);
          if (got[i] !== want) assert.fail(`case ${c.op} tensor ${c.tensors[t].name}[${i}]: got ${got[i]}, want ${want}`);
        }
      });
    }
    const normal = okTensors(res, 2);
    assertIdenticalBits(normal);
    normal[0].forEach((got, t) => {
      const ref = referenceSum(cases[2], N, t);
      for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(got[i] - ref[i]) <= 1e-5 * (1 + Math.abs(ref[i])), `normal tensor ${t}[${i}]`);
    });
  });
}

/** A ring whose ranks use different transports: sums must be exact and identical on every rank. */
async function mixedRing(kinds: readonly ("grpc" | "http2" | "http2-raw" | "http2-socket")[], jobId: string, seed: number): Promise<void> {
  const N = kinds.length;
  const cases: CaseSpec[] = [
    { step: 0, op: "sum", tensors: BIG, seed, values: "int" },
    { step: 1, op: "sum", tensors: TENSORS, seed: seed + 1, values: "int" },
  ];
  const specs = ringSpecs(N, { jobId, token: "tok", timeoutMs: 20_000, chunkBytes: 4108, bucketBytes: 40_000, cases }).map((s, r) => ({ ...s, transport: kinds[r] }));
  const res = await (await startChildren(specs)).results();
  for (const ci of [0, 1]) {
    const all = okTensors(res, ci);
    assertIdenticalBits(all);
    all[0].forEach((got, t) => {
      const ref = referenceSum(cases[ci], N, t);
      for (let i = 0; i < ref.length; i++) if (got[i] !== Math.fround(ref[i])) assert.fail(`case ${ci} tensor ${t}[${i}]: got ${got[i]}, want ${ref[i]}`);
    });
  }
}

test("mixed ring (http2-raw, http2, grpc, http2-raw): every kind pulls from and serves every other kind, sums exact", async () => {
  // rank r pulls from rank r-1: rank 0's raw client from rank 3's node:http2 server, rank 1 (node:http2 client)
  // and rank 2 (grpc-js client) from node:http2 servers, rank 3's raw client from rank 2's grpc-js server
  await mixedRing(["http2-raw", "http2", "grpc", "http2-raw"], "job-mix", 41);
});

test("mixed ring (http2-socket, grpc, http2-socket, http2): the raw-socket server serves grpc-js and node:http2 clients", async () => {
  // rank 1 (grpc-js client, 16 KiB frames) and rank 3 (node:http2 client) pull from raw-socket servers; rank 2's
  // raw client pulls from rank 1's grpc-js server, rank 0's from rank 3's node:http2 server
  await mixedRing(["http2-socket", "grpc", "http2-socket", "http2"], "job-mix2", 51);
});

for (const transport of TRANSPORTS) for (const [kind, chunkBytes] of [["fp16", 256], ["bf16", 256], ["fp16", 8192], ["bf16", 8192]] as const) {
  test(`${transport} N=3 ${kind} wire compression, ${chunkBytes}-byte chunks: within N*u*sum|x| of the exact sum, identical bits on every rank`, async () => {
    const N = 3;
    const cases: CaseSpec[] = [
      { step: 5, op: "sum", tensors: TENSORS, seed: 21, values: "normal" },
      { step: 6, op: "avg", tensors: TENSORS, seed: 22, values: "normal" },
    ];
    const tensors = chunkBytes > 1024 ? BIG : TENSORS;
    cases.forEach((c) => (c.tensors = tensors));
    const ring = await startChildren(ringSpecs(N, { jobId: "job-half", token: "tok", timeoutMs: 20_000, chunkBytes, bucketBytes: chunkBytes > 1024 ? 60_000 : 4096, compression: kind, cases, transport }));
    const res = await ring.results();
    const u = HALF_UNIT_ROUNDOFF[kind];
    for (const ci of [0, 1]) {
      const c = cases[ci];
      const all = okTensors(res, ci);
      assertIdenticalBits(all);
      let maxErr = 0;
      all[0].forEach((got, t) => {
        const ref = referenceSum(c, N, t);
        const absSum = new Float64Array(ref.length);
        for (let r = 0; r < N; r++) inputTensor(c, r, t).forEach((x, i) => (absSum[i] += Math.abs(x)));
        for (let i = 0; i < ref.length; i++) {
          // N roundings to 16 bits (N-1 partial sums + the final value) and N-1 float32 additions
          const scale = c.op === "avg" ? 1 / N : 1;
          const bound = ((N * u + N * 2 ** -24) * absSum[i] * 1.001 + N * HALF_SUBNORMAL_ABS_ERROR[kind]) * scale;
          const err = Math.abs(got[i] - ref[i] * scale);
          maxErr = Math.max(maxErr, err / (absSum[i] * scale));
          if (err > bound) assert.fail(`${kind} ${c.op} tensor ${t}[${i}]: error ${err} > bound ${bound}`);
        }
      });
      assert.ok(maxErr > u / 8, `${kind}: results really went through 16 bits (max relative error ${maxErr})`);
    }
  });
}
