/** Training-step pieces: batch type, reducers, optimizer, schedule, clipping, trainer, evaluation. */
export * from "./batch";
export * from "./reducer";
export * from "./adamw";
export * from "./schedule";
export * from "./clip";
export * from "./objective";
export * from "./trainer";
export * from "./eval";
export * from "./trainable";
export * from "./classification-objective";
export * from "./classification-metrics";
