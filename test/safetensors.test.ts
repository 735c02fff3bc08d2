import { test } from "node:test";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  decodeSafetensors,
  encodeSafetensors,
  parseSafetensorsHeader,
  readSafetensorsMetadata,
  readSafetensors,
  tensorToFloat32,
  writeSafetensors,
  type SafetensorsTensor,
} from "../shared/checkpoint/safetensors";

const SRC = "crafted.safetensors";

function concat(parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

/** Builds a file by hand: u64 header length (or `lengthField`), header text, data bytes. */
function craft(header: string, data: Uint8Array = new Uint8Array(0), lengthField?: bigint): Buffer {
  const h = Buffer.from(header, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(h.byteLength));
  return Buffer.concat([len, h, data]);
}

function sample(): Map<string, SafetensorsTensor> {
  return new Map<string, SafetensorsTensor>([
    ["w.f32", { dtype: "F32", shape: [2, 3], data: Float32Array.from([1, -2.5, 3, 1e-8, 65504, -0]) }],
    ["x.f64", { dtype: "F64", shape: [2], data: Float64Array.from([Math.PI, -1e300]) }],
    ["ids.i32", { dtype: "I32", shape: [3], data: Int32Array.from([-2147483648, 0, 2147483647]) }],
    ["big.i64", { dtype: "I64", shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 62n + 1n]) }],
    ["bytes.u8", { dtype: "U8", shape: [3], data: Uint8Array.from([0, 7, 255]) }],
    ["half.f16", { dtype: "F16", shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) }],
    ["brain.bf16", { dtype: "BF16", shape: [1, 2], data: Uint16Array.from([0x3f80, 0xc040]) }],
    ["empty", { dtype: "F32", shape: [0], data: new Float32Array(0) }],
    ["empty2d", { dtype: "I32", shape: [2, 0], data: new Int32Array(0) }],
    ["scalar", { dtype: "F32", shape: [], data: Float32Array.from([42]) }],
  ]);
}

test("round trip of several dtypes, empty tensors, a scalar and metadata", () => {
  const tensors = sample();
  const metadata = { format: "pt", note: "héllo ✓", "10": "integer-like key" };
  const file = decodeSafetensors(concat(encodeSafetensors(tensors, metadata)), "mem");
  assert.deepEqual(file.metadata, metadata);
  assert.deepEqual([...file.tensors.keys()].sort(), [...tensors.keys()].sort());
  for (const [name, t] of tensors) {
    const got = file.tensors.get(name) as SafetensorsTensor;
    assert.equal(got.dtype, t.dtype, name);
    assert.deepEqual(got.shape, t.shape, name);
    assert.equal(got.data.constructor, t.data.constructor, name);
    assert.deepEqual(Array.from(got.data as ArrayLike<unknown>), Array.from(t.data as ArrayLike<unknown>), name);
  }
  assert.ok(Object.is((file.tensors.get("w.f32") as SafetensorsTensor).data[5], -0), "negative zero kept bit-exact");
});

test("written layout matches the spec when parsed by hand", () => {
  const tensors = sample();
  const bytes = concat(encodeSafetensors(tensors, { format: "pt" }));
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal(n % 8, 0, "header padded to a multiple of 8");
  const headerText = bytes.subarray(8, 8 + n).toString("utf8");
  assert.match(headerText, /^\{.*\} *$/s, "header is one JSON object followed only by space padding");
  assert.ok(headerText.length - headerText.trimEnd().length < 8, "less than 8 bytes of padding");
  assert.ok(headerText.startsWith('{"__metadata__":{"format":"pt"}'), "metadata first");
  const header = JSON.parse(headerText) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  // Data order: element size descending, then name; contiguous from 0 to the end of the file.
  const expectedOrder = ["big.i64", "x.f64", "ids.i32", "scalar", "w.f32", "empty", "empty2d", "brain.bf16", "half.f16", "bytes.u8"];
  const width: Record<string, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, U8: 1 };
  const order = Object.keys(header)
    .filter((k) => k !== "__metadata__")
    .sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0] || header[a].data_offsets[1] - header[b].data_offsets[1]);
  assert.deepEqual(order.filter((k) => !k.startsWith("empty")), expectedOrder.filter((k) => !k.startsWith("empty")));
  let cursor = 0;
  for (const name of order) {
    const e = header[name];
    const t = tensors.get(name) as SafetensorsTensor;
    assert.equal(e.dtype, t.dtype);
    assert.deepEqual(e.shape, t.shape);
    assert.equal(e.data_offsets[0], cursor, `${name} starts where the previous ended`);
    assert.equal(e.data_offsets[0] % width[e.dtype], 0, `${name} naturally aligned`);
    const raw = bytes.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    assert.deepEqual(raw, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), `${name} bytes`);
    cursor = e.data_offsets[1];
  }
  assert.equal(8 + n + cursor, bytes.byteLength, "data region ends at end of file");
  // Little-endian on disk regardless of anything else: 1.0f is 00 00 80 3f.
  const one = bytes.subarray(8 + n + header["scalar"].data_offsets[0]);
  assert.deepEqual([...bytes.subarray(8 + n + header["w.f32"].data_offsets[0], 8 + n + header["w.f32"].data_offsets[0] + 4)], [0, 0, 0x80, 0x3f]);
  assert.equal(one.readFloatLE(0), 42);
});

test("file write/read through disk, errors carry the file path", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
  try {
    const file = path.join(dir, "m.safetensors");
    const w = await writeSafetensors(file, sample(), { a: "b" });
    assert.equal(w.size, fs.statSync(file).size);
    const back = await readSafetensors(file);
    assert.deepEqual(back.metadata, { a: "b" });
    assert.equal(back.tensors.size, sample().size);
    fs.truncateSync(file, w.size - 1);
    await assert.rejects(readSafetensors(file), (e: Error) => e.message.startsWith(file) && /"bytes\.u8".*run past the end/.test(e.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const F32x2 = new Uint8Array(8);

const corrupt: Array<[string, Buffer, RegExp]> = [
  ["file shorter than 8 bytes", Buffer.from([1, 0, 0]), /3 bytes, too short/],
  ["header length beyond file", craft("{}", new Uint8Array(0), 1000n), /header length 1000 exceeds the 2 bytes/],
  ["huge header length", craft("{}", new Uint8Array(0), 2n ** 63n), /header length 9223372036854775808 exceeds the limit/],
  ["header not JSON", craft('{"a": oops}'), /not valid JSON: unexpected character "o"/],
  ["header a JSON array", craft("[1]"), /does not start with '\{'/],
  ["header not UTF-8", craft("{}").fill(0xff, 8, 9), /not valid UTF-8/],
  ["unterminated JSON", craft('{"a":{"dtype":"F32"'), /not valid JSON: expected ',' or '\}'/],
  ["deeply nested JSON", craft('{"a":' + "[".repeat(50) + "]".repeat(50) + "}"), /nested deeper/],
  ["duplicate key", craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', F32x2), /duplicate key "a"/],
  ["unknown dtype", craft('{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', F32x2), /tensor "a": unknown dtype "F33"/],
  ["shape/offset mismatch", craft('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', F32x2), /tensor "a": .*span 8 bytes but shape \[3\] of F32 needs 12/],
  ["offsets out of range", craft('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', F32x2), /tensor "a": .*run past the end of the 8-byte data region/],
  ["truncated data", craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(5)), /tensor "a": .*run past the end of the 5-byte/],
  ["begin after end", craft('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', F32x2), /tensor "a": .*begin after end/],
  ["fractional offset", craft('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0.5,4.5]}}', F32x2), /tensor "a": .*must be non-negative integers/],
  ["negative shape", craft('{"a":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}}', F32x2), /tensor "a": shape \[-8\] must be/],
  ["overflowing shape", craft('{"a":{"dtype":"F64","shape":[4503599627370496,4503599627370496],"data_offsets":[0,8]}}', F32x2), /tensor "a": shape \[4503599627370496,4503599627370496\] has more elements than the 8-byte data region/],
  ["empty tensor with a huge dim", craft('{"a":{"dtype":"F32","shape":[4503599627370496,0],"data_offsets":[0,8]}}', F32x2), /tensor "a": .*span 8 bytes but shape \[4503599627370496,0\] of F32 needs 0/],
  ["missing offsets", craft('{"a":{"dtype":"F32","shape":[2]}}', F32x2), /tensor "a": field data_offsets is missing/],
  ["unexpected field", craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', F32x2), /tensor "a": unexpected field "x"/],
  [
    "overlapping offsets",
    craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', new Uint8Array(12)),
    /tensor "b": data_offsets \[4, 12\] overlap tensor "a"/,
  ],
  [
    "gap between tensors",
    craft('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', new Uint8Array(12)),
    /tensor "b": gap of 4 uncovered bytes/,
  ],
  ["trailing bytes", craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(11)), /3 trailing bytes not covered/],
  ["metadata value not a string", craft('{"__metadata__":{"step":5}}'), /__metadata__ value for "step" is not a string/],
  ["entry not an object", craft('{"a":5}'), /tensor "a": entry is not an object/],
];

for (const [what, bytes, expected] of corrupt) {
  test(`refuses a crafted file: ${what}`, () => {
    assert.throws(
      () => decodeSafetensors(bytes, SRC),
      (e: Error) => {
        assert.ok(e.message.startsWith(`${SRC}: `), `message names the file: ${e.message}`);
        assert.match(e.message, expected);
        return true;
      },
    );
  });
}

test("a configurable header limit is enforced before reading the header", () => {
  const ok = concat(encodeSafetensors(sample()));
  assert.throws(() => parseSafetensorsHeader(ok, SRC, { maxHeaderBytes: 64 }), /exceeds the limit of 64 bytes/);
});

test("header of an empty file is valid and data region empty", () => {
  const bytes = concat(encodeSafetensors(new Map()));
  assert.equal(bytes.byteLength, 16, '"{}" padded to 8 bytes');
  const h = parseSafetensorsHeader(bytes, SRC);
  assert.deepEqual(h.tensors, []);
  assert.equal(h.dataStart, 16);
});

test("writer refuses inconsistent tensors, naming the tensor", () => {
  const bad = (t: SafetensorsTensor, name = "t") => () => encodeSafetensors(new Map([[name, t]]), {}, "out.safetensors");
  assert.throws(bad({ dtype: "F32", shape: [2, 2], data: new Float32Array(3) }), /out\.safetensors: tensor "t": shape \[2,2\] has 4 elements but data has 3$/);
  assert.throws(bad({ dtype: "F32", shape: [2], data: new Float64Array(2) }), /tensor "t": dtype F32 needs a Float32Array, got Float64Array/);
  assert.throws(bad({ dtype: "F32", shape: [1.5], data: new Float32Array(1) }), /tensor "t": shape \[1.5\] has a dimension/);
  assert.throws(bad({ dtype: "F32", shape: [], data: new Float32Array(1) }, "__metadata__"), /reserved/);
});

test("tensorToFloat32 converts F16 and BF16, refuses integer dtypes", () => {
  assert.deepEqual(Array.from(tensorToFloat32({ dtype: "F16", shape: [3], data: Uint16Array.from([0x3c00, 0xc000, 0x0001]) }, "x")), [1, -2, 2 ** -24]);
  assert.deepEqual(Array.from(tensorToFloat32({ dtype: "BF16", shape: [2], data: Uint16Array.from([0x3f80, 0xc040]) }, "x")), [1, -3]);
  assert.throws(() => tensorToFloat32({ dtype: "I32", shape: [1], data: new Int32Array(1) }, "file: tensor \"t\""), /file: tensor "t": dtype I32 cannot be read as float32/);
});

test("readSafetensorsMetadata reads the header alone: the metadata, and named errors for a cut or non-JSON header", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "st-meta-"));
  const file = path.join(dir, "m.safetensors");
  const big = new Float32Array(100_000).fill(1.5);
  await writeSafetensors(file, new Map([["w", { dtype: "F32" as const, shape: [big.length], data: big }]]), { note: "hello", step: "7" });
  assert.deepEqual(await readSafetensorsMetadata(file), { note: "hello", step: "7" });
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  fs.writeFileSync(file, bytes.subarray(0, 8 + n - 5));
  await assert.rejects(readSafetensorsMetadata(file), /m\.safetensors: header length \d+ exceeds the \d+ bytes after the length field/);
  const junk = Buffer.concat([Buffer.alloc(8), Buffer.from("[1,2]")]);
  junk.writeBigUInt64LE(5n, 0);
  fs.writeFileSync(file, junk);
  await assert.rejects(readSafetensorsMetadata(file), /header is not a JSON object/);
  fs.rmSync(dir, { recursive: true, force: true });
});
