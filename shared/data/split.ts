import { permutation } from "../rng";
import type { Document } from "./document";

/** How to split: the share of documents held out, and the seed that picks them. */
export interface SplitOptions {
  validationFraction: number;
  seed: number;
}

/** Train and validation parts; each keeps the documents' original order. */
export interface Split<T> {
  train: T[];
  validation: T[];
}

/**
 * Splits documents into train and validation by a seeded permutation: round(n * fraction) documents
 * (at least one, and at most n - 1, when 0 < fraction and n >= 2) go to validation. Same inputs, same split.
 */
export function splitDocuments<T>(docs: readonly T[], opts: SplitOptions): Split<T> {
  checkFraction(opts.validationFraction);
  return splitGroup(docs, opts.validationFraction, opts.seed, 0);
}

/**
 * Stratified split: each class (by `label`, or `genre`) is split on its own with the same fraction, so the
 * class proportions match in both parts. Every document must have the field.
 */
export function stratifiedSplit(
  docs: readonly Document[],
  opts: SplitOptions & { by?: "label" | "genre" },
): Split<Document> {
  checkFraction(opts.validationFraction);
  const by = opts.by ?? "label";
  const groups = new Map<string, number[]>();
  docs.forEach((d, i) => {
    const key = d[by];
    if (key === undefined) throw new Error(`stratified split by ${by}: document ${d.id} has no ${by}`);
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [i]);
    else g.push(i);
  });
  const inValidation = new Uint8Array(docs.length);
  for (const [key, members] of groups) {
    // Each class draws from its own stream keyed by its name, so adding a class does not move the others.
    const part = splitGroup(members, opts.validationFraction, opts.seed, fnv1a(key));
    for (const i of part.validation) inValidation[i] = 1;
  }
  const out: Split<Document> = { train: [], validation: [] };
  docs.forEach((d, i) => (inValidation[i] ? out.validation : out.train).push(d));
  return out;
}

function splitGroup<T>(items: readonly T[], fraction: number, seed: number, key: number): Split<T> {
  const n = items.length;
  let k = Math.round(n * fraction);
  if (fraction > 0 && n >= 2) k = Math.min(n - 1, Math.max(1, k));
  const perm = permutation(n, seed, key);
  const held = new Uint8Array(n);
  for (let i = 0; i < k; i++) held[perm[i]] = 1;
  const out: Split<T> = { train: [], validation: [] };
  items.forEach((d, i) => (held[i] ? out.validation : out.train).push(d));
  return out;
}

function checkFraction(f: number): void {
  if (!(f >= 0 && f < 1)) throw new Error(`validationFraction must be in [0, 1), got ${f}`);
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
