/** Gradient compression with error feedback (top-k, PowerSGD) as a GradientReducer over the ring. */
export { CompressingReducer, COMPRESSION_COUNTERS_TENSOR, DEFAULT_GRADIENT_COMPRESSION, type AllReduceGroup, type GradientCompressionSettings } from "./compressing-reducer";
export { compressionStateFile, loadCompressionState, saveCompressionState } from "./compression-state";
export { createReducer, type MeasuredReducer } from "./create-reducer";
export { topkCount, topkIndices, MAX_EXACT_FLOAT32_INDEX } from "./topk";
