import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bertConfig } from "../shared/model/config";
import { Rng } from "../shared/rng";
import { loadCheckpoint, saveCheckpoint, type FloatTensor } from "../shared/checkpoint/checkpoint";
import { checkpointDirFor, latestGoodCheckpoint, listCheckpoints, pruneCheckpoints, rankStateDirFor } from "../shared/checkpoint/run-checkpoints";
import { readSafetensors } from "../shared/checkpoint/safetensors";

const config = bertConfig({ hiddenSize: 8, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 16 }, 12, { maxPositionEmbeddings: 32 });
const vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "##s", "cat", "dog"];

function randTensor(rng: Rng, shape: number[]): FloatTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float32Array.from({ length: n }, () => rng.normal()) };
}

function weights(seed: number): Map<string, FloatTensor> {
  const rng = new Rng(seed);
  return new Map([
    ["bert.embeddings.word_embeddings.weight", randTensor(rng, [12, 8])],
    ["bert.embeddings.LayerNorm.weight", randTensor(rng, [8])],
    ["bert.encoder.layer.0.intermediate.dense.weight", randTensor(rng, [16, 8])],
    ["cls.predictions.bias", randTensor(rng, [12])],
  ]);
}

function trainingState(seed: number) {
  const rng = new Rng(seed, 1);
  return {
    tensors: new Map([
      ["adam.m.bert.embeddings.word_embeddings.weight", randTensor(rng, [12, 8])],
      ["adam.v.bert.embeddings.word_embeddings.weight", randTensor(rng, [12, 8])],
    ]),
    meta: { step: 100, epoch: 2, dataPosition: 1234, rngState: new Rng(7).getState(), lr: { peak: 1e-4, warmup: 10 }, worldSize: 4 },
  };
}

function withTmp(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ckpt-"));
    try {
      await fn(dir);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

function flipByte(file: string, at: number): void {
  const b = fs.readFileSync(file);
  b[at] ^= 0x01;
  fs.writeFileSync(file, b);
}

test(
  "checkpoint round trip: config, weights, vocab, training state, step",
  withTmp(async (dir) => {
    const ck = path.join(dir, "ck");
    const manifest = await saveCheckpoint(ck, { config, tensors: weights(1), vocab, step: 100, trainingState: trainingState(1) });
    assert.deepEqual(Object.keys(manifest.files).sort(), ["config.json", "model.safetensors", "training_state.safetensors", "vocab.txt"]);
    assert.deepEqual(fs.readdirSync(ck).sort(), ["checkpoint.json", "config.json", "model.safetensors", "training_state.safetensors", "vocab.txt"]);

    const back = await loadCheckpoint(ck, { withTrainingState: true });
    assert.deepEqual(back.config, config);
    assert.equal(back.padTokenId, 0);
    assert.deepEqual(back.vocab, vocab);
    assert.equal(back.step, 100);
    assert.deepEqual(back.tensors, weights(1));
    assert.deepEqual(back.trainingState, trainingState(1));

    const withoutState = await loadCheckpoint(ck);
    assert.equal(withoutState.trainingState, undefined);
  }),
);

test(
  "files are HF-compatible: snake_case config.json, vocab.txt lines, model metadata format=pt",
  withTmp(async (dir) => {
    await saveCheckpoint(dir, { config, tensors: weights(1), vocab, padTokenId: 3 });
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    assert.deepEqual(cfg, {
      architectures: ["BertForMaskedLM"],
      model_type: "bert",
      vocab_size: 12,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      hidden_act: "gelu",
      hidden_dropout_prob: 0.1,
      attention_probs_dropout_prob: 0.1,
      max_position_embeddings: 32,
      type_vocab_size: 2,
      initializer_range: 0.02,
      layer_norm_eps: 1e-12,
      pad_token_id: 3,
    });
    assert.equal(fs.readFileSync(path.join(dir, "vocab.txt"), "utf8"), vocab.join("\n") + "\n");
    const model = await readSafetensors(path.join(dir, "model.safetensors"));
    assert.deepEqual(model.metadata, { format: "pt" });
    assert.equal(model.tensors.get("cls.predictions.bias")?.dtype, "F32");
    assert.equal((await loadCheckpoint(dir)).padTokenId, 3);
  }),
);

test(
  "a flipped byte or a truncation in model.safetensors is refused naming the file",
  withTmp(async (dir) => {
    await saveCheckpoint(dir, { config, tensors: weights(1), vocab });
    const model = path.join(dir, "model.safetensors");
    flipByte(model, fs.statSync(model).size - 3); // inside tensor data: still a well-formed safetensors file
    await assert.rejects(loadCheckpoint(dir), (e: Error) => e.message.startsWith(model) && /checksum mismatch: file is corrupt/.test(e.message));
    flipByte(model, fs.statSync(model).size - 3);
    await loadCheckpoint(dir); // restored byte: loads again
    fs.truncateSync(model, 100);
    await assert.rejects(loadCheckpoint(dir), (e: Error) => e.message.startsWith(model) && /truncated: 100 bytes on disk/.test(e.message));
  }),
);

test(
  "a checkpoint without manifest is refused as incomplete; resume without training state is refused",
  withTmp(async (dir) => {
    await saveCheckpoint(dir, { config, tensors: weights(1), vocab, trainingState: trainingState(1) });
    // Re-saving without training state must drop the stale file, not leave it to be picked up on resume.
    await saveCheckpoint(dir, { config, tensors: weights(2), vocab });
    assert.ok(!fs.existsSync(path.join(dir, "training_state.safetensors")));
    await assert.rejects(loadCheckpoint(dir, { withTrainingState: true }), /training_state\.safetensors: checkpoint has no training state/);
    fs.rmSync(path.join(dir, "checkpoint.json"));
    await assert.rejects(loadCheckpoint(dir), /checkpoint\.json: checkpoint .* is incomplete: manifest checkpoint\.json is missing/);
  }),
);

test(
  "a manifest pointing outside the directory or malformed is refused",
  withTmp(async (dir) => {
    await saveCheckpoint(dir, { config, tensors: weights(1), vocab });
    const mf = path.join(dir, "checkpoint.json");
    const m = JSON.parse(fs.readFileSync(mf, "utf8")) as { files: Record<string, unknown> };
    m.files["../evil"] = { size: 1, sha256: "0".repeat(64) };
    fs.writeFileSync(mf, JSON.stringify(m));
    await assert.rejects(loadCheckpoint(dir), /checkpoint\.json: invalid manifest: files\.\.\.\/evil.*plain file name/);
    fs.writeFileSync(mf, "{");
    await assert.rejects(loadCheckpoint(dir), /checkpoint\.json: manifest is not valid JSON/);
  }),
);

test(
  "bad input to save is refused before anything is written",
  withTmp(async (dir) => {
    const ck = path.join(dir, "ck");
    const badShape = new Map([["w", { shape: [2, 3], data: new Float32Array(5) }]]);
    await assert.rejects(saveCheckpoint(ck, { config, tensors: badShape, vocab }), /model\.safetensors: tensor "w": shape \[2,3\] has 6 elements but data has 5/);
    await assert.rejects(saveCheckpoint(ck, { config, tensors: weights(1), vocab: ["a", "b\nc"] }), /vocab\.txt: token 1 .* line break/);
    await assert.rejects(saveCheckpoint(ck, { config, tensors: weights(1), vocab: new Array<string>(13).fill("x") }), /13 tokens, more than config vocabSize 12/);
    const meta = { step: 1, lr: { now: NaN } };
    await assert.rejects(saveCheckpoint(ck, { config, tensors: weights(1), vocab, trainingState: { tensors: new Map(), meta } }), /training state meta\.lr\.now: NaN is not representable/);
    await assert.rejects(saveCheckpoint(ck, { config: { ...config, numAttentionHeads: 3 }, tensors: weights(1), vocab }), /not divisible by num_attention_heads 3/);
    await assert.rejects(saveCheckpoint(ck, { config: { ...config, hiddenDropoutProb: 1.5 }, tensors: weights(1), vocab }), /hidden_dropout_prob/);
    assert.ok(!fs.existsSync(ck));
  }),
);

test(
  "config.json with an unsupported activation is refused naming the file and field",
  withTmp(async (dir) => {
    await saveCheckpoint(dir, { config, tensors: weights(1), vocab });
    // Rewrite config.json and its manifest entry consistently, so only the content check can fail.
    const cfgFile = path.join(dir, "config.json");
    const cfg = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
    cfg.hidden_act = "relu";
    const text = JSON.stringify(cfg);
    fs.writeFileSync(cfgFile, text);
    const mf = path.join(dir, "checkpoint.json");
    const m = JSON.parse(fs.readFileSync(mf, "utf8")) as { files: Record<string, { size: number; sha256: string }> };
    const { createHash } = await import("node:crypto");
    m.files["config.json"] = { size: Buffer.byteLength(text), sha256: createHash("sha256").update(text).digest("hex") };
    fs.writeFileSync(mf, JSON.stringify(m));
    await assert.rejects(loadCheckpoint(dir), (e: Error) => e.message.startsWith(cfgFile) && /hidden_act/.test(e.message));
  }),
);

test(
  "run directory: naming, listing, fallback past corrupt and incomplete checkpoints, pruning",
  withTmp(async (run) => {
    assert.equal(checkpointDirFor(run, 100), path.join(run, "checkpoints", "step-000100"));
    assert.equal(checkpointDirFor(run, 1234567), path.join(run, "checkpoints", "step-1234567"));
    assert.throws(() => checkpointDirFor(run, -1), /not a non-negative integer/);
    assert.deepEqual(await listCheckpoints(run), []);
    assert.deepEqual(await latestGoodCheckpoint(run), { checkpoint: undefined, warnings: [] });

    for (const step of [1, 2, 3]) await saveCheckpoint(checkpointDirFor(run, step), { config, tensors: weights(step), vocab, step });
    fs.mkdirSync(checkpointDirFor(run, 4)); // a save that crashed before writing its manifest
    fs.writeFileSync(path.join(checkpointDirFor(run, 4), "model.safetensors"), "partial");
    fs.writeFileSync(path.join(run, "checkpoints", "step-000009"), "not a directory");
    const vocab3 = path.join(checkpointDirFor(run, 3), "vocab.txt");
    flipByte(vocab3, 0);

    const listed = await listCheckpoints(run);
    assert.deepEqual(listed.map((c) => [c.step, c.complete]), [[1, true], [2, true], [3, true], [4, false]]);

    const good = await latestGoodCheckpoint(run);
    assert.equal(good.checkpoint?.step, 2);
    assert.equal(good.warnings.length, 2);
    assert.match(good.warnings[0], /step 4: .*incomplete/);
    assert.match(good.warnings[1], /step 3: .*vocab\.txt: checksum mismatch/);
    assert.equal((await loadCheckpoint(good.checkpoint?.dir ?? "")).step, 2);

    // Keep the newest 2 complete-looking ones (3 counts: sizes match, hashes are not checked); drop 1; leave incomplete 4.
    await assert.rejects(pruneCheckpoints(run, 0), /keepLast must be an integer >= 1/);
    // Per-rank state dirs go with their checkpoint (step 1), or as crash leftovers (step 0, no checkpoint); the
    // kept ones (2) and the newer in-progress one (5) stay.
    for (const step of [0, 1, 2, 5]) fs.mkdirSync(rankStateDirFor(checkpointDirFor(run, step)));
    const removed = await pruneCheckpoints(run, 2);
    assert.deepEqual(removed.sort(), [checkpointDirFor(run, 1), rankStateDirFor(checkpointDirFor(run, 0)), rankStateDirFor(checkpointDirFor(run, 1))].sort());
    assert.deepEqual((await listCheckpoints(run)).map((c) => c.step), [2, 3, 4]);
    assert.deepEqual(fs.readdirSync(path.join(run, "checkpoints")).filter((n) => n.endsWith(".ranks")).sort(), ["step-000002.ranks", "step-000005.ranks"]);
  }),
);
