import type { Document } from "./document";
import { stratifiedSplit, type Split } from "./split";

/** What decides a classification run's test split. */
export interface TestSplitOptions {
  /** Brown is stratified by genre (whole texts), every other corpus by label. */
  by: "label" | "genre";
  splitSeed: number;
  testFraction: number;
}

/**
 * The held-out test split of a labelled corpus (`validation` holds the test documents, `train` the rest), the
 * same one classification runs score on: pretraining with `data.holdout` leaves exactly these documents out.
 */
export function testSplit(docs: readonly Document[], opts: TestSplitOptions): Split<Document> {
  docs.forEach((d, i) => {
    if (d[opts.by] === undefined) throw new Error(`data: document ${i + 1} (${d.id}) has no ${opts.by}; a test split needs a ${opts.by} on every document`);
  });
  return stratifiedSplit(docs, { validationFraction: opts.testFraction, seed: opts.splitSeed, by: opts.by });
}
