/** Backend selection and the wasm kernel fixes. */
export { selectBackend, type BackendName } from "./select";
export { setWasmFixes, wasmFixesEnabled, wasmFixStats, WASM_FIXES } from "./wasm-fixes";
export { registerFusedKernels, fusedKernelsAvailable, GELU_KERNEL, LAYER_NORM_KERNEL, LAYER_NORM_GRAD_KERNEL } from "./fused-kernels";
