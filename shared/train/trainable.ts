/** A parameter the trainer updates: its name (what the reducer sees), its variable, its shape and decay flag. */
import type * as tf from "@tensorflow/tfjs";
import type { BertModel } from "../model/bert";

/** One trainable parameter. Frozen parameters are simply not in the trainer's list. */
export interface TrainableParam {
  name: string;
  variable: tf.Variable;
  shape: number[];
  /** Receives decoupled weight decay. */
  decay: boolean;
}

/** Every parameter of a model, in registration order (pretraining trains them all). */
export function allParams(model: BertModel): TrainableParam[] {
  return model.specs.map((s) => ({ name: s.name, variable: model.param(s.name), shape: s.shape, decay: s.decay }));
}
