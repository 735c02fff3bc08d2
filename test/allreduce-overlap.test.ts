/**
 * Overlap support of the ring (startAllReduce): tensors become final one at a time, in a different random order
 * on every rank, and a bucket may only travel once all of its tensors are final here. Real processes, real
 * peer connections on 127.0.0.1; both the communicator in the child's main thread and in a collective thread
 * (ThreadedRing, with the main thread busy-blocked as during a backward pass). Inputs start as NaN, so a bucket
 * sent too early would poison every rank's result.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startChildren, ringSpecs } from "./helpers/allreduce-harness";
import { referenceSum, decodeTensor, type CaseSpec, type ChildResult } from "./helpers/allreduce-spec";

const TENSORS = [
  { name: "layer1.w", length: 3001 }, { name: "layer1.b", length: 7 }, { name: "empty", length: 0 },
  { name: "layer0.w", length: 2500 }, { name: "layer0.b", length: 1 }, { name: "emb", length: 9000 },
];

function results(res: (ChildResult | null)[], ci: number): Float32Array[][] {
  return res.map((r, rank) => {
    assert.ok(r, `rank ${rank} wrote a result`);
    const c = r.cases[ci];
    assert.ok(c, `rank ${rank} ran case ${ci}`);
    if (!c.ok) assert.fail(`rank ${rank} case ${ci} failed: ${c.error.message}`);
    return c.tensors.map(decodeTensor);
  });
}

function checkExact(res: (ChildResult | null)[], cases: CaseSpec[], N: number): void {
  cases.forEach((c, ci) => {
    const all = results(res, ci);
    for (let r = 1; r < N; r++) all[r].forEach((t, i) => assert.deepEqual(Buffer.from(t.buffer), Buffer.from(all[0][i].buffer), `case ${ci}: rank ${r} tensor ${i} differs from rank 0`));
    all[0].forEach((got, t) => {
      const ref = referenceSum(c, N, t);
      for (let i = 0; i < ref.length; i++) {
        const want = c.op === "sum" ? Math.fround(ref[i]) : Math.fround(Math.fround(ref[i]) / N);
        if (got[i] !== want) assert.fail(`case ${ci} tensor ${c.tensors[t].name}[${i}]: got ${got[i]}, want ${want}`);
      }
    });
  });
}

for (const threaded of [false, true]) for (const N of [2, 3]) {
  test(`${threaded ? "collective thread" : "main thread"} N=${N}: tensors ready one by one in random order per rank, sums exact and identical`, async () => {
    const cases: CaseSpec[] = [
      // sleeps between tensors: the event loop is free, buckets start as they complete
      { step: 0, op: "sum", tensors: TENSORS, seed: 41, values: "int", gated: { seed: 1, maxDelayMs: 15 } },
      { step: 1, op: "avg", tensors: TENSORS, seed: 42, values: "int", gated: { seed: 2, maxDelayMs: 5 } },
      // an ordinary all-reduce between gated ones on the same ring
      { step: 2, op: "sum", tensors: TENSORS, seed: 43, values: "int" },
      { step: 3, op: "sum", tensors: [], seed: 44, values: "int", gated: { seed: 3, maxDelayMs: 1 } },
      ...(threaded ? [
        // the main thread busy-blocked between tensors (a backward pass): only the collective thread can move data
        { step: 4, op: "sum" as const, tensors: TENSORS, seed: 45, values: "int" as const, gated: { seed: 4, maxDelayMs: 0, blockMs: 20 } },
      ] : []),
    ];
    // 256-byte chunks, 8 KB buckets: several buckets, some holding several tensors, many chunks each
    const ring = await startChildren(ringSpecs(N, { jobId: "job-overlap", token: "tok", timeoutMs: 20_000, chunkBytes: 256, bucketBytes: 8000, cases, threaded }));
    checkExact(await ring.results(), cases, N);
  });
}

test("collective thread: a dead neighbour is named by rank in the error the main thread receives", async () => {
  const N = 3;
  const cases: CaseSpec[] = [
    { step: 0, op: "sum", tensors: TENSORS, seed: 51, values: "int", gated: { seed: 5, maxDelayMs: 2 } },
    { step: 1, op: "sum", tensors: TENSORS, seed: 52, values: "int", gated: { seed: 6, maxDelayMs: 2 }, announce: true },
  ];
  const specs = ringSpecs(N, { jobId: "job-overlap-dead", token: "tok", timeoutMs: 20_000, chunkBytes: 256, bucketBytes: 8000, cases, threaded: true });
  // rank 1 stalls instead of its second collective, then is killed
  specs[1] = { ...specs[1], cases: [cases[0], { ...cases[1], stall: true }] };
  const ring = await startChildren(specs);
  // every rank finished step 0 (ranks 0 and 2 announce step 1; rank 1 stalls instead of it) before the kill
  await ring.waitFor("STARTED 1", [0, 2]);
  await ring.waitFor("STALLED 1", [1]);
  ring.procs[1].kill("SIGKILL");
  const res = await ring.results();
  for (const r of [0, 2]) {
    const c = res[r]?.cases[1];
    assert.ok(c && !c.ok, `rank ${r} reports a failure of step 1`);
    assert.equal(c.error.name, "CollectiveError", `rank ${r}: ${c.error.message}`);
    assert.equal(c.error.rank, 1, `rank ${r} blames rank 1: ${c.error.message}`);
    assert.equal(c.error.step, 1);
  }
});
