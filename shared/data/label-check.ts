/** Checks that class labels look like classes, not like a regression target (which classification cannot learn). */
import type { Document } from "./document";

const NUMBER = /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/;

/**
 * Refuses labels that would silently become meaningless classes: a non-integer number (an STS-B-style score),
 * one number written two ways ("1" and "1.0" would be two classes), or more than two labels with more distinct
 * labels than half the examples (scores or ids, not classes). `field` names the label's key in errors (e.g.
 * `"label" (data.label_field)`); the offending documents are named by id, which is "<file>:<line>" unless the
 * record gives one.
 */
export function checkClassLabels(docs: readonly Document[], field: string): void {
  const byValue = new Map<number, { label: string; id: string }>();
  const distinct = new Set<string>();
  for (const d of docs) {
    const label = d.label;
    if (label === undefined) continue;
    distinct.add(label);
    if (!NUMBER.test(label)) continue;
    const value = Number(label);
    if (!Number.isInteger(value)) {
      throw new Error(
        `${d.id}: field ${field}: label ${JSON.stringify(label)} is not a whole number: the labels look like a regression target (e.g. STS-B scores); ` +
          `regression is not supported, only classification into named classes`,
      );
    }
    const seen = byValue.get(value);
    if (seen === undefined) byValue.set(value, { label, id: d.id });
    else if (seen.label !== label) {
      throw new Error(
        `${d.id}: field ${field}: labels ${JSON.stringify(seen.label)} (${seen.id}) and ${JSON.stringify(label)} are the same number written two ways ` +
          `and would be two classes: write every label the same way`,
      );
    }
  }
  const n = docs.length;
  if (distinct.size > 2 && distinct.size > n / 2) {
    const some = [...distinct].slice(0, 5).map((l) => JSON.stringify(l)).join(", ") + (distinct.size > 5 ? ", …" : "");
    throw new Error(
      `field ${field}: ${distinct.size} distinct labels among ${n} examples (${some}): more than half the examples would be a class of their own, ` +
        `which looks like a regression target or ids; regression is not supported, only classification into classes with several examples each`,
    );
  }
}
