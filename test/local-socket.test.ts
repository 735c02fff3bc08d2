/**
 * Unix sockets between ring neighbours on the same machine (communication.unix_sockets): real rank processes on
 * loopback connect over the neighbour's abstract Unix socket, give the same bits as over TCP, and fall back to TCP
 * where a neighbour serves none.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startChildren, ringSpecs } from "./helpers/allreduce-harness";
import { decodeTensor, referenceSum, type CaseSpec, type ChildResult } from "./helpers/allreduce-spec";
import { localSocketName, localSocketsSupported } from "../worker/transport/local-socket";

const CASES: CaseSpec[] = [
  { step: 0, op: "sum", tensors: [{ name: "a", length: 20_011 }, { name: "b", length: 3 }, { name: "empty", length: 0 }], seed: 61, values: "int" },
  { step: 1, op: "avg", tensors: [{ name: "c", length: 9_999 }], seed: 62, values: "normal" },
];

/** Runs a 3-rank ring (rank r's Unix sockets per `local[r]`); returns every rank's result. */
async function ring(jobId: string, local: readonly boolean[]): Promise<ChildResult[]> {
  const specs = ringSpecs(local.length, { jobId, token: "tok", timeoutMs: 20_000, chunkBytes: 8192, bucketBytes: 60_000, cases: CASES, transport: "http2-socket" })
    .map((s, r) => ({ ...s, localSockets: local[r] }));
  const res = await (await startChildren(specs)).results();
  return res.map((r, i) => {
    assert.ok(r !== null, `rank ${i} wrote no result`);
    for (const c of r.cases) assert.ok(c.ok, `rank ${i}: ${JSON.stringify(c)}`);
    return r;
  });
}

function tensorsOf(r: ChildResult, ci: number): Float32Array[] {
  const c = r.cases[ci];
  assert.ok(c.ok);
  return c.tensors.map(decodeTensor);
}

test("socket names: one per job and advertised address, host case-insensitive, in the abstract namespace", () => {
  const a = localSocketName("job", "127.0.0.1:5000");
  assert.ok(a.startsWith("\0ringtrain-"));
  assert.equal(a, localSocketName("job", "127.0.0.1:5000"));
  assert.equal(localSocketName("job", "Node-A:5000"), localSocketName("job", "node-a:5000"));
  assert.equal(localSocketName("job", "[::1]:5000"), localSocketName("job", "[::1]:5000"));
  assert.notEqual(a, localSocketName("job", "127.0.0.1:5001"));
  assert.notEqual(a, localSocketName("other-job", "127.0.0.1:5000"));
});

test("same-host neighbours connect over Unix sockets, with the same result bits as over TCP", { skip: !localSocketsSupported() && "Unix socket names need Linux" }, async () => {
  const unix = await ring("job-uds", [true, true, true]);
  assert.deepEqual(unix.map((r) => r.via), ["unix", "unix", "unix"]);
  const tcp = await ring("job-uds", [false, false, false]);
  assert.deepEqual(tcp.map((r) => r.via), ["tcp", "tcp", "tcp"]);
  for (const ci of [0, 1]) {
    for (let r = 0; r < 3; r++) {
      const [u, t] = [tensorsOf(unix[r], ci), tensorsOf(tcp[r], ci)];
      u.forEach((x, i) => assert.deepEqual(new Uint8Array(x.buffer), new Uint8Array(t[i].buffer), `case ${ci} rank ${r} tensor ${i}: other bits than over TCP`));
    }
  }
  tensorsOf(unix[0], 0).forEach((got, t) => {
    const want = referenceSum(CASES[0], 3, t);
    for (let i = 0; i < want.length; i++) if (got[i] !== Math.fround(want[i])) assert.fail(`tensor ${t}[${i}]: ${got[i]}, want ${want[i]}`);
  });
});

test("a neighbour without a Unix socket is reached over TCP; the others keep theirs", { skip: !localSocketsSupported() && "Unix socket names need Linux" }, async () => {
  // rank 1 serves no Unix socket and dials none: rank 1 pulls from rank 0 over TCP, rank 2 from rank 1 over TCP
  // (its Unix dial finds nothing), rank 0 from rank 2 over a Unix socket
  const res = await ring("job-uds-mixed", [true, false, true]);
  assert.deepEqual(res.map((r) => r.via), ["unix", "tcp", "tcp"]);
  for (let r = 1; r < 3; r++) assert.deepEqual(tensorsOf(res[r], 0), tensorsOf(res[0], 0));
});
