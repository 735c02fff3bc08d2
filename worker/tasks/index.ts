/** Picks the task a run config asks for. */
import { createClassificationTask } from "./classification-task";
import { createMlmTask } from "./mlm-task";
import type { Task, TaskContext } from "./task";

/** The Task of the run: MLM pretraining, or fine-tuning a classifier (config `task`). */
export function createTask(ctx: TaskContext): Promise<Task> {
  return ctx.cfg.task === "classification" ? createClassificationTask(ctx) : createMlmTask(ctx);
}

export type { MicroBatch, Task, TaskContext } from "./task";
