/**
 * A worker that is alive but makes no progress (its heartbeat thread keeps beating while its main thread is
 * stuck) is reported as stalled within communication.stall_timeout_ms, naming its rank, step and phase. The
 * stuck main thread is simulated inside the real worker by RINGTRAIN_TEST_HANG_AT (see worker/train-loop.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { runLaunch, tempDir, tinyArgs } from "./helpers/launch";

test("a rank stuck in compute while its heartbeats continue is reported as stalled", async () => {
  const dir = tempDir("stall");
  const t0 = Date.now();
  const r = await runLaunch(
    tinyArgs(dir, "--workers", "2", "--max-steps", "50", "--set", "communication.stall_timeout_ms=3000", "--set", "communication.heartbeat_interval_ms=200", "--set", "communication.timeout_ms=60000"),
    { RINGTRAIN_TEST_HANG_AT: "1:4" },
  );
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /rank 1 \(host [^)]+\) is stalled: alive \(heartbeats arrive\) but no progress for \d+ ms in step 4, phase compute/);
  assert.ok(Date.now() - t0 < 60_000);
  fs.rmSync(dir, { recursive: true, force: true });
});
