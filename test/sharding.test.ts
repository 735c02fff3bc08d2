import { test } from "node:test";
import assert from "node:assert/strict";
import { DataSharder, evalShard } from "../shared/data/sharding";

test("over an epoch every sequence is used exactly once across all ranks, for any world size", () => {
  const n = 103; // not a multiple of the global batch: batches span epoch boundaries
  const B = 12;
  for (const world of [1, 2, 3, 4]) {
    const sharder = new DataSharder(n, B, 5);
    const seen = new Map<number, number[]>(); // epoch -> indices
    for (let step = 1; step <= Math.ceil((3 * n) / B); step++) {
      for (let r = 0; r < world; r++) {
        const { indices, epochs } = sharder.rankSlice(step, r, world);
        assert.equal(indices.length, B / world);
        indices.forEach((idx, i) => seen.set(epochs[i], [...(seen.get(epochs[i]) ?? []), idx]));
      }
    }
    for (const e of [0, 1]) {
      const idx = seen.get(e)!.slice().sort((a, b) => a - b);
      assert.deepEqual(idx, [...Array(n).keys()], `world ${world}, epoch ${e}: each sequence exactly once`);
    }
  }
});

test("the global batch of a step is the same whatever the world size, and epochs are reshuffled", () => {
  const a = new DataSharder(50, 12, 1);
  const global = (world: number, step: number): number[] =>
    [...Array(world).keys()].flatMap((r) => a.rankSlice(step, r, world).indices);
  for (const step of [1, 4, 9]) {
    assert.deepEqual(global(2, step), global(1, step));
    assert.deepEqual(global(3, step), global(1, step));
  }
  const epoch0 = [...Array(4).keys()].flatMap((s) => global(1, s + 1)).slice(0, 48);
  const b = new DataSharder(50, 50, 1);
  assert.notDeepEqual(b.rankSlice(1, 0, 1).indices, b.rankSlice(2, 0, 1).indices, "a new permutation each epoch");
  assert.equal(new Set(epoch0).size, 48);
  assert.notDeepEqual(new DataSharder(50, 12, 2).rankSlice(1, 0, 1).indices, a.rankSlice(1, 0, 1).indices, "the seed matters");
});

test("evaluation shards cover every sequence once", () => {
  for (const world of [1, 2, 3, 5]) {
    const all = [...Array(world).keys()].flatMap((r) => evalShard(17, r, world));
    assert.deepEqual(all, [...Array(17).keys()]);
  }
});

test("a world size that does not divide the global batch is refused", () => {
  assert.throws(() => new DataSharder(10, 12, 0).rankSlice(1, 0, 5), /not divisible by world size 5/);
});
