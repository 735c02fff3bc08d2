/**
 * Corpora of too few documents for a validation split by whole documents (one text file) are cut into blocks of
 * consecutive lines first, so the run still validates (as HF's run_mlm.py splits a text file by lines).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { cutIntoLineBlocks, tooFewDocumentsToSplit } from "../shared/data/line-blocks";
import { runLaunch, tempDir, tinyArgs } from "./helpers/launch";
import { loadCorpus } from "../shared/data";

test("too few documents: none held out, or one document is more than twice the asked share", () => {
  assert.equal(tooFewDocumentsToSplit(1, 0.05), true);
  assert.equal(tooFewDocumentsToSplit(2, 0.05), true, "one of two documents is 50 %");
  assert.equal(tooFewDocumentsToSplit(9, 0.05), true);
  assert.equal(tooFewDocumentsToSplit(10, 0.05), false, "one of ten is 10 %, at most twice 5 %");
  assert.equal(tooFewDocumentsToSplit(500, 0.05), false);
  assert.equal(tooFewDocumentsToSplit(1, 0), false, "no split asked for");
});

test("blocks are whole consecutive lines, in order, that put the text back together", () => {
  const lines = Array.from({ length: 3000 }, (_, i) => `line ${i} of the only document in this corpus`);
  const text = lines.join("\n");
  const blocks = cutIntoLineBlocks([{ id: "doc", text, genre: "g" }]);
  assert.ok(blocks.length >= 50 && blocks.length <= 101, `${blocks.length} blocks`);
  assert.equal(blocks.map((b) => b.text).join("\n"), text);
  blocks.forEach((b, k) => {
    assert.equal(b.id, `doc#${k}`);
    assert.equal(b.genre, "g");
    assert.ok(b.text.startsWith("line "), "a block starts at a line start");
  });
  const short = { id: "s", text: "one short line" };
  assert.deepEqual(cutIntoLineBlocks([short]), [short], "short documents stay whole");
});

test("a run on one text file validates on held-out blocks of it", { timeout: 120_000 }, async () => {
  const dir = tempDir("one-file");
  const file = path.join(dir, "corpus.txt");
  // real text: twenty Brown documents in one file, one sentence per line
  fs.writeFileSync(file, loadCorpus({ kind: "brown" }).slice(0, 20).map((d) => d.text.replace(/ ([.?!]) /g, " $1\n")).join("\n"));
  const run = path.join(dir, "run");
  const args = tinyArgs(run, "--set", "data.corpus=files", "--set", `data.paths=["${file}"]`, "--set", "data.validation_fraction=0.05", "--set", "training.eval_interval_steps=2", "--max-steps", "2").filter((a) => a !== "--quiet");
  const r = await runLaunch(args);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /1 document\(s\) are too few for a 5% validation split by whole documents: cut into \d+ blocks of consecutive lines/);
  const m = /data: \d+ documents -> (\d+) train \/ (\d+) validation sequences/.exec(r.stderr);
  assert.ok(m, r.stderr);
  const [train, validation] = [Number(m[1]), Number(m[2])];
  assert.ok(validation > 0 && validation < train / 5, `${train} train / ${validation} validation`);
  const last = JSON.parse(fs.readFileSync(path.join(run, "metrics.jsonl"), "utf8").trim().split("\n").pop()!) as { eval?: { loss: number; sequences: number } };
  assert.ok(last.eval !== undefined && Number.isFinite(last.eval.loss) && last.eval.sequences > 0, JSON.stringify(last.eval));
  fs.rmSync(dir, { recursive: true, force: true });
});
