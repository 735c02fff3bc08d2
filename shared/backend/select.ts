/**
 * Backend selection: native TensorFlow (optional peer dependency), WebAssembly (default here) or pure JS.
 */
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { setWasmFixes } from "./wasm-fixes";

export type BackendName = "auto" | "tensorflow" | "wasm" | "cpu";

const NATIVE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] as const;

/** The installed native binding package (@tensorflow/tfjs-node-gpu or -node), without loading it; null if none. */
export function installedNativeBackend(): string | null {
  for (const pkg of NATIVE_PACKAGES) {
    try {
      require.resolve(pkg);
      return pkg;
    } catch {
      // not installed
    }
  }
  return null;
}

/**
 * Why workers asked to use GPUs (`launch --gpus N`) would run on the CPU instead, or null when they can use them:
 * the backend set to wasm/cpu, or no CUDA build of TensorFlow installed. `native` is installedNativeBackend().
 */
export function gpuFallbackReason(backend: BackendName, native: string | null): string | null {
  if (backend === "wasm" || backend === "cpu") return `backend is '${backend}', which runs on the CPU; set backend: auto (or tensorflow) to use the GPUs`;
  if (native === null) {
    return "@tensorflow/tfjs-node-gpu (an optional dependency) is not installed, so backend auto falls back to wasm on the CPU; `npm install @tensorflow/tfjs-node-gpu` for GPU training";
  }
  if (native !== "@tensorflow/tfjs-node-gpu") return `only ${native} (the CPU build of TensorFlow) is installed; \`npm install @tensorflow/tfjs-node-gpu\` for GPU training`;
  return null;
}

/** Loads the first installed native binding (it registers the 'tensorflow' backend); returns its package name. */
function loadNative(): string | null {
  for (const pkg of NATIVE_PACKAGES) {
    try {
      require.resolve(pkg);
    } catch {
      continue; // not installed
    }
    // Installed but failing to load (ABI mismatch, missing libtensorflow) is an error worth seeing, not a fallback.
    require(pkg);
    return pkg;
  }
  return null;
}

/**
 * Makes `name` the active tfjs backend and returns the name of the backend that runs, for the run log.
 * 'auto' prefers native TensorFlow when installed, then wasm, then cpu. Asking explicitly for 'tensorflow'
 * without @tensorflow/tfjs-node(-gpu) installed is an error. On wasm the kernel fixes of wasm-fixes.ts are installed.
 */
export async function selectBackend(name: BackendName): Promise<string> {
  const order: Exclude<BackendName, "auto">[] = name === "auto" ? ["tensorflow", "wasm", "cpu"] : [name];
  const failures: string[] = [];
  for (const candidate of order) {
    if (candidate === "tensorflow") {
      let pkg: string | null;
      try {
        pkg = loadNative();
      } catch (e) {
        if (name !== "auto") throw new Error(`backend 'tensorflow': native binding failed to load: ${(e as Error).message}`);
        failures.push(`tensorflow: ${(e as Error).message}`);
        continue;
      }
      if (pkg === null) {
        if (name !== "auto") {
          throw new Error(
            `backend 'tensorflow' needs ${NATIVE_PACKAGES.join(" or ")} (optional peer dependency, not installed); ` +
              `install one with npm, or use --backend wasm`,
          );
        }
        continue;
      }
    }
    if (candidate === "wasm") setWasmFixes(true);
    let ok = false;
    try {
      ok = await tf.setBackend(candidate);
    } catch (e) {
      failures.push(`${candidate}: ${(e as Error).message}`);
    }
    if (ok) {
      await tf.ready();
      return tf.getBackend();
    }
    if (name !== "auto") throw new Error(`backend '${candidate}' failed to initialise${failures.length ? `: ${failures.join("; ")}` : ""}`);
  }
  throw new Error(`no tfjs backend could be initialised: ${failures.join("; ")}`);
}
