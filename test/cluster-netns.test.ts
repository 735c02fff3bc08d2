/**
 * Simulated cluster: 2 "nodes" as network namespaces on a private bridge, each with the pod DNS names the
 * generated manifests use, each running exactly its pod's command from the manifest. The 2 x 1-worker job must
 * finish with the same weights as a 1-node run with 2 workers (same global batch: DDP equivalence).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { checkpointDirFor } from "../shared/checkpoint/run-checkpoints";
import { repoRoot } from "../shared/paths";
import { netnsUnavailable } from "./helpers/netns";
import { runSimulatedJob } from "./helpers/netns-job";

const run = promisify(execFile);

const STEPS = 3;
const CONFIG = `name: cluster-tiny
output_dir: runs/cluster-tiny
seed: 11
backend: wasm
model: { hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, hidden_dropout: 0.1, attention_dropout: 0.1 }
tokenizer: { vocab_size: 512 }
data: { max_seq_len: 32 }
batch: { global_batch_size: 8, micro_batch_size: 2 }
optimizer: { lr: 0.001 }
training: { max_steps: ${STEPS}, checkpoint_interval_steps: ${STEPS} }
communication: { join_timeout_ms: 60000 }
`;

test("a 2-node job from the generated manifest, on namespaces, equals the 1-node run", { timeout: 180_000 }, async (t) => {
  const why = netnsUnavailable();
  if (why) {
    t.skip(`simulated cluster skipped: ${why}`);
    return;
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "rt-cluster-"));
  try {
    const sim = await runSimulatedJob({ configText: CONFIG, configName: "cluster-tiny.yaml", nodes: 2, workersPerNode: 1, root, timeoutMs: 120_000 });
    assert.deepEqual(sim.codes, [0, 0], `pod exits ${sim.codes.join(",")}\n${sim.podLogs.map((l, i) => `--- pod ${i}\n${l}`).join("\n")}`);
    // Node 1 was started first: it waited for node 0's coordinator instead of failing.
    assert.ok(fs.existsSync(path.join(sim.runDir, "logs", "rank-1.log")));

    const single = path.join(root, "single");
    const cfg = path.join(root, "cluster-tiny.yaml");
    await run(process.execPath, [path.join(repoRoot(), "dist", "launch", "main.js"), "--workers", "2", "--output", single, "--quiet", cfg], { cwd: repoRoot() });

    const a = await loadCheckpoint(checkpointDirFor(sim.runDir, STEPS));
    const b = await loadCheckpoint(checkpointDirFor(single, STEPS));
    assert.equal(a.step, STEPS);
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    let maxDiff = 0;
    for (const [name, ta] of a.tensors) {
      const tb = b.tensors.get(name)!;
      assert.deepEqual(ta.shape, tb.shape, name);
      for (let i = 0; i < ta.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ta.data[i] - tb.data[i]));
    }
    assert.ok(maxDiff <= 1e-6, `max |cluster - single| = ${maxDiff}`);
    t.diagnostic(`2 nodes x 1 worker vs 1 node x 2 workers after ${STEPS} steps: max abs weight difference ${maxDiff}`);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
