/**
 * Ring all-reduce failure behaviour with real processes on 127.0.0.1: layout mismatch, wrong step, a SIGKILLed
 * rank, a stalled rank, unauthenticated or malformed calls and raw garbage on the port, and a lying neighbour
 * sending malformed chunks. Every failure must be a clear error on every rank, well within the deadline. The
 * dead-peer, stalled-peer and lying-peer cases also run with the "http2-raw" transport (raw-socket receive) and
 * the "http2-socket" transport (raw-socket receive and send).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { startChildren, ringSpecs } from "./helpers/allreduce-harness";
import { referenceSum, decodeTensor, inputTensor, type CaseSpec, type ChildResult, type ChildError } from "./helpers/allreduce-spec";
import { roguePull, rogueAbort, garbageTcp, RogueRank, encodeChunkPb } from "./helpers/allreduce-rogue";
import { planBuckets, layoutSalt, DEFAULT_BUCKET_BYTES } from "../worker/collective/bucket-plan";
import { DEFAULT_CHUNK_BYTES } from "../worker/collective/ring-communicator";
import { RingPhase, WireDtype } from "../worker/transport/chunk-wire";

const T = [{ name: "w", length: 301 }, { name: "b", length: 7 }];
/** Transports the dead-peer and lying-peer tests run with: the default, and the raw-socket receive path. */
const FAULT_TRANSPORTS = [undefined, "http2-raw", "http2-socket"] as const;
const named = (title: string, t: (typeof FAULT_TRANSPORTS)[number]): string => (t === undefined ? title : `${title} [${t}]`);

function failure(r: ChildResult | null, rank: number): ChildError {
  assert.ok(r, `rank ${rank} wrote a result`);
  const last = r.cases[r.cases.length - 1];
  assert.ok(last && !last.ok, `rank ${rank} should have failed, got ${JSON.stringify(r.cases.map((c) => c.ok))}`);
  return last.error;
}

function assertCorrect(r: ChildResult | null, rank: number, ci: number, c: CaseSpec, N: number): void {
  assert.ok(r, `rank ${rank} wrote a result`);
  const cr = r.cases[ci];
  if (!cr?.ok) assert.fail(`rank ${rank} case ${ci} failed: ${cr ? (cr.ok ? "" : cr.error.message) : "missing"}`);
  cr.tensors.map(decodeTensor).forEach((got, t) => {
    const ref = referenceSum(c, N, t);
    for (let i = 0; i < ref.length; i++) if (got[i] !== Math.fround(ref[i])) assert.fail(`rank ${rank} tensor ${t}[${i}] = ${got[i]}, want ${ref[i]}`);
  });
}

test("bucket layout mismatch: every rank fails fast with an error that says so", async () => {
  const N = 3;
  const good: CaseSpec = { step: 0, op: "sum", tensors: T, seed: 1, values: "int" };
  const specs = ringSpecs(N, { jobId: "job-lm", token: "tok", timeoutMs: 20_000, chunkBytes: 64, cases: [good, { ...good, step: 1 }] });
  specs[1] = { ...specs[1], cases: [good, { ...good, step: 1, tensors: [{ name: "w", length: 302 }, T[1]] }] };
  const res = await (await startChildren(specs)).results();
  for (let r = 0; r < N; r++) {
    assertCorrect(res[r], r, 0, good, N);
    const e = failure(res[r], r);
    assert.equal(e.name, "CollectiveError");
    assert.match(e.message, /layout mismatch/, `rank ${r}: ${e.message}`);
    assert.equal(e.step, 1);
    assert.ok(e.elapsedMs < 10_000, `rank ${r} failed after ${e.elapsedMs} ms, deadline 20000`);
  }
  // at least one rank saw a differing layout first-hand (the others learn it through Abort)
  assert.ok(res.some((r, i) => failure(r, i).kind === "layout-mismatch"));
});

test("a rank at a different step: clear error naming the step on every rank", async () => {
  const N = 2;
  const c: CaseSpec = { step: 4, op: "sum", tensors: T, seed: 2, values: "int" };
  const specs = ringSpecs(N, { jobId: "job-step", token: "tok", timeoutMs: 20_000, cases: [c] });
  specs[0] = { ...specs[0], cases: [{ ...c, step: 5 }] };
  const res = await (await startChildren(specs)).results();
  for (let r = 0; r < N; r++) {
    const e = failure(res[r], r);
    assert.match(e.message, /wrong step/, `rank ${r}: ${e.message}`);
    assert.ok(e.elapsedMs < 10_000);
  }
});

for (const transport of FAULT_TRANSPORTS) test(named("SIGKILL of one rank mid-collective: the others fail well within the deadline, naming it", transport), async () => {
  const N = 3;
  const timeoutMs = 30_000;
  const c0: CaseSpec = { step: 0, op: "sum", tensors: T, seed: 3, values: "int" };
  const c1: CaseSpec = { step: 1, op: "sum", tensors: [{ name: "x", length: 200_000 }], seed: 4, values: "int", announce: true };
  const specs = ringSpecs(N, { jobId: "job-kill", token: "tok", timeoutMs, chunkBytes: 4096, cases: [c0, c1], transport });
  specs[1] = { ...specs[1], cases: [c0, { ...c1, stall: true }] };
  const ring = await startChildren(specs);
  await ring.waitFor("STARTED 1", [0, 2]);
  await ring.waitFor("STALLED 1", [1]);
  ring.procs[1].kill("SIGKILL");
  const res = await ring.results();
  assert.equal(res[1], null, "the killed rank wrote nothing");
  for (const r of [0, 2]) {
    assertCorrect(res[r], r, 0, c0, N);
    const e = failure(res[r], r);
    assert.equal(e.rank, 1, `rank ${r} blames rank 1: ${e.message}`);
    assert.equal(e.address, ring.addresses[1]);
    assert.match(e.message, new RegExp(`rank 1 \\(${ring.addresses[1]}\\)`));
    assert.ok(["begin", "reduce-scatter", "all-gather"].includes(String(e.phase)), `phase ${e.phase}`);
    assert.ok(e.elapsedMs < timeoutMs / 2, `rank ${r} took ${e.elapsedMs} ms`);
  }
});

for (const transport of FAULT_TRANSPORTS) test(named("a stalled rank: the others fail before the deadline, naming it", transport), async () => {
  const N = 3;
  const timeoutMs = 3000;
  const c: CaseSpec = { step: 0, op: "sum", tensors: T, seed: 5, values: "int" };
  const specs = ringSpecs(N, { jobId: "job-stall", token: "tok", timeoutMs, cases: [c], transport });
  specs[1] = { ...specs[1], cases: [{ ...c, stall: true }] };
  const ring = await startChildren(specs);
  await ring.waitFor("STALLED 0", [1]);
  const outcome = Promise.all([0, 2].map((r) => new Promise<void>((resolve) => ring.procs[r].on("exit", () => resolve()))));
  await outcome;
  ring.procs[1].kill("SIGKILL");
  const res = await ring.results();
  for (const r of [0, 2]) {
    const e = failure(res[r], r);
    assert.equal(e.rank, 1, `rank ${r}: ${e.message} (${e.elapsedMs} ms)`);
    assert.ok(e.elapsedMs <= timeoutMs + 200, `rank ${r} took ${e.elapsedMs} ms for a ${timeoutMs} ms deadline`);
  }
});

test("unauthenticated / wrong-job / wrong-rank calls and raw garbage are rejected; the ring keeps working", async () => {
  const N = 4;
  const c0: CaseSpec = { step: 0, op: "sum", tensors: T, seed: 6, values: "int", gate: true };
  const c1: CaseSpec = { step: 1, op: "sum", tensors: T, seed: 7, values: "int" };
  const ring = await startChildren(ringSpecs(N, { jobId: "job-auth", token: "secret", timeoutMs: 20_000, chunkBytes: 64, cases: [c0, c1] }), { sendAddresses: false });
  const target = ring.addresses[1];
  const pullReq = { jobId: "job-auth", receiverRank: 2, senderRank: 1, worldSize: N };
  const expectReject = async (p: Promise<{ code: number; details: string }>, code: grpc.status, re: RegExp): Promise<void> => {
    const o = await p;
    assert.equal(o.code, code, `expected ${grpc.status[code]}, got ${o.code} ${o.details}`);
    assert.match(o.details, re);
  };
  const attacks = async (): Promise<void> => {
    await expectReject(roguePull(target, null, pullReq), grpc.status.UNAUTHENTICATED, /token/);
    await expectReject(roguePull(target, "wrong", pullReq), grpc.status.UNAUTHENTICATED, /token/);
    await expectReject(roguePull(target, "secret", { ...pullReq, jobId: "other-job" }), grpc.status.PERMISSION_DENIED, /job id "other-job"/);
    await expectReject(roguePull(target, "secret", { ...pullReq, worldSize: 5 }), grpc.status.FAILED_PRECONDITION, /world size 5/);
    await expectReject(roguePull(target, "secret", { ...pullReq, senderRank: 0 }), grpc.status.FAILED_PRECONDITION, /expects rank 0/);
    await expectReject(roguePull(target, "secret", { ...pullReq, receiverRank: 3 }), grpc.status.PERMISSION_DENIED, /right neighbour \(rank 2\)/);
    const abortReq = { jobId: "job-auth", senderRank: 0, collectiveId: 0, step: 0, culpritRank: 0, culpritAddress: "", phase: "x", reason: "rogue" };
    await expectReject(rogueAbort(target, "wrong", abortReq), grpc.status.UNAUTHENTICATED, /token/);
    await expectReject(rogueAbort(target, "secret", { ...abortReq, jobId: "nope" }), grpc.status.PERMISSION_DENIED, /job id/);
    await expectReject(rogueAbort(target, "secret", { ...abortReq, senderRank: 3 }), grpc.status.PERMISSION_DENIED, /not a neighbour/);
    assert.equal(await garbageTcp(target, Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + "\u0000garbage".repeat(100))), "closed");
    assert.equal(await garbageTcp(target, Buffer.alloc(70_000, 0xab)), "closed");
  };
  await attacks(); // before the ring connects
  ring.release();
  await ring.waitFor("GATE 0", [0, 1, 2, 3]);
  // the ring is connected now: even a caller holding the token cannot take over rank 2's stream
  await expectReject(roguePull(target, "secret", pullReq), grpc.status.ALREADY_EXISTS, /already holds the stream/);
  await attacks(); // while connected
  ring.sendLine("go");
  const res = await ring.results();
  for (let r = 0; r < N; r++) {
    assertCorrect(res[r], r, 0, c0, N);
    assertCorrect(res[r], r, 1, c1, N);
  }
});

for (const transport of FAULT_TRANSPORTS) test(named("a lying left neighbour (a grpc-js server): malformed chunks are rejected with a clear error and touch no memory", transport), async () => {
  const N = 2;
  const jobId = "job-rogue";
  const token = "tok";
  const c: CaseSpec = { step: 3, op: "sum", tensors: T, seed: 8, values: "int" };
  const chunkElems = DEFAULT_CHUNK_BYTES / 4;
  const plan = planBuckets(T.map((t) => ({ name: t.name, length: t.length })), DEFAULT_BUCKET_BYTES, layoutSalt(N, 1, WireDtype.FLOAT32, chunkElems));
  const layoutHash = BigInt(`0x${plan.layoutHash}`).toString();
  const L = plan.totalElements; // one bucket of 308 elements: segment 0 = [0,154), segment 1 = [154,308)
  const base = { jobId, senderRank: 0, collectiveId: 0, step: 3, layoutHash, op: 1, dtype: WireDtype.FLOAT32 };
  const begin = encodeChunkPb({ ...base, phase: RingPhase.BEGIN, bucketCount: 1, totalElements: L });
  // what rank 1 expects first from rank 0: reduce-scatter hop 0 of segment 0, chunk 0, elements [0, 154)
  const good = { ...base, phase: RingPhase.REDUCE_SCATTER, hop: 0, segment: 0, chunkIndex: 0, elementOffset: 0, elementCount: 154, chunkBytes: 616, payload: Buffer.alloc(616, 1) };
  const variants: { name: string; messages: Buffer[]; re: RegExp }[] = [
    { name: "wrong job id", messages: [begin, encodeChunkPb({ ...good, jobId: "other" })], re: /wrong job id "other"/ },
    { name: "wrong step", messages: [begin, encodeChunkPb({ ...good, step: 4 })], re: /wrong step 4/ },
    { name: "wrong length", messages: [begin, encodeChunkPb({ ...good, payload: Buffer.alloc(612, 1) })], re: /payload length 612 bytes, chunk_bytes says 616/ },
    { name: "chunk_bytes lie", messages: [begin, encodeChunkPb({ ...good, chunkBytes: 1000, payload: Buffer.alloc(1000) })], re: /chunk_bytes 1000, expected 616/ },
    { name: "index out of range", messages: [begin, encodeChunkPb({ ...good, chunkIndex: 7 })], re: /chunk index 7 out of range/ },
    { name: "bucket out of range", messages: [begin, encodeChunkPb({ ...good, bucket: 9 })], re: /bucket index 9 out of range/ },
    { name: "offset outside segment", messages: [begin, encodeChunkPb({ ...good, elementOffset: 300 })], re: /covers elements \[300/ },
    { name: "wrong sender rank", messages: [begin, encodeChunkPb({ ...good, senderRank: 5 })], re: /claims sender rank 5/ },
    { name: "garbage frame", messages: [begin, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3])], re: /malformed Chunk message: truncated/ },
    { name: "layout hash mismatch", messages: [encodeChunkPb({ ...base, layoutHash: "12345", phase: RingPhase.BEGIN, bucketCount: 1, totalElements: L })], re: /layout mismatch/ },
  ];
  await Promise.all(variants.map(async (v) => {
    const rogue = new RogueRank({ jobId, token, rank: 0, worldSize: N, messages: v.messages });
    const rogueAddr = await rogue.listen();
    const ring = await startChildren([{ jobId, token, rank: 1, worldSize: N, timeoutMs: 20_000, cases: [c], transport }], { sendAddresses: false });
    rogue.pullFrom(ring.addresses[0]);
    ring.release([rogueAddr, ring.addresses[0]]);
    const [res] = await ring.results();
    rogue.close();
    const e = failure(res, 1);
    assert.equal(e.rank, 0, `${v.name}: blames rank 0`);
    assert.equal(e.address, rogueAddr, `${v.name}: names the address`);
    assert.match(e.message, v.re, `${v.name}: ${e.message}`);
    assert.ok(e.elapsedMs < 10_000, `${v.name}: took ${e.elapsedMs} ms`);
    const last = res!.cases[res!.cases.length - 1];
    assert.ok(!last.ok && last.tensorsAfter);
    last.tensorsAfter.map(decodeTensor).forEach((t, i) => assert.deepEqual(t, inputTensor(c, 1, i), `${v.name}: tensor ${i} untouched`));
  }));
});
