/**
 * Classification results of a step: the ranks' confusion matrices summed, turned into accuracy / macro-F1 /
 * per-class precision and recall, attached to the step's metrics and written to the run directory.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { EvalResult, StepReport } from "../proto/coordinator";
import { classificationMetrics, type ClassificationMetrics } from "../shared/train/classification-metrics";
import type { StepMetrics } from "./metrics";

/** File in the run directory holding the latest validation and the test metrics of a classification run. */
export const CLASSIFICATION_METRICS_FILE = "classification_metrics.json";

/** Sums the ranks' shares of one evaluation (element-wise for the confusion matrix); undefined when none evaluated. */
export function sumEvals(evals: readonly (EvalResult | null)[]): EvalResult | undefined {
  const parts = evals.filter((e): e is EvalResult => e !== null && e.sequences > 0);
  if (parts.length === 0) return undefined;
  const k = parts[0].num_classes;
  const out: EvalResult = { loss_sum: 0, target_count: 0, correct_count: 0, sequences: 0, num_classes: k, confusion: new Array<number>(k * k).fill(0) };
  for (const e of parts) {
    if (e.num_classes !== k || e.confusion.length !== k * k) throw new Error(`ranks report evaluations of different shapes (${e.num_classes} vs ${k} classes)`);
    out.loss_sum += e.loss_sum;
    out.target_count += e.target_count;
    out.correct_count += e.correct_count;
    out.sequences += e.sequences;
    e.confusion.forEach((x, i) => (out.confusion[i] += x));
  }
  return out;
}

/** Adds classification metrics (validation and test) to a step's metrics and records them in the run directory. */
export function addClassificationMetrics(m: StepMetrics, reports: readonly StepReport[], labels: readonly string[], runDir: string): void {
  const val = sumEvals(reports.map((r) => r.eval));
  const test = sumEvals(reports.map((r) => r.test_eval));
  const out: { step: number; validation?: ClassificationMetrics & { loss: number }; test?: ClassificationMetrics & { loss: number } } = { step: m.step };
  if (val !== undefined && val.num_classes > 0) {
    out.validation = { ...classificationMetrics(val.confusion, labels), loss: val.loss_sum / val.target_count };
    if (m.eval !== undefined) {
      m.eval.macro_f1 = out.validation.macro_f1;
      delete m.eval.perplexity; // exp(cross-entropy over classes) is no language-model perplexity
    }
  }
  if (test !== undefined && test.num_classes > 0) out.test = { ...classificationMetrics(test.confusion, labels), loss: test.loss_sum / test.target_count };
  if (out.validation === undefined && out.test === undefined) return;
  m.classification = out;
  const file = path.join(runDir, CLASSIFICATION_METRICS_FILE);
  let previous: Record<string, unknown> = {};
  try {
    previous = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch {
    // first evaluation of the run
  }
  const record = { ...previous, ...(out.validation ? { validation: { step: m.step, ...out.validation } } : {}), ...(out.test ? { test: { step: m.step, ...out.test } } : {}) };
  fs.mkdirSync(runDir, { recursive: true });
  fs.writeFileSync(file, JSON.stringify(record, null, 2) + "\n");
}
