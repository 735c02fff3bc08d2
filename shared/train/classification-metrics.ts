/** Classification metrics from a confusion matrix (rows: true class, columns: predicted class). */

/** Precision, recall, F1 and support of one class. */
export interface ClassMetrics {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

/** Accuracy, macro-F1 (unweighted mean over classes), per-class figures and the matrix itself. */
export interface ClassificationMetrics {
  examples: number;
  accuracy: number;
  macro_f1: number;
  per_class: ClassMetrics[];
  /** confusion[t][p]: examples of true class t predicted as p. */
  confusion: number[][];
  labels: string[];
}

/**
 * Metrics of a flat row-major confusion matrix over `labels`. A class never predicted has precision 0 (sklearn's
 * zero_division=0), one without examples recall 0; F1 is 0 when precision + recall is 0. Macro-F1 averages over
 * the classes that occur in the split's true or predicted labels, as sklearn's f1_score(average="macro") does, so a
 * class absent from a small validation split does not count as a 0.
 */
export function classificationMetrics(flat: ArrayLike<number>, labels: readonly string[]): ClassificationMetrics {
  const k = labels.length;
  if (flat.length !== k * k) throw new Error(`confusion matrix has ${flat.length} cells, expected ${k * k} for ${k} labels`);
  const confusion = Array.from({ length: k }, (_, t) => Array.from({ length: k }, (_, p) => flat[t * k + p]));
  let total = 0;
  let diag = 0;
  const perClass: ClassMetrics[] = [];
  for (let c = 0; c < k; c++) {
    let row = 0;
    let col = 0;
    for (let j = 0; j < k; j++) {
      row += confusion[c][j];
      col += confusion[j][c];
    }
    const tp = confusion[c][c];
    total += row;
    diag += tp;
    const precision = col > 0 ? tp / col : 0;
    const recall = row > 0 ? tp / row : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    perClass.push({ label: labels[c], precision, recall, f1, support: row });
  }
  return {
    examples: total,
    accuracy: total > 0 ? diag / total : NaN,
    macro_f1: macroF1(perClass, confusion),
    per_class: perClass,
    confusion,
    labels: [...labels],
  };
}

function macroF1(perClass: readonly ClassMetrics[], confusion: readonly number[][]): number {
  const present = perClass.filter((m, c) => m.support > 0 || confusion.some((row) => row[c] > 0));
  return present.length > 0 ? present.reduce((a, m) => a + m.f1, 0) / present.length : NaN;
}

/** A plain-text report: accuracy, macro-F1, per-class table and the confusion matrix. */
export function formatClassificationReport(m: ClassificationMetrics, title: string): string {
  const w = Math.max(8, ...m.labels.map((l) => l.length));
  // every confusion column as wide as the longest label, so a name like "belles_lettres" keeps its counts under it
  const cw = Math.max(8, ...m.labels.map((l) => l.length), ...m.confusion.flat().map((x) => String(x).length));
  const lines = [
    `${title}: ${m.examples} examples, accuracy ${(100 * m.accuracy).toFixed(2)}%, macro-F1 ${(100 * m.macro_f1).toFixed(2)}%`,
    `  ${"class".padEnd(w)}  precision  recall     f1  support`,
    ...m.per_class.map((c) => `  ${c.label.padEnd(w)}  ${c.precision.toFixed(4).padStart(9)}  ${c.recall.toFixed(4).padStart(6)}  ${c.f1.toFixed(4).padStart(5)}  ${String(c.support).padStart(7)}`),
    `  confusion (rows = true, columns = predicted):`,
    `  ${"".padEnd(w)}  ${m.labels.map((l) => l.padStart(cw)).join(" ")}`,
    ...m.confusion.map((row, t) => `  ${m.labels[t].padEnd(w)}  ${row.map((x) => String(x).padStart(cw)).join(" ")}`),
  ];
  return lines.join("\n");
}
