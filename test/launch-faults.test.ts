/**
 * Failure detection through the real product: a killed worker, a stopped (SIGSTOP) worker and a killed
 * coordinator are each reported within the deadline with a message naming the rank (or the coordinator),
 * and no process is left behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { runLaunch, startLaunch, tempDir, tinyArgs, isAlive, waitFor } from "./helpers/launch";

const FAST = ["--set", "communication.heartbeat_timeout_ms=3000", "--set", "communication.heartbeat_interval_ms=300", "--set", "communication.timeout_ms=8000"];

function workerPids(runDir: string): Map<number, number> {
  const pids = new Map<number, number>();
  const logs = path.join(runDir, "logs");
  if (!fs.existsSync(logs)) return pids;
  for (const f of fs.readdirSync(logs)) {
    const m = /rank (\d+)\/\d+ on .* \(pid (\d+)\)/.exec(fs.readFileSync(path.join(logs, f), "utf8"));
    if (m) pids.set(Number(m[1]), Number(m[2]));
  }
  return pids;
}

/** Waits until the run has completed `step` steps (metrics.jsonl) and all `n` workers logged their pid. */
async function runningWorkers(run: ReturnType<typeof startLaunch>, runDir: string, n: number, step: number): Promise<Map<number, number>> {
  let ended: string | undefined;
  void run.done.then((r) => (ended = `launch exited early with ${r.code}:\n${r.stderr}`));
  await waitFor(() => {
    if (ended !== undefined) throw new Error(ended);
    const f = path.join(runDir, "metrics.jsonl");
    return fs.existsSync(f) && fs.readFileSync(f, "utf8").trim().split("\n").length >= step ? true : undefined;
  }, 60_000, `step ${step}`);
  return waitFor(() => {
    const p = workerPids(runDir);
    return p.size === n ? p : undefined;
  }, 10_000, "worker pids");
}

test("a SIGKILLed worker is named, and the others stop", async () => {
  const dir = tempDir("kill");
  const run = startLaunch(tinyArgs(dir, "--workers", "3", "--max-steps", "400", ...FAST));
  const pids = await runningWorkers(run, dir, 3, 2);
  const t0 = Date.now();
  process.kill(pids.get(1)!, "SIGKILL");
  const r = await run.done;
  const took = Date.now() - t0;
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`rank 1 \\(pid ${pids.get(1)}, host [^)]+\\) was killed by SIGKILL at step \\d+ \\((compute|data|all-reduce|waiting for plan|evaluation|checkpoint)\\)`));
  assert.ok(took < 15_000, `detected and stopped in ${took} ms`);
  for (const pid of pids.values()) assert.equal(isAlive(pid), false);
  const record = JSON.parse(fs.readFileSync(path.join(dir, "failure.json"), "utf8")) as { rank: number; reason: string };
  assert.equal(record.rank, 1);
  // the survivors' reports name the training step once (the ring's own 0-based count used to appear beside it)
  // (a survivor stopped by the coordinator before its own collective noticed writes none; its neighbour does)
  const reports = [0, 2].flatMap((r) => fs.readFileSync(path.join(dir, "logs", `rank-${r}.log`), "utf8").split("\n").filter((l) => l.includes(" failed at step ")));
  assert.ok(reports.length > 0, "a survivor reports the broken ring");
  for (const failed of reports) {
    assert.match(failed, /failed at step \d+ \([^)]*\): all-reduce failed (in phase [a-z-]+|between collectives): rank \d/, failed);
    assert.doesNotMatch(failed, /of step -?\d/, failed);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a stopped (SIGSTOP) worker is reported as stalled, not dead, within the heartbeat deadline", async () => {
  const dir = tempDir("stop");
  const run = startLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "400", ...FAST));
  const pids = await runningWorkers(run, dir, 2, 2);
  const t0 = Date.now();
  process.kill(pids.get(1)!, "SIGSTOP");
  const r = await run.done;
  const took = Date.now() - t0;
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /rank 1 \(host [^,]+, pid \d+, peer [^)]+\) is stalled: alive/);
  assert.ok(took < 15_000, `detected in ${took} ms`);
  for (const pid of pids.values()) assert.equal(isAlive(pid), false, "launch killed the stopped worker too");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("when the coordinator dies, workers stop within the deadline; --resume finishes the run", async () => {
  const dir = tempDir("coord");
  const run = startLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "30", "--set", "training.checkpoint_interval_steps=2", ...FAST));
  const pids = await runningWorkers(run, dir, 2, 3);
  await waitFor(() => (fs.existsSync(path.join(dir, "checkpoints", "step-000002", "checkpoint.json")) ? true : undefined), 30_000, "a checkpoint");
  run.child.kill("SIGKILL"); // launch hosts the coordinator
  await run.done;
  const t0 = Date.now();
  await waitFor(() => ([...pids.values()].every((p) => !isAlive(p)) ? true : undefined), 20_000, "workers to exit");
  assert.ok(Date.now() - t0 < 20_000);
  const log = fs.readFileSync(path.join(dir, "logs", "rank-0.log"), "utf8");
  assert.match(log, /coordinator 127\.0\.0\.1:\d+ unreachable|coordinator .* failed/);
  const resumed = await runLaunch(["--resume", dir, "--workers", "2", "--quiet"]);
  assert.equal(resumed.code, 0, resumed.stderr);
  const steps = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
  assert.equal(steps[steps.length - 1], 30);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("when the coordinator and a rank die together, the survivor names the lost coordinator, not only the closed ring", async () => {
  const dir = tempDir("coord-node");
  const run = startLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "400", ...FAST));
  const pids = await runningWorkers(run, dir, 2, 3);
  // The machine hosting the coordinator and rank 1 goes away: rank 0 sees its ring peer vanish mid-collective,
  // and whichever it notices first, its log must point at the coordinator as the thing lost.
  run.child.kill("SIGKILL");
  process.kill(pids.get(1)!, "SIGKILL");
  await run.done;
  await waitFor(() => (isAlive(pids.get(0)!) ? undefined : true), 20_000, "rank 0 to exit");
  const log = fs.readFileSync(path.join(dir, "logs", "rank-0.log"), "utf8");
  assert.match(log, /coordinator 127\.0\.0\.1:\d+ unreachable|coordinator 127\.0\.0\.1:\d+: \w+ failed/);
  fs.rmSync(dir, { recursive: true, force: true });
});
