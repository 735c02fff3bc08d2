/**
 * Conversion between the model's variables and HF BERT tensors (names and layouts), and a checksum of the weights.
 */
import { createHash } from "node:crypto";
import * as tf from "@tensorflow/tfjs";
import type { BertModel } from "./bert";
import type { ParamSpec } from "./params";

/** A float32 tensor as plain data, row-major. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Transposes a row-major [rows, cols] matrix. */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = src[base + c];
  }
  return out;
}

function hfShape(s: ParamSpec): number[] {
  return s.linear ? [s.shape[1], s.shape[0]] : s.shape.slice();
}

/** Every parameter under its HF name in HF's layout (linear weights [out, in]), in registration order. */
export function exportHfTensors(model: BertModel): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const s of model.specs) {
    const data = model.param(s.name).dataSync() as Float32Array;
    out.set(s.name, {
      shape: hfShape(s),
      data: s.linear ? transpose2d(data, s.shape[0], s.shape[1]) : Float32Array.from(data),
    });
  }
  return out;
}

/** Names HF checkpoints may carry that are not separate parameters here (tied or buffers). */
const TIED_OR_BUFFERS: Record<string, string | null> = {
  "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
  "cls.predictions.decoder.bias": "cls.predictions.bias",
  "bert.embeddings.position_ids": null,
};

/**
 * Loads HF-named, HF-layout tensors into the model. Every parameter must be present with its exact HF shape and no
 * unknown names may appear; tied copies (decoder weight/bias) and the position_ids buffer are accepted and checked
 * for shape. Throws listing every problem.
 */
export function importHfTensors(model: BertModel, tensors: ReadonlyMap<string, HostTensor>): void {
  const problems: string[] = [];
  const known = new Map(model.specs.map((s) => [s.name, s]));
  for (const [name, t] of tensors) {
    const tiedTo = TIED_OR_BUFFERS[name];
    if (known.has(name)) continue;
    if (tiedTo === undefined) problems.push(`unexpected tensor '${name}'`);
    else if (tiedTo !== null) {
      const s = known.get(tiedTo);
      if (s !== undefined && t.shape.join() !== hfShape(s).join()) {
        problems.push(`'${name}' has shape [${t.shape}], expected [${hfShape(s)}] (tied to ${tiedTo})`);
      }
    }
  }
  for (const s of model.specs) {
    const t = tensors.get(s.name);
    const want = hfShape(s);
    if (t === undefined) problems.push(`missing tensor '${s.name}' [${want}]`);
    else if (t.shape.join() !== want.join()) problems.push(`'${s.name}' has shape [${t.shape}], expected [${want}]`);
    else if (t.data.length !== want.reduce((a, b) => a * b, 1)) problems.push(`'${s.name}' has ${t.data.length} values for shape [${want}]`);
  }
  if (problems.length > 0) throw new Error(`cannot import HF tensors into the model:\n  ${problems.join("\n  ")}`);
  for (const s of model.specs) {
    const t = tensors.get(s.name) as HostTensor;
    const data = s.linear ? transpose2d(t.data, s.shape[1], s.shape[0]) : t.data;
    assignValues(model.param(s.name), data, s.shape);
  }
}

/** variable.assign keeps its own reference; the temporary tensor is freed here. */
export function assignValues(v: tf.Variable, data: Float32Array, shape: number[]): void {
  const t = tf.tensor(data, shape, "float32");
  v.assign(t);
  t.dispose();
}

/** Parameter values in the model's own layout, by name, in registration order (copies). */
export function getParamValues(model: BertModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const s of model.specs) out.set(s.name, Float32Array.from(model.param(s.name).dataSync() as Float32Array));
  return out;
}

/** Overwrites parameters (model layout) from a name -> values map; every name must exist with the right size. */
export function setParamValues(model: BertModel, values: ReadonlyMap<string, Float32Array>): void {
  for (const [name, data] of values) {
    const s = model.specs.find((p) => p.name === name);
    if (s === undefined) throw new Error(`setParamValues: model has no parameter '${name}'`);
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`setParamValues: '${name}' needs ${n} values, got ${data.length}`);
    assignValues(model.param(name), data, s.shape);
  }
}

/** SHA-256 (hex) over every parameter's name, shape and float32 bytes in order: equal on ranks with equal weights. */
export function parameterChecksum(model: BertModel): string {
  const h = createHash("sha256");
  for (const s of model.specs) {
    const d = model.param(s.name).dataSync() as Float32Array;
    h.update(`${s.name}[${s.shape.join(",")}]`);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest("hex");
}
