/** The trainer consumes the data pipeline's batch type (one definition, in shared/data/batch.ts). */
export { IGNORE_INDEX, countTargets, type Batch } from "../data/batch";
