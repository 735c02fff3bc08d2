/**
 * Overlap of the gradient all-reduce with the backward pass (Trainer option `overlap`, shared/model/gradient-tap.ts):
 * gradients reach the reducer one by one during the backward pass, top layers first, each exactly once and
 * complete; the result is bit-identical to the trainer without overlap (tied embeddings and accumulation
 * included). The end-to-end case runs `launch` with 2 workers with the ring in its own thread.
 */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { selectBackend } from "../shared/backend/select";
import { BertModel } from "../shared/model/bert";
import { getParamValues } from "../shared/model/hf";
import { IdentityReducer, type NamedGradient, type OverlappingReducer, type PendingReduction } from "../shared/train/reducer";
import { Trainer } from "../shared/train/trainer";
import { randomBatch, sliceBatch, tinyConfig } from "./helpers/model-fixtures";
import { finalParams, maxAbsDiff, runLaunch, tempDir, tinyArgs } from "./helpers/launch";

before(async () => {
  await selectBackend("wasm");
});

const schedule = { peakLr: 1e-3, warmupSteps: 1, totalSteps: 10, decay: "linear" as const };

async function trainSteps(overlap: boolean): Promise<{ params: Map<string, Float32Array>; grads: Float32Array[] }> {
  const cfg = tinyConfig({ numHiddenLayers: 2 });
  const model = BertModel.create(cfg, 5);
  const trainer = new Trainer(model, { schedule, maxGradNorm: 1, dropoutSeed: 3, overlap }, new IdentityReducer());
  let lastGrads: Float32Array[] = [];
  for (let step = 0; step < 3; step++) {
    const batch = randomBatch(cfg, 8, 16, 100 + step, 0.3, 3);
    // two micro-batches of 4: the first accumulates, the second (last) overlaps
    await trainer.trainStep([sliceBatch(batch, 0, 4), sliceBatch(batch, 4, 4)]);
  }
  // one more accumulation without the update, to compare the raw gradient buffers too
  const batch = randomBatch(cfg, 4, 16, 999, 0.3, 0);
  trainer.accumulate(batch, 0, { last: false });
  lastGrads = trainer.grads.map((g) => Float32Array.from(g.data));
  const params = getParamValues(model);
  model.dispose();
  return { params, grads: lastGrads };
}

test("overlap on and off give bit-identical parameters over steps with accumulation (tied embeddings included)", async () => {
  const off = await trainSteps(false);
  const on = await trainSteps(true);
  assert.equal(on.params.size, off.params.size);
  for (const [name, v] of off.params) {
    assert.deepEqual(Buffer.from(on.params.get(name)!.buffer), Buffer.from(v.buffer), `parameter ${name} differs with overlap`);
  }
  on.grads.forEach((g, i) => assert.deepEqual(Buffer.from(g.buffer), Buffer.from(off.grads[i].buffer), `gradient ${i} differs`));
});

/** Records when each gradient is handed over and checks it is complete at that moment. */
class RecordingReducer implements OverlappingReducer {
  readonly order: string[] = [];
  readonly snapshots = new Map<string, Float32Array>();
  private grads: NamedGradient[] = [];

  async reduce(): Promise<void> {
    throw new Error("the trainer must use begin() when overlapping");
  }

  begin(grads: NamedGradient[]): PendingReduction {
    this.grads = grads;
    this.order.length = 0;
    const seen = new Set<number>();
    return {
      gradientReady: (i) => {
        assert.ok(!seen.has(i), `gradient ${grads[i].name} handed over twice`);
        seen.add(i);
        this.order.push(grads[i].name);
        this.snapshots.set(grads[i].name, Float32Array.from(grads[i].data));
      },
      countersReady: () => {
        assert.equal(seen.size, grads.length, "counters ready before every gradient");
        this.order.push("counters");
      },
      done: Promise.resolve(),
    };
  }

  /** The gradients as they are when the update starts. */
  finalGrads(): Map<string, Float32Array> {
    return new Map(this.grads.map((g) => [g.name, Float32Array.from(g.data)]));
  }
}

test("gradients are handed to the reducer during the backward pass, top layer first, complete and once each", async () => {
  const cfg = tinyConfig({ numHiddenLayers: 2 });
  const model = BertModel.create(cfg, 5);
  const reducer = new RecordingReducer();
  const trainer = new Trainer(model, { schedule, dropoutSeed: 3, overlap: true }, reducer);
  const batch = randomBatch(cfg, 4, 16, 21, 0.3, 2);
  trainer.accumulate(batch, 0, { last: true });
  const order = reducer.order;
  assert.equal(order.length, trainer.params.length + 1);
  assert.equal(order[order.length - 1], "counters");
  const at = (name: string): number => {
    const i = order.indexOf(name);
    assert.ok(i >= 0, `${name} never handed over`);
    return i;
  };
  // backward order: the MLM head and layer 1 finish before layer 0, the embeddings (tied to the head) last
  assert.ok(at("cls.predictions.transform.dense.weight") < at("bert.encoder.layer.1.output.dense.weight"));
  assert.ok(at("bert.encoder.layer.1.attention.self.query.weight") < at("bert.encoder.layer.0.output.dense.weight"));
  assert.ok(at("bert.encoder.layer.0.attention.self.query.weight") < at("bert.embeddings.word_embeddings.weight"));
  // what was handed over was already the final gradient (nothing added afterwards)
  for (const [name, g] of reducer.finalGrads()) {
    assert.deepEqual(Buffer.from(reducer.snapshots.get(name)!.buffer), Buffer.from(g.buffer), `${name} changed after it was handed over`);
  }
  model.dispose();
});

test("launch, 2 workers, several buckets: overlap on (threaded ring) and off reach identical parameters", async () => {
  const dirs: string[] = [];
  for (const overlap of [true, false]) {
    const dir = tempDir(`overlap-${overlap}`);
    dirs.push(dir);
    const r = await runLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "3", "--set", `communication.overlap=${overlap}`, "--set", "communication.bucket_bytes=20000"));
    assert.equal(r.code, 0, `launch with overlap=${overlap} failed:\n${r.stderr}`);
  }
  const [on, off] = await Promise.all(dirs.map(finalParams));
  assert.ok(on.size > 10);
  assert.equal(maxAbsDiff(on, off), 0, "2-worker runs with and without overlap differ");
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

test("gradient accumulation: one reduction per step, started by the last micro-batch only (with and without overlap)", async () => {
  const cfg = tinyConfig({ numHiddenLayers: 1 });
  for (const overlap of [false, true]) {
    const model = BertModel.create(cfg, 9);
    const calls: string[] = [];
    const identity = new IdentityReducer();
    const counting: OverlappingReducer = {
      reduce: async (g, c, step) => {
        calls.push(`reduce ${step}`);
        await identity.reduce();
      },
      begin: (g, c, step) => {
        calls.push(`begin ${step}`);
        return identity.begin(g);
      },
    };
    const trainer = new Trainer(model, { schedule, dropoutSeed: 1, overlap }, counting);
    for (let step = 0; step < 2; step++) {
      const batch = randomBatch(cfg, 6, 16, 300 + step, 0.3, 0);
      await trainer.trainStep([sliceBatch(batch, 0, 2), sliceBatch(batch, 2, 2), sliceBatch(batch, 4, 2)]);
    }
    assert.deepEqual(calls, overlap ? ["begin 0", "begin 1"] : ["reduce 0", "reduce 1"], `overlap ${overlap}`);
    model.dispose();
  }
});
