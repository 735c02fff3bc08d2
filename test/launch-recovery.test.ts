/**
 * Recovery through the real product: SIGKILL a random worker at a random step of a 3-worker run with
 * `--max-restarts 1`; the run completes with the parameters of an uninterrupted run, and every committed step
 * trained on exactly the uninterrupted run's data. With elastic.min_workers 2 the restart continues on 2 workers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { finalParams, maxAbsDiff, runLaunch, startLaunch, tempDir, tinyArgs } from "./helpers/launch";

const STEPS = 16;
const common = ["--max-steps", String(STEPS), "--set", "training.checkpoint_interval_steps=2", "--set", "communication.heartbeat_timeout_ms=4000"];

interface DataLine {
  step: number;
  rank: number;
  indices: number[];
  epochs: number[];
  coordinator: string;
}

/**
 * Global batch of every step, as the last attempt that ran that step saw it (rank order). Attempts are told
 * apart by their coordinator's address (a restart starts a new coordinator), in order of first appearance.
 */
function globalBatches(file: string): Map<number, string> {
  const lines = fs.readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as DataLine);
  const attemptOrder = [...new Set(lines.map((l) => l.coordinator))];
  const best = new Map<number, { attempt: number; lines: DataLine[] }>();
  for (const l of lines) {
    const attempt = attemptOrder.indexOf(l.coordinator);
    const cur = best.get(l.step);
    if (cur === undefined || attempt > cur.attempt) best.set(l.step, { attempt, lines: [l] });
    else if (attempt === cur.attempt) cur.lines.push(l);
  }
  return new Map([...best].map(([step, { lines: ls }]) => [step, JSON.stringify(ls.sort((a, b) => a.rank - b.rank).flatMap((l) => l.indices.map((x, i) => [x, l.epochs[i]])))]));
}

async function killRandomWorker(runDir: string, run: ReturnType<typeof startLaunch>, atStep: number): Promise<number> {
  const metrics = path.join(runDir, "metrics.jsonl");
  const end = Date.now() + 60_000;
  for (;;) {
    if (fs.existsSync(metrics) && fs.readFileSync(metrics, "utf8").trim().split("\n").length >= atStep) break;
    assert.ok(Date.now() < end, `step ${atStep} not reached:\n${run.stderrSoFar()}`);
    await new Promise((r) => setTimeout(r, 30));
  }
  const logs = fs.readdirSync(path.join(runDir, "logs"));
  const victim = logs[Math.floor(Math.random() * logs.length)];
  const pid = Number(/\(pid (\d+)\)/.exec(fs.readFileSync(path.join(runDir, "logs", victim), "utf8"))![1]);
  process.kill(pid, "SIGKILL");
  return pid;
}

test("a worker killed at a random step is recovered; the result equals an uninterrupted run, same size or shrunk", async () => {
  const ref = tempDir("rec-ref");
  const refLog = path.join(ref, "data.jsonl");
  const r0 = await runLaunch(tinyArgs(ref, "--workers", "3", ...common), { RINGTRAIN_DATA_LOG: refLog });
  assert.equal(r0.code, 0, r0.stderr);
  const refParams = await finalParams(ref);
  const refData = globalBatches(refLog);
  assert.equal(refData.size, STEPS);

  for (const variant of ["restart", "elastic", "snapshot"] as const) {
    const elastic = variant === "elastic";
    const dir = tempDir(`rec-${variant}`);
    const log = path.join(dir, "data.jsonl");
    // snapshot: disk checkpoints only every 8 steps, in-memory snapshots every step.
    const extra = elastic ? ["--set", "elastic.min_workers=2"]
      : variant === "snapshot" ? ["--set", "training.checkpoint_interval_steps=8", "--set", "elastic.snapshot_interval_steps=1", "--set", `elastic.snapshot_dir=${path.join(dir, "snapshots")}`] : [];
    const run = startLaunch(tinyArgs(dir, "--workers", "3", "--max-restarts", "1", ...common, ...extra), { RINGTRAIN_DATA_LOG: log });
    // snapshot: kill before the first disk checkpoint (step 8), where only a snapshot can be the newest resume point
    // (at step 8 the checkpoint ties with the snapshot and, rightly, wins)
    const atStep = 3 + Math.floor(Math.random() * (variant === "snapshot" ? 4 : 6));
    await killRandomWorker(dir, run, atStep);
    const r = await run.done;
    assert.equal(r.code, 0, `recovery failed (killed after step ${atStep}):\n${r.stderr}`);
    const m = new RegExp(`restart 1/1 with ${elastic ? 2 : 3} worker\\(s\\) from the (checkpoint|in-memory snapshot) of step (\\d+)`).exec(r.stderr);
    assert.ok(m, r.stderr);
    assert.doesNotMatch(r.stderr, /to train as before/, "an automatic restart chose its worker count itself: no advice to pass another");
    if (variant === "snapshot") {
      assert.equal(m[1], "in-memory snapshot");
      assert.ok(Number(m[2]) >= atStep - 1, `a snapshot loses at most the step in flight: killed after step ${atStep}, resumed from ${m[2]}`);
      assert.equal(fs.existsSync(path.join(dir, "snapshots")), false, "snapshots are dropped when the run ends");
    } else assert.equal(m[1], "checkpoint");
    const diff = maxAbsDiff(refParams, await finalParams(dir));
    assert.ok(diff < 2e-5, `${variant} run differs from the uninterrupted one by ${diff}`);
    // the resumed run dropped the killed attempt's records after its resume step: each step once, in order
    const steps = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { step: number }).step);
    assert.deepEqual(steps, Array.from({ length: STEPS }, (_, i) => i + 1), `metrics.jsonl steps after recovery: ${steps.join(",")}`);
    // failure.json describes the latest attempt (none failed); the recovered failure is kept in logs/
    assert.equal(fs.existsSync(path.join(dir, "failure.json")), false, "a recovered failure leaves no failure.json");
    const kept = JSON.parse(fs.readFileSync(path.join(dir, "logs", "failure-1.json"), "utf8")) as { reason?: string };
    assert.match(String(kept.reason), /rank \d/, JSON.stringify(kept));
    const data = globalBatches(log);
    assert.equal(data.size, STEPS);
    for (const [step, batch] of refData) assert.equal(data.get(step), batch, `step ${step} trained on different data`);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.rmSync(ref, { recursive: true, force: true });
});
