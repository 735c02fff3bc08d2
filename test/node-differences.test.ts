/** configDifferences: what a node's own config says differently from node 0's (the job runs node 0's). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { configDifferences } from "../shared/config/node-differences";

const base = {
  output_dir: "runs/a",
  model: { preset: "bert-tiny", hidden_dropout: 0.1 },
  data: { paths: ["/mnt/a/corpus.txt"], cache_dir: ".cache", max_seq_len: 128 },
  communication: { timeout_ms: 8000 },
};

test("equal configs, and configs differing only in node-local fields, have no differences", () => {
  assert.deepEqual(configDifferences(base, structuredClone(base)), []);
  const moved = { ...structuredClone(base), output_dir: "/other/run", communication: { timeout_ms: 8000, tls: { ca_file: "/n1/ca.pem", cert_file: "/n1/c.pem", key_file: "/n1/k.pem" } } };
  const node0 = { ...structuredClone(base), communication: { timeout_ms: 8000, tls: { ca_file: "/n0/ca.pem", cert_file: "/n0/c.pem", key_file: "/n0/k.pem" } } };
  assert.deepEqual(configDifferences(moved, node0), []);
});

test("data paths count: every node's workers read node 0's", () => {
  const other = structuredClone(base);
  other.data.paths = ["/data/corpus.txt"];
  assert.deepEqual(configDifferences(other, base), ['data.paths: ["/data/corpus.txt"] here, ["/mnt/a/corpus.txt"] on node 0']);
});

test("each differing field is named with both values, nested fields by their dotted path", () => {
  const other = structuredClone(base);
  other.model.preset = "bert-mini";
  other.data.max_seq_len = 64;
  assert.deepEqual(configDifferences(other, base), [
    'model.preset: "bert-mini" here, "bert-tiny" on node 0',
    "data.max_seq_len: 64 here, 128 on node 0",
  ]);
});

test("a field set on one side only counts, and long lists are cut with a count", () => {
  assert.deepEqual(configDifferences({ a: { tls: { ca_file: "x" } } }, { a: {} }), ['a.tls: {"ca_file":"x"} here, unset on node 0']);
  const many = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`f${i}`, i]));
  const out = configDifferences(many, {});
  assert.equal(out.length, 7);
  assert.equal(out[6], "and 3 more field(s)");
});
