/**
 * The optional pretraining objectives: a decoder (objective causal, HF is_decoder) attends only to earlier
 * positions; causal-LM and MLM+NSP runs train end to end through launch and save checkpoints that say what they are.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../shared/backend/select";
import { BertModel, encode } from "../shared/model/bert";
import { bertConfig } from "../shared/model/config";
import { loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { listCheckpoints } from "../shared/checkpoint/run-checkpoints";
import { runLaunch, tempDir, tinyArgs } from "./helpers/launch";

function hiddenOf(model: BertModel, ids: number[]): Float32Array {
  const n = ids.length;
  return tf.tidy(() => encode(model, { batchSize: 1, seqLen: n, inputIds: Int32Array.from(ids), tokenTypeIds: new Int32Array(n), attentionMask: new Int32Array(n).fill(1) }).dataSync() as Float32Array);
}

test("a decoder's hidden state at position i does not depend on later tokens; an encoder's does", async () => {
  await selectBackend("wasm");
  const a = [2, 11, 12, 13, 14, 15];
  const b = [2, 11, 12, 40, 41, 42]; // differs from position 3 on
  const H = 16;
  for (const isDecoder of [true, false]) {
    const model = BertModel.create(bertConfig({ hiddenSize: H, numHiddenLayers: 2, numAttentionHeads: 2 }, 64, { isDecoder, hiddenDropoutProb: 0, attentionProbsDropoutProb: 0 }), 3);
    const ha = hiddenOf(model, a);
    const hb = hiddenOf(model, b);
    let prefixDiff = 0;
    for (let i = 0; i < 3 * H; i++) prefixDiff = Math.max(prefixDiff, Math.abs(ha[i] - hb[i]));
    if (isDecoder) assert.equal(prefixDiff, 0, "positions 0..2 of a decoder must not see positions 3..5");
    else assert.ok(prefixDiff > 1e-4, "an encoder's positions 0..2 see the whole sequence");
    model.dispose();
  }
});

async function lastCheckpoint(dir: string): Promise<Awaited<ReturnType<typeof loadCheckpoint>>> {
  const list = await listCheckpoints(dir);
  return loadCheckpoint(list[list.length - 1].dir);
}

for (const objective of ["causal", "mlm+nsp"] as const) {
  test(`objective ${objective} pretrains with 2 workers and saves a checkpoint that says so`, async () => {
    const dir = tempDir(objective.replace("+", "-"));
    const r = await runLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "8", "--set", `objective=${objective}`, "--set", "training.eval_interval_steps=8", "--set", "training.eval_sequences=16"));
    assert.equal(r.code, 0, r.stderr);
    const metrics = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { loss: number; learning_rate: number; eval?: { loss: number } });
    assert.equal(metrics.length, 8);
    // each step records its learning rate (HF Trainer's learning_rate), following the schedule
    assert.ok(metrics.every((m) => Number.isFinite(m.learning_rate)) && Math.max(...metrics.map((m) => m.learning_rate)) > 0, JSON.stringify(metrics.map((m) => m.learning_rate)));
    assert.ok(metrics.every((m) => Number.isFinite(m.loss)));
    assert.ok(metrics[7].eval !== undefined && Number.isFinite(metrics[7].eval.loss));
    const ckpt = await lastCheckpoint(dir);
    if (objective === "causal") assert.equal(ckpt.config.isDecoder, true);
    else {
      assert.ok(ckpt.tensors.has("cls.seq_relationship.weight"), "the NSP head is trained and saved");
      const list = await listCheckpoints(dir);
      const hf = JSON.parse(fs.readFileSync(path.join(list[list.length - 1].dir, "config.json"), "utf8")) as { architectures: string[] };
      assert.deepEqual(hf.architectures, ["BertForPreTraining"], "MLM + NSP heads are HF's BertForPreTraining");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
}
