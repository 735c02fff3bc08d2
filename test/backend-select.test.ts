/** Backend selection: explicit names, the missing native binding, auto. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { gpuFallbackReason, selectBackend } from "../shared/backend/select";
import { wasmFixesEnabled } from "../shared/backend/wasm-fixes";

const nativeInstalled = (() => {
  for (const p of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      require.resolve(p);
      return true;
    } catch {
      /* not installed */
    }
  }
  return false;
})();

test("explicit wasm and cpu backends run and report their names; wasm installs the fixes", async () => {
  assert.equal(await selectBackend("cpu"), "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(tf.tidy(() => tf.sum(tf.tensor1d([1, 2, 3])).dataSync()[0]), 6);
  assert.equal(await selectBackend("wasm"), "wasm");
  assert.equal(tf.getBackend(), "wasm");
  assert.ok(wasmFixesEnabled());
});

test("'tensorflow' without the native binding fails with a message naming the packages", { skip: nativeInstalled ? "native binding installed" : false }, async () => {
  await assert.rejects(selectBackend("tensorflow"), /@tensorflow\/tfjs-node-gpu or @tensorflow\/tfjs-node.*not installed/);
});

test("auto picks the best available backend", async () => {
  const name = await selectBackend("auto");
  assert.equal(name, nativeInstalled ? "tensorflow" : "wasm");
});

test("--gpus without a usable GPU backend is explained: wasm/cpu backend, nothing native, or only the CPU build", () => {
  assert.match(gpuFallbackReason("wasm", "@tensorflow/tfjs-node-gpu") ?? "", /backend is 'wasm'.*CPU/);
  assert.match(gpuFallbackReason("cpu", null) ?? "", /backend is 'cpu'/);
  assert.match(gpuFallbackReason("auto", null) ?? "", /tfjs-node-gpu.*not installed.*wasm/);
  assert.match(gpuFallbackReason("tensorflow", "@tensorflow/tfjs-node") ?? "", /only @tensorflow\/tfjs-node \(the CPU build/);
  assert.equal(gpuFallbackReason("auto", "@tensorflow/tfjs-node-gpu"), null);
  assert.equal(gpuFallbackReason("tensorflow", "@tensorflow/tfjs-node-gpu"), null);
});
