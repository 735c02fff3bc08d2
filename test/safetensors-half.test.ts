import { test } from "node:test";
import * as assert from "node:assert/strict";
import { bf16ToFloat32, f16ToFloat32, float32ToBf16, float32ToF16 } from "../shared/codecs/half";

const f16 = (x: number): number => float32ToF16(Float32Array.of(x))[0];
const bf16 = (x: number): number => float32ToBf16(Float32Array.of(x))[0];

test("F16 decode of known patterns", () => {
  const bits = Uint16Array.from([0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x3555]);
  const got = Array.from(f16ToFloat32(bits));
  assert.deepEqual(got, [0, -0, 1, -2, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, 0.333251953125]);
  assert.ok(Number.isNaN(f16ToFloat32(Uint16Array.of(0x7e00))[0]));
});

test("F16 encode/decode round trip is exact for every non-NaN half value", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const back = float32ToF16(f16ToFloat32(all));
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.ok((back[h] & 0x7c00) === 0x7c00 && (back[h] & 0x3ff) !== 0, `NaN ${h.toString(16)} stays NaN`);
    else if (back[h] !== h) assert.fail(`half 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
  }
});

test("F16 encode rounds to nearest, ties to even, with overflow and underflow", () => {
  assert.equal(f16(2049), f16(2048), "tie between 2048 and 2050 goes to even 2048");
  assert.equal(f16(2051), f16(2052), "tie between 2050 and 2052 goes to even 2052");
  assert.equal(f16(65519), 0x7bff, "just below the rounding boundary stays at max");
  assert.equal(f16(65520), 0x7c00, "halfway to 2^16 rounds to Inf");
  assert.equal(f16(1e10), 0x7c00);
  assert.equal(f16(-1e10), 0xfc00);
  assert.equal(f16(2 ** -25), 0x0000, "half the smallest subnormal ties to even zero");
  assert.equal(f16(3 * 2 ** -25), 0x0002, "1.5 subnormal units ties to even 2");
  assert.equal(f16(2 ** -25 * 1.0001), 0x0001);
  assert.equal(f16(-(2 ** -30)), 0x8000, "tiny negative becomes -0");
  assert.equal(f16(2 ** -14 - 2 ** -25), 0x0400, "rounding a subnormal up carries into the smallest normal");
});

test("BF16 decode, encode and ties to even", () => {
  assert.deepEqual(Array.from(bf16ToFloat32(Uint16Array.from([0x3f80, 0xc040, 0x7f80, 0x0001]))), [1, -3, Infinity, 2 ** -133]);
  assert.equal(bf16(1 + 2 ** -8), 0x3f80, "tie goes to even 1.0");
  assert.equal(bf16(1 + 3 * 2 ** -8), 0x3f82, "tie goes to even 1 + 2^-6");
  assert.equal(bf16(1 + 2 ** -8 + 2 ** -20), 0x3f81, "above the tie rounds up");
  assert.equal(bf16(3.4e38), 0x7f80, "overflow rounds to Inf");
  const nan = bf16(NaN);
  assert.ok((nan & 0x7f80) === 0x7f80 && (nan & 0x7f) !== 0, "NaN stays NaN");
});
