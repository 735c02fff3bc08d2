/**
 * Worker processes start with V8's --initial-old-space-size from training.worker_initial_old_space_mb (default 256),
 * so a training step's garbage does not set off a full collection nearly every step; 0 leaves node's default.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { runLaunch, tempDir, TEST_CACHE_DIR, TINY_CONFIG } from "./helpers/launch";
import { workerHeapFlags } from "../launch/child-node-flags";

const FLAG = /V8 initial old space: (\d+) MB/;

/** The heap setting a worker of a finished run logged on start (its rank log), or undefined. */
function loggedHeapSetting(runDir: string, rank: number): string | undefined {
  const log = fs.readFileSync(path.join(runDir, "logs", `rank-${rank}.log`), "utf8");
  return /(V8 initial old space: .*)$/m.exec(log)?.[1];
}

async function train(extra: string[]): Promise<string> {
  const runDir = path.join(tempDir("heap"), "run");
  const r = await runLaunch([TINY_CONFIG, "--workers", "2", "--max-steps", "2", "--output", runDir, "--quiet", "--set", `data.cache_dir=${TEST_CACHE_DIR}`, ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return runDir;
}

test("workerHeapFlags: the V8 flag for a size, none for 0", () => {
  assert.deepEqual(workerHeapFlags(256), ["--initial-old-space-size=256"]);
  assert.deepEqual(workerHeapFlags(0), []);
});

test("every worker starts with the configured initial old space; 0 passes no heap flag", async () => {
  const byDefault = await train([]);
  for (const rank of [0, 1]) assert.equal(FLAG.exec(loggedHeapSetting(byDefault, rank) ?? "")?.[1], "256", `rank ${rank} of the default run`);
  const set = await train(["--set", "training.worker_initial_old_space_mb=64"]);
  assert.equal(FLAG.exec(loggedHeapSetting(set, 1) ?? "")?.[1], "64");
  const off = await train(["--set", "training.worker_initial_old_space_mb=0"]);
  const flags = loggedHeapSetting(off, 0);
  assert.equal(flags, "V8 initial old space: node's default", "the worker logs that no heap flag was passed");
});

test("a negative worker_initial_old_space_mb is refused before anything starts, naming the field", async () => {
  const runDir = path.join(tempDir("heap-bad"), "run");
  const r = await runLaunch([TINY_CONFIG, "--output", runDir, "--set", "training.worker_initial_old_space_mb=-1"]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /training\.worker_initial_old_space_mb/);
  assert.equal(fs.existsSync(runDir), false);
});
