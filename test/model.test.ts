/** BERT model: deterministic init, HF names/layouts, import/export, finite-difference gradients, NSP, dropout keys. */
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../shared/backend/select";
import { BertModel, encode } from "../shared/model/bert";
import { exportHfTensors, importHfTensors, parameterChecksum, getParamValues, setParamValues } from "../shared/model/hf";
import { dropout } from "../shared/model/ops/dropout";
import { pretrainingObjective } from "../shared/train/objective";
import { maxScaledDiff, randomBatch, tinyConfig } from "./helpers/model-fixtures";

before(async () => {
  await selectBackend("wasm");
});

test("same seed gives identical weights (checksum), another seed does not; init follows HF", () => {
  const cfg = tinyConfig();
  const a = BertModel.create(cfg, 7);
  const b = BertModel.create(cfg, 7);
  const c = BertModel.create(cfg, 8);
  assert.equal(parameterChecksum(a), parameterChecksum(b));
  assert.notEqual(parameterChecksum(a), parameterChecksum(c));
  const v = getParamValues(a);
  assert.ok(v.get("bert.encoder.layer.1.output.LayerNorm.weight")!.every((x) => x === 1));
  assert.ok(v.get("bert.encoder.layer.0.attention.self.query.bias")!.every((x) => x === 0));
  const w = v.get("bert.embeddings.word_embeddings.weight")!;
  const mean = w.reduce((p, q) => p + q, 0) / w.length;
  const std = Math.sqrt(w.reduce((p, q) => p + (q - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(std - cfg.initializerRange) < 0.002, `std ${std}`);
  for (const m of [a, b, c]) m.dispose();
});

test("HF names and layouts: export transposes linear weights, import round-trips and rejects mismatches", () => {
  const cfg = tinyConfig({ intermediateSize: 24 });
  const a = BertModel.create(cfg, 1, { nsp: true });
  const hf = exportHfTensors(a);
  const names = [...hf.keys()];
  assert.equal(names[0], "bert.embeddings.word_embeddings.weight");
  assert.ok(names.includes("bert.encoder.layer.1.attention.self.query.weight"));
  assert.ok(names.includes("cls.predictions.transform.LayerNorm.bias"));
  assert.ok(names.includes("cls.seq_relationship.weight"));
  assert.deepEqual(hf.get("bert.encoder.layer.0.intermediate.dense.weight")!.shape, [24, 16]); // [out, in]
  assert.deepEqual(hf.get("bert.encoder.layer.0.output.dense.weight")!.shape, [16, 24]);
  const internal = getParamValues(a).get("bert.encoder.layer.0.intermediate.dense.weight")!; // [in=16, out=24]
  const exported = hf.get("bert.encoder.layer.0.intermediate.dense.weight")!.data; // [out=24, in=16]
  assert.equal(exported[5 * 16 + 3], internal[3 * 24 + 5]);

  const b = BertModel.create(cfg, 2, { nsp: true });
  importHfTensors(b, hf);
  assert.equal(parameterChecksum(b), parameterChecksum(a));

  const missing = new Map(hf);
  missing.delete("bert.pooler.dense.bias");
  assert.throws(() => importHfTensors(b, missing), /missing tensor 'bert.pooler.dense.bias'/);
  const wrong = new Map(hf);
  wrong.set("bert.encoder.layer.0.output.dense.weight", { shape: [24, 16], data: new Float32Array(384) });
  assert.throws(() => importHfTensors(b, wrong), /'bert.encoder.layer.0.output.dense.weight' has shape \[24,16\], expected \[16,24\]/);
  const extra = new Map(hf);
  extra.set("bert.encoder.layer.9.output.dense.bias", { shape: [16], data: new Float32Array(16) });
  assert.throws(() => importHfTensors(b, extra), /unexpected tensor 'bert.encoder.layer.9.output.dense.bias'/);
  const tied = new Map(hf);
  tied.set("cls.predictions.decoder.weight", hf.get("bert.embeddings.word_embeddings.weight")!);
  importHfTensors(b, tied); // tied copy accepted
  for (const m of [a, b]) m.dispose();
});

/** Loss and gradients (null where a parameter is off the loss path) of the objective, dropout off. */
function lossAndGrads(m: BertModel, batch: ReturnType<typeof randomBatch>): { loss: number; grads: (Float32Array | null)[] } {
  const vars = m.variables();
  const { value, grads } = tf.variableGrads(() => pretrainingObjective(m, batch, { training: false }, 1).total, vars);
  const out = vars.map((v) => (grads[v.name] === undefined ? null : Float32Array.from(grads[v.name].dataSync())));
  const loss = value.dataSync()[0];
  tf.dispose([value, ...Object.values(grads)]);
  return { loss, grads: out };
}

/** Loss sum of the objective (dropout off) for the current weights. */
function lossOf(m: BertModel, batch: ReturnType<typeof randomBatch>): number {
  return tf.tidy(() => pretrainingObjective(m, batch, { training: false }, 1).total.dataSync()[0]);
}

for (const backend of ["cpu", "wasm"] as const) {
  test(`gradients match central finite differences (${backend})`, async () => {
    await selectBackend(backend);
    try {
      // Larger init than BERT's so that every coordinate has a gradient well above float32 noise.
      const cfg = tinyConfig({ initializerRange: 0.3, layerNormEps: 1e-5 });
      const m = BertModel.create(cfg, 3, { nsp: true });
      const batch = { ...randomBatch(cfg, 3, 8, 11, 0.3, 2), nspLabels: Int32Array.from([0, 1, 1]) };
      const { grads } = lossAndGrads(m, batch);
      const checks = [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.attention.self.query.bias", // (key.bias has an exactly zero gradient: softmax shift)
        "bert.encoder.layer.1.attention.self.value.weight",
        "bert.encoder.layer.1.attention.output.dense.weight",
        "bert.encoder.layer.0.intermediate.dense.weight",
        "bert.encoder.layer.1.output.dense.bias",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.bias",
        "bert.pooler.dense.weight",
        "cls.seq_relationship.weight",
      ];
      const values = getParamValues(m);
      const eps = 1e-2;
      let worst = 0;
      for (const name of checks) {
        const i = m.specs.findIndex((s) => s.name === name);
        const g = grads[i];
        assert.ok(g !== null, `no gradient for ${name}`);
        // The coordinate with the largest gradient, plus one more with at least a tenth of it.
        let k0 = 0;
        for (let k = 0; k < g.length; k++) if (Math.abs(g[k]) > Math.abs(g[k0])) k0 = k;
        const k1 = g.findIndex((x, k) => k !== k0 && Math.abs(x) > 0.1 * Math.abs(g[k0]));
        for (const k of k1 >= 0 ? [k0, k1] : [k0]) {
          const base = values.get(name)!;
          const plus = Float32Array.from(base);
          plus[k] += eps;
          setParamValues(m, new Map([[name, plus]]));
          const lp = lossOf(m, batch);
          const minus = Float32Array.from(base);
          minus[k] -= eps;
          setParamValues(m, new Map([[name, minus]]));
          const lm = lossOf(m, batch);
          setParamValues(m, new Map([[name, base]]));
          const fd: number = (lp - lm) / (2 * eps);
          const rel: number = Math.abs(fd - g[k]) / Math.max(Math.abs(g[k]), 1e-3);
          worst = Math.max(worst, rel);
          assert.ok(rel < 0.03, `${name}[${k}]: analytic ${g[k]} vs finite difference ${fd}`);
        }
      }
      assert.ok(worst < 0.03);
      m.dispose();
    } finally {
      await selectBackend("wasm");
    }
  });
}

test("wasm and cpu agree on the loss and every gradient of the full objective", async () => {
  const cfg = tinyConfig({ layerNormEps: 1e-5 });
  const batch = randomBatch(cfg, 4, 12, 5, 0.25, 3);
  const run = async (backend: "cpu" | "wasm") => {
    await selectBackend(backend);
    const m = BertModel.create(cfg, 9);
    const out = lossAndGrads(m, batch);
    m.dispose();
    return out;
  };
  const cpu = await run("cpu");
  const wasm = await run("wasm");
  assert.ok(Math.abs(cpu.loss - wasm.loss) < 1e-5 * Math.abs(cpu.loss));
  cpu.grads.forEach((g, i) => {
    const w = wasm.grads[i];
    assert.ok((g === null) === (w === null), `gradient ${i} present on one backend only`);
    if (g === null || w === null) return;
    // Some gradients are exactly zero in theory (attention key bias): compare those on an absolute scale.
    const absDiff = g.reduce((mx, x, j) => Math.max(mx, Math.abs(x - w[j])), 0);
    assert.ok(maxScaledDiff(w, g) < 1e-4 || absDiff < 1e-6, `gradient ${i}: ${maxScaledDiff(w, g)}`);
  });
});

test("padding: outputs at real positions do not depend on what padded positions hold", () => {
  const cfg = tinyConfig();
  const m = BertModel.create(cfg, 4);
  const batch = randomBatch(cfg, 2, 10, 3, 0.2, 4);
  const other = { ...batch, inputIds: batch.inputIds.map((id, i) => (batch.attentionMask[i] ? id : 7)) };
  const [h1, h2] = tf.tidy(() => [encode(m, batch).dataSync(), encode(m, other).dataSync()]);
  for (let i = 0; i < 20; i++) {
    if (!batch.attentionMask[i]) continue;
    for (let j = 0; j < 16; j++) assert.ok(Math.abs(h1[i * 16 + j] - h2[i * 16 + j]) < 1e-5);
  }
  m.dispose();
});

test("dropout masks depend on (seed, step, site, global row) only: split rows reproduce the whole", () => {
  const x = tf.ones([6, 50]);
  const key = { seed: 3, step: 2, site: 5, rowOffset: 0 };
  const whole = tf.tidy(() => dropout(x, 0.3, key, 6).dataSync());
  const top = tf.tidy(() => dropout(tf.slice(x, [0, 0], [2, 50]), 0.3, key, 2).dataSync());
  const bottom = tf.tidy(() => dropout(tf.slice(x, [2, 0], [4, 50]), 0.3, { ...key, rowOffset: 2 }, 4).dataSync());
  assert.deepEqual(Array.from(whole), [...top, ...bottom]);
  const zeros = whole.filter((v) => v === 0).length;
  assert.ok(zeros > 50 && zeros < 130, `${zeros} of 300 dropped`);
  assert.ok(whole.every((v) => v === 0 || Math.abs(v - 1 / 0.7) < 1e-6));
  const nextStep = tf.tidy(() => dropout(x, 0.3, { ...key, step: 3 }, 6).dataSync());
  assert.notDeepEqual(Array.from(nextStep), Array.from(whole));
  x.dispose();
});
