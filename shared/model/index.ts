/** BERT model: config, parameters, forward pass, HF conversion. */
export * from "./config";
export * from "./params";
export * from "./bert";
export * from "./hf";
export { layerNorm, layerNormOps, layerNormFused } from "./ops/layer-norm";
export { gelu, geluOps, geluFused } from "./ops/gelu";
export { softmaxCrossEntropySum } from "./ops/cross-entropy";
export { dropout, type DropoutKey } from "./ops/dropout";
