/** Keeping a share of the training labels (low-resource experiments), the same subset for the same seed. */
import { permutation } from "../rng";
import type { Document } from "./document";

/**
 * Keeps `fraction` of the labelled documents (0 < fraction <= 1), or `fraction` documents when it is a whole number
 * above 1, stratified by label: each class keeps round(share x its size), at least one. Each class draws from its own
 * seeded permutation, so a smaller share is a subset of a larger one with the same seed. Original order is kept.
 */
export function labelSubset(docs: readonly Document[], fraction: number, seed: number): Document[] {
  if (!(fraction > 0)) throw new Error(`label fraction must be > 0, got ${fraction}`);
  if (fraction > 1 && !Number.isInteger(fraction)) throw new Error(`label count must be a whole number, got ${fraction}`);
  const share = fraction <= 1 ? fraction : Math.min(1, fraction / Math.max(1, docs.length));
  if (share >= 1) return docs.slice();
  const groups = new Map<string, number[]>();
  docs.forEach((d, i) => {
    if (d.label === undefined) throw new Error(`label subset: document ${d.id} has no label`);
    const g = groups.get(d.label);
    if (g === undefined) groups.set(d.label, [i]);
    else g.push(i);
  });
  const keep = new Uint8Array(docs.length);
  for (const [label, members] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const k = Math.max(1, Math.round(members.length * share));
    const perm = permutation(members.length, seed, 0x1abe1, hashLabel(label));
    for (let j = 0; j < k; j++) keep[members[perm[j]]] = 1;
  }
  return docs.filter((_, i) => keep[i] === 1);
}

function hashLabel(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
