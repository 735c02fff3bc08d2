import { test } from "node:test";
import assert from "node:assert/strict";
import type { Document } from "../shared/data/document";
import { splitDocuments, stratifiedSplit } from "../shared/data/split";

const docs: Document[] = Array.from({ length: 200 }, (_, i) => ({
  id: `d${i}`,
  text: `text ${i}`,
  label: i % 10 === 0 ? "rare" : "common",
}));

test("split: deterministic, disjoint, complete, order kept", () => {
  const a = splitDocuments(docs, { validationFraction: 0.1, seed: 7 });
  const b = splitDocuments(docs, { validationFraction: 0.1, seed: 7 });
  assert.deepEqual(a, b);
  assert.equal(a.validation.length, 20);
  assert.equal(a.train.length, 180);
  const ids = new Set([...a.train, ...a.validation].map((d) => d.id));
  assert.equal(ids.size, 200, "disjoint and complete");
  const order = (xs: Document[]): number[] => xs.map((d) => Number(d.id.slice(1)));
  assert.deepEqual(order(a.train), [...order(a.train)].sort((x, y) => x - y));
  const c = splitDocuments(docs, { validationFraction: 0.1, seed: 8 });
  assert.notDeepEqual(c.validation.map((d) => d.id), a.validation.map((d) => d.id), "the seed matters");
  assert.equal(splitDocuments(docs, { validationFraction: 0, seed: 1 }).validation.length, 0);
  assert.equal(splitDocuments(docs.slice(0, 3), { validationFraction: 0.01, seed: 1 }).validation.length, 1);
  assert.throws(() => splitDocuments(docs, { validationFraction: 1, seed: 1 }), /validationFraction must be in \[0, 1\)/);
});

test("stratified split keeps class proportions", () => {
  const s = stratifiedSplit(docs, { validationFraction: 0.25, seed: 3 });
  const count = (xs: Document[], l: string): number => xs.filter((d) => d.label === l).length;
  assert.equal(count(s.validation, "rare"), 5);
  assert.equal(count(s.validation, "common"), 45);
  assert.equal(new Set([...s.train, ...s.validation].map((d) => d.id)).size, 200);
  assert.deepEqual(stratifiedSplit(docs, { validationFraction: 0.25, seed: 3 }), s);
  assert.throws(() => stratifiedSplit([{ id: "x", text: "t" }], { validationFraction: 0.5, seed: 1 }), /document x has no label/);
});
