/**
 * Ctrl-C and resume through the real CLI: SIGINT to launch stops every worker and leaves the last checkpoint
 * intact; `launch --resume RUN_DIR` continues from it and ends with the same parameters, having trained on the
 * same data, as an uninterrupted run.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { finalParams, maxAbsDiff, runLaunch, startLaunch, tempDir, tinyArgs, isAlive, waitFor } from "./helpers/launch";

const STEPS = 30;
const common = ["--workers", "2", "--max-steps", String(STEPS), "--set", "training.checkpoint_interval_steps=2", "--set", "schedule.warmup_steps=3"];

interface DataLine {
  step: number;
  rank: number;
  indices: number[];
  epochs: number[];
}

function readDataLog(file: string): DataLine[] {
  return fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as DataLine);
}

test("SIGINT stops all workers; --resume continues to the same parameters and data as an uninterrupted run", async () => {
  const full = tempDir("full");
  const fullLog = path.join(full, "data.jsonl");
  const rFull = await runLaunch(tinyArgs(full, ...common), { RINGTRAIN_DATA_LOG: fullLog });
  assert.equal(rFull.code, 0, rFull.stderr);

  const cut = tempDir("cut");
  const cutLog1 = path.join(cut, "data-1.jsonl");
  const run = startLaunch(tinyArgs(cut, ...common), { RINGTRAIN_DATA_LOG: cutLog1 });
  await waitFor(() => (fs.existsSync(path.join(cut, "checkpoints", "step-000002", "checkpoint.json")) ? true : undefined), 60_000, "the first checkpoint");
  const pids = fs.readdirSync(path.join(cut, "logs")).map((f) => {
    const m = /\(pid (\d+)\)/.exec(fs.readFileSync(path.join(cut, "logs", f), "utf8"));
    assert.ok(m, `no pid in ${f}`);
    return Number(m[1]);
  });
  assert.equal(pids.length, 2);
  run.child.kill("SIGINT");
  const r = await run.done;
  assert.equal(r.code, 130, `launch should exit 130 on SIGINT:\n${r.stderr}`);
  assert.match(r.stderr, /interrupted/);
  for (const pid of pids) assert.equal(isAlive(pid), false, `worker pid ${pid} still running after SIGINT`);
  const interruptedAt = Math.max(...readDataLog(cutLog1).map((l) => l.step));
  assert.ok(interruptedAt < STEPS, "the run was interrupted before its end");

  const cutLog2 = path.join(cut, "data-2.jsonl");
  const resumed = await runLaunch(["--resume", cut, "--workers", "2", "--quiet"], { RINGTRAIN_DATA_LOG: cutLog2 });
  assert.equal(resumed.code, 0, resumed.stderr);
  const resumedFrom = Math.min(...readDataLog(cutLog2).map((l) => l.step)) - 1;
  assert.ok(resumedFrom >= 2 && resumedFrom % 2 === 0, `resumed after a checkpoint step, got ${resumedFrom}`);

  // Parameters equal the uninterrupted run's.
  const diff = maxAbsDiff(await finalParams(full), await finalParams(cut));
  assert.ok(diff < 2e-5, `resumed run differs from the uninterrupted one by ${diff}`);

  // Data: the steps kept from the first leg plus the resumed leg are exactly the uninterrupted run's, step by step.
  const key = (l: DataLine): string => `${l.step}/${l.rank}`;
  const seen = new Map<string, string>();
  for (const l of readDataLog(cutLog1)) if (l.step <= resumedFrom) seen.set(key(l), JSON.stringify([l.indices, l.epochs]));
  for (const l of readDataLog(cutLog2)) {
    assert.ok(!seen.has(key(l)), `step ${l.step} rank ${l.rank} trained twice`);
    seen.set(key(l), JSON.stringify([l.indices, l.epochs]));
  }
  const expected = new Map(readDataLog(fullLog).map((l) => [key(l), JSON.stringify([l.indices, l.epochs])]));
  assert.equal(seen.size, expected.size);
  for (const [k, v] of expected) assert.equal(seen.get(k), v, `data of ${k} differs`);
  fs.rmSync(full, { recursive: true, force: true });
  fs.rmSync(cut, { recursive: true, force: true });
});
