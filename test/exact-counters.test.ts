/**
 * Half-precision wire compression (communication.compression: fp16 | bf16) rounds what it sends. The trainer's
 * counters (target counts, loss sums) must not be rounded: the update divides by the global target count. Real
 * rings on loopback (in this process, and with the ring in its own thread as with communication.overlap).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RingCommunicator } from "../worker/collective/ring-communicator";
import { ThreadedRing, sharedFloat32, type Collective } from "../worker/collective/ring-thread";
import { RingReducer } from "../worker/tfjs/ring-reducer";
import { CompressingReducer, DEFAULT_GRADIENT_COMPRESSION } from "../worker/compression/compressing-reducer";
import { roundToHalf } from "../shared/codecs/half";

let jobCounter = 0;
const N = 2;
/** Per-rank counters whose sums half precision cannot hold: 1001 + 1002 = 2003 (bf16 and fp16 round it), 0.1 + 0.2. */
const COUNTERS = [[1001, 0.1, 3, 12345.678], [1002, 0.2, 4, 0.001]];
/** Gradient values whose sum is not a bf16 number, so a rounded result shows that compression was on. */
const GRAD = [[1.0001, -3.14159], [2.0002, 1]];

async function rings(threaded: boolean): Promise<Collective[]> {
  const jobId = `exact-counters-${process.pid}-${jobCounter++}`;
  const opts = (rank: number) => ({ jobId, token: "tok", rank, worldSize: N, timeoutMs: 20_000, chunkBytes: 4096, bucketBytes: 1 << 20, compression: "bf16" as const });
  const comms: Collective[] = await Promise.all(Array.from({ length: N }, (_, rank) => threaded ? ThreadedRing.listen(opts(rank)) : RingCommunicator.listen(opts(rank))));
  const addresses = comms.map((c) => c.address);
  await Promise.all(comms.map((c) => c.connect(addresses)));
  return comms;
}

function f32(values: readonly number[], shared: boolean): Float32Array {
  const a = shared ? sharedFloat32(values.length) : new Float32Array(values.length);
  a.set(values);
  return a;
}

/** The float32 sum of the ranks' values, element by element. */
function exactSum(perRank: readonly (readonly number[])[]): Float32Array {
  const out = new Float32Array(perRank[0].length);
  for (const v of perRank) for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i] + v[i]);
  return out;
}

test("exact: true sums float32 over a bf16 ring; without it the same values come back rounded", async () => {
  const comms = await rings(false);
  try {
    const exact = COUNTERS.map((c) => f32(c, false));
    await Promise.all(comms.map((c, r) => c.allReduce([{ name: "counters", data: exact[r] }], { step: 0, op: "sum", exact: true })));
    for (const r of [0, 1]) assert.deepEqual(exact[r], exactSum(COUNTERS), `rank ${r}: exact sums`);
    const rounded = COUNTERS.map((c) => f32(c, false));
    await Promise.all(comms.map((c, r) => c.allReduce([{ name: "counters", data: rounded[r] }], { step: 1, op: "sum" })));
    assert.notEqual(rounded[0][0], 2003, "bf16 on the wire rounds 2003 (the check above can fail)");
  } finally {
    await Promise.all(comms.map((c) => c.close()));
  }
});

for (const threaded of [false, true]) {
  test(`RingReducer over a bf16 ring${threaded ? " in its own thread (overlap)" : ""}: gradients are compressed, counters exact`, async () => {
    const comms = await rings(threaded);
    try {
      const reducers = comms.map((c) => new RingReducer(c, true));
      const grads = GRAD.map((g) => [{ name: "w", data: f32(g, threaded) }]);
      const counters = COUNTERS.map((c) => f32(c, threaded));
      if (threaded) {
        // as the trainer does with overlap: begin, hand over each gradient, then the counters once the backward pass is over
        await Promise.all(reducers.map((red, r) => {
          const pending = red.begin(grads[r], counters[r], 0);
          pending.gradientReady(0);
          pending.countersReady();
          return pending.done;
        }));
      } else {
        await Promise.all(reducers.map((red, r) => red.reduce(grads[r], counters[r], 0)));
      }
      const wantGrad = exactSum(GRAD);
      roundToHalf("bf16", wantGrad);
      for (const r of [0, 1]) {
        assert.deepEqual(counters[r], exactSum(COUNTERS), `rank ${r}: counters summed in float32`);
        assert.deepEqual(grads[r][0].data, wantGrad, `rank ${r}: gradients went as bf16`);
        assert.equal(reducers[r].lastBytes, 4 * (GRAD[0].length + COUNTERS[0].length), "lastBytes counts gradients and counters");
      }
      // the counts summed before an mlm+nsp step's backward pass are exact too
      const counts = COUNTERS.map((c) => f32(c, threaded));
      await Promise.all(reducers.map((red, r) => red.sumCounts(counts[r], 1)));
      assert.deepEqual(counts[0], exactSum(COUNTERS));
    } finally {
      await Promise.all(comms.map((c) => c.close()));
    }
  });
}

test("CompressingReducer (PowerSGD) over a bf16 ring keeps the counters exact", async () => {
  const comms = await rings(false);
  try {
    const reducers = comms.map((c) => new CompressingReducer(c as RingCommunicator, { ...DEFAULT_GRADIENT_COMPRESSION, method: "powersgd" }, true));
    const counters = COUNTERS.map((c) => f32(c, false));
    await Promise.all(reducers.map((red, r) => red.reduce([{ name: "b", data: f32(GRAD[r], false) }], counters[r], 0)));
    for (const r of [0, 1]) assert.deepEqual(counters[r], exactSum(COUNTERS), `rank ${r}`);
  } finally {
    await Promise.all(comms.map((c) => c.close()));
  }
});
