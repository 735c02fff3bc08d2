/**
 * Damaged or unusable run directories through the real CLI: a checkpoint whose manifest names another step than its
 * directory is skipped on resume (with a warning naming the manifest) rather than resuming the schedule and data
 * at the wrong step; an output_dir that cannot be written is refused at once with exit 2 and one line, not a
 * stack trace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { finalParams, maxAbsDiff, runLaunch, tempDir, tinyArgs } from "./helpers/launch";

// a constant learning rate, so that extending max_steps on resume changes nothing about steps already planned
const common = ["--workers", "2", "--max-steps", "6", "--set", "training.checkpoint_interval_steps=2", "--set", "schedule.decay=constant"];

function metricSteps(runDir: string): number[] {
  return fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
}

test("a checkpoint whose manifest names another step is skipped on resume, falling back to the previous one", async () => {
  const good = tempDir("manifest-good");
  const r = await runLaunch(tinyArgs(good, ...common));
  assert.equal(r.code, 0, r.stderr);
  const bad = tempDir("manifest-bad");
  fs.cpSync(good, bad, { recursive: true });

  // The manifest of step 6 claims step 4 (edited, or copied from another checkpoint); its files still match it.
  const manifest = path.join(bad, "checkpoints", "step-000006", "checkpoint.json");
  fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace(/"step": 6,/, '"step": 4,'));

  const resumedGood = await runLaunch(["--resume", good, "--workers", "2", "--max-steps", "8", "--quiet"]);
  assert.equal(resumedGood.code, 0, resumedGood.stderr);
  const resumedBad = await runLaunch(["--resume", bad, "--workers", "2", "--max-steps", "8", "--quiet"]);
  assert.equal(resumedBad.code, 0, resumedBad.stderr);
  assert.match(resumedBad.stderr, new RegExp(`skipping checkpoint step 6: ${manifest.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: manifest says step 4, but its directory step-000006 is step 6; falling back`));

  // Resumed from step 4: steps 5 and 6 trained again, every step recorded once, same parameters as the intact run.
  assert.deepEqual(metricSteps(bad), [1, 2, 3, 4, 5, 6, 7, 8]);
  const diff = maxAbsDiff(await finalParams(good), await finalParams(bad));
  assert.ok(diff < 2e-5, `parameters differ from the intact run's by ${diff}`);
  for (const d of [good, bad]) fs.rmSync(d, { recursive: true, force: true });
});

test("an output_dir that exists but cannot be written is refused with exit 2 and one line", async () => {
  // root ignores permission bits: /proc/self exists, and no file can be created in it by anyone
  const root = process.getuid?.() === 0;
  const dir = root ? "/proc/self" : tempDir("readonly");
  if (!root) fs.chmodSync(dir, 0o555);
  const r = await runLaunch(tinyArgs(dir, "--workers", "2"));
  if (!root) {
    fs.chmodSync(dir, 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /field output_dir: cannot write in \/\S+: E[A-Z]+/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});
