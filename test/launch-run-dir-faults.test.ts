/**
 * Damaged or unusable run directories through the real CLI: a checkpoint whose manifest names another step than its
 * directory is skipped on resume (with a warning naming the manifest) rather than resuming the schedule and data
 * at the wrong step; a checkpoint saved after launch died (its step never recorded in metrics.jsonl) is passed
 * over for the one before it, so every step keeps exactly one record; an output_dir that cannot be written is
 * refused at once with exit 2 and one line, not a stack trace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { finalParams, isAlive, maxAbsDiff, runLaunch, startLaunch, tempDir, tinyArgs, waitFor } from "./helpers/launch";

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

test("a checkpoint whose step metrics.jsonl never recorded is passed over for the one before it", async () => {
  const full = tempDir("unrecorded-full");
  const r = await runLaunch(tinyArgs(full, ...common));
  assert.equal(r.code, 0, r.stderr);
  // The state launch leaves when it is killed during step 6, the last (a checkpoint step): the workers finish the
  // step and save step-000006 without the coordinator, so metrics.jsonl ends at step 5.
  const cut = tempDir("unrecorded-cut");
  fs.cpSync(full, cut, { recursive: true });
  const metrics = path.join(cut, "metrics.jsonl");
  fs.writeFileSync(metrics, fs.readFileSync(metrics, "utf8").split("\n").filter((l) => l !== "" && (JSON.parse(l) as { step: number }).step <= 5).join("\n") + "\n");
  assert.deepEqual(fs.readdirSync(path.join(cut, "checkpoints")).sort(), ["step-000002", "step-000004", "step-000006"]);

  const resumed = await runLaunch(["--resume", cut, "--workers", "2", "--quiet"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /not resuming from step 6 .*metrics\.jsonl ends at step 5.*resuming from step 4 instead/);
  assert.deepEqual(metricSteps(cut), [1, 2, 3, 4, 5, 6]);
  const diff = maxAbsDiff(await finalParams(full), await finalParams(cut));
  assert.ok(diff < 2e-5, `parameters differ from the uninterrupted run's by ${diff}`);
  for (const d of [full, cut]) fs.rmSync(d, { recursive: true, force: true });
});

test("launch killed (SIGKILL) while checkpointing every step: workers exit, --resume records every step once", async () => {
  const dir = tempDir("kill-launch-ckpt");
  const args = ["--workers", "2", "--max-steps", "40", "--set", "training.checkpoint_interval_steps=1", "--set", "training.keep_checkpoints=2",
    "--set", "communication.heartbeat_timeout_ms=3000", "--set", "communication.heartbeat_interval_ms=300", "--set", "communication.timeout_ms=8000"];
  const run = startLaunch(tinyArgs(dir, ...args));
  await waitFor(() => (fs.existsSync(path.join(dir, "metrics.jsonl")) && metricSteps(dir).length >= 4 ? true : undefined), 60_000, "step 4");
  const pids = fs.readdirSync(path.join(dir, "logs")).map((f) => Number(/\(pid (\d+)\)/.exec(fs.readFileSync(path.join(dir, "logs", f), "utf8"))?.[1]));
  run.child.kill("SIGKILL");
  await run.done;
  await waitFor(() => (pids.every((p) => !isAlive(p)) ? true : undefined), 20_000, "the workers to exit");
  const resumed = await runLaunch(["--resume", dir, "--workers", "2", "--quiet"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(metricSteps(dir), Array.from({ length: 40 }, (_, i) => i + 1));
  fs.rmSync(dir, { recursive: true, force: true });
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
