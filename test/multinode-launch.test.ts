/**
 * Two launches on one machine as two "nodes" (torchrun style: --nodes 2 --node-rank R --coordinator HOST:PORT), with
 * real workers and real gRPC on loopback: what each node says and exits with when a worker on node 1 dies or
 * freezes, and when node 1 does not match the job (wrong token, other communication settings, another config).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { startLaunch, tempDir, tinyArgs } from "./helpers/launch";

const TOKEN = "multinode-test-token";
/** Short deadlines, so each case ends in seconds. */
const FAST = ["--set", "communication.heartbeat_timeout_ms=3000", "--set", "communication.join_timeout_ms=10000", "--set", "communication.timeout_ms=8000"];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

function startNode(rank: number, port: number, out: string, extra: string[], token = TOKEN): ReturnType<typeof startLaunch> {
  return startLaunch(
    tinyArgs(out, "--nodes", "2", "--node-rank", String(rank), "--coordinator", `127.0.0.1:${port}`, "--advertise-host", "127.0.0.1", "--workers", "1", ...FAST, ...extra),
    { RINGTRAIN_TOKEN: token },
  );
}

/** Pid of a rank's worker, from its log file, once `step` steps were done (the node-0 run's metrics.jsonl). */
async function workerPidAfter(logFile: string, metrics: string, step: number): Promise<number> {
  const end = Date.now() + 90_000;
  for (;;) {
    const steps = fs.existsSync(metrics) ? fs.readFileSync(metrics, "utf8").trim().split("\n").filter((l) => l !== "").length : 0;
    if (steps >= step && fs.existsSync(logFile)) {
      const m = /\(pid (\d+)\)/.exec(fs.readFileSync(logFile, "utf8"));
      if (m) return Number(m[1]);
    }
    assert.ok(Date.now() < end, `step ${step} not reached`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Two nodes training a long run into ROOT/n0 and ROOT/n1; resolves with them and node 1's worker pid after step 2. */
async function longRunningPair(root: string): Promise<{ n0: ReturnType<typeof startLaunch>; n1: ReturnType<typeof startLaunch>; pid: number }> {
  const port = await freePort();
  const long = ["--max-steps", "200"];
  const n0 = startNode(0, port, path.join(root, "n0"), long);
  const n1 = startNode(1, port, path.join(root, "n1"), long);
  const pid = await workerPidAfter(path.join(root, "n1", "logs", "rank-1.log"), path.join(root, "n0", "metrics.jsonl"), 2);
  return { n0, n1, pid };
}

test("a worker killed on node 1 is named by node 0; node 1's launch exits too", { timeout: 120_000 }, async () => {
  const root = tempDir("mn-kill");
  const { n0, n1, pid } = await longRunningPair(root);
  killQuietly(pid, "SIGKILL");
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.equal(r0.code, 3, r0.stderr);
  const record = JSON.parse(fs.readFileSync(path.join(root, "n0", "failure.json"), "utf8")) as { rank?: number; reason: string };
  // the dead rank is named, not its neighbour on node 0 whose stream broke
  assert.match(r0.stderr, /job failed: rank 1 \(host [^,]+, pid \d+/, `${JSON.stringify(record, null, 1)}\nnode 1:\n${r1.stderr}`);
  assert.equal(record.rank, 1, JSON.stringify(record, null, 1));
  assert.match(record.reason, /killed by SIGKILL/, `${JSON.stringify(record, null, 1)}\nnode 1:\n${r1.stderr}`);
  assert.notEqual(r1.code, 0, r1.stderr);
  fs.rmSync(root, { recursive: true, force: true });
});

test("a frozen worker on node 1: node 0 names it; node 1's launch stops it once the coordinator is gone (exit 4)", { timeout: 120_000 }, async () => {
  const root = tempDir("mn-stop");
  const { n0, n1, pid } = await longRunningPair(root);
  killQuietly(pid, "SIGSTOP"); // it can no longer notice anything itself
  try {
    const r0 = await n0.done;
    assert.equal(r0.code, 3, r0.stderr);
    assert.match(r0.stderr, /rank 1 .*(stalled|unresponsive)/, r0.stderr);
    const endedAt = Date.now();
    const r1 = await n1.done;
    assert.equal(r1.code, 4, r1.stderr);
    assert.match(r1.stderr, /coordinator 127\.0\.0\.1:\d+ unreachable for \d+ ms/, r1.stderr);
    // heartbeat_timeout_ms (3 s) of silence, then SIGTERM and SIGKILL after short graces
    assert.ok(Date.now() - endedAt < 20_000, `node 1 took ${Date.now() - endedAt} ms to stop after node 0 ended`);
    assert.throws(() => process.kill(pid, 0), "the frozen worker was killed");
  } finally {
    killQuietly(pid, "SIGKILL");
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test("node 1 with the wrong token, other communication settings or another config: both nodes exit 2 naming why", { timeout: 120_000 }, async () => {
  const root = tempDir("mn-mismatch");
  {
    const port = await freePort();
    const n0 = startNode(0, port, path.join(root, "t0"), []);
    const n1 = startNode(1, port, path.join(root, "t1"), [], "not-the-token");
    const r1 = await n1.done;
    assert.equal(r1.code, 2, r1.stderr);
    assert.match(r1.stderr, /wrong job token/);
    const r0 = await n0.done;
    assert.equal(r0.code, 2, r0.stderr);
    assert.match(r0.stderr, /coordinator: refused a join from .*wrong job token/, "node 0 says so at once");
    assert.match(r0.stderr, /missing rank\(s\) 1 .*refused join\(s\): .*wrong job token/);
  }
  {
    const port = await freePort();
    const n0 = startNode(0, port, path.join(root, "c0"), []);
    const n1 = startNode(1, port, path.join(root, "c1"), ["--set", "communication.timeout_ms=9000"]);
    const [r0, r1] = await Promise.all([n0.done, n1.done]);
    assert.equal(r1.code, 2, r1.stderr);
    assert.equal(r0.code, 2, r0.stderr);
    assert.match(r0.stderr, /communication\.timeout_ms: 9000 here, 8000 on node 0/, r0.stderr);
  }
  {
    // the job runs node 0's config: node 1 asking for another learning rate and step count is refused, not overruled
    const port = await freePort();
    const n0 = startNode(0, port, path.join(root, "m0"), []);
    const n1 = startNode(1, port, path.join(root, "m1"), ["--set", "optimizer.lr=0.002", "--max-steps", "7"]);
    const [r0, r1] = await Promise.all([n0.done, n1.done]);
    assert.equal(r1.code, 2, r1.stderr);
    assert.equal(r0.code, 2, r0.stderr);
    assert.match(r0.stderr, /optimizer\.lr: 0\.002 here, [0-9.e-]+ on node 0/, r0.stderr);
    assert.match(r0.stderr, /training\.max_steps: 7 here, \d+ on node 0/, r0.stderr);
    assert.ok(!fs.existsSync(path.join(root, "m0", "metrics.jsonl")) || fs.readFileSync(path.join(root, "m0", "metrics.jsonl"), "utf8").trim() === "", "no step was trained");
  }
  fs.rmSync(root, { recursive: true, force: true });
});

test("two nodes over IPv6: --coordinator [::1]:PORT on node 0, MASTER_ADDR=::1 on node 1; the ring advertises ::1", { timeout: 120_000 }, async (t) => {
  if (!(await canListenIpv6())) {
    t.skip("no IPv6 loopback (::1) on this machine");
    return;
  }
  const root = tempDir("mn-ipv6");
  const port = await freePort();
  const common = (out: string): string[] => tinyArgs(out, "--nodes", "2", "--workers", "1", "--advertise-host", "::1", "--max-steps", "2", ...FAST);
  const n0 = startLaunch([...common(path.join(root, "n0")).filter((a) => a !== "--quiet"), "--node-rank", "0", "--coordinator", `[::1]:${port}`], { RINGTRAIN_TOKEN: TOKEN });
  // torchrun's variables, as a scheduler sets them: a bare IPv6 MASTER_ADDR
  const n1 = startLaunch(common(path.join(root, "n1")), { RINGTRAIN_TOKEN: TOKEN, NODE_RANK: "1", MASTER_ADDR: "::1", MASTER_PORT: String(port) });
  const [r0, r1] = await Promise.all([n0.done, n1.done]);
  assert.equal(r0.code, 0, r0.stderr);
  assert.equal(r1.code, 0, r1.stderr);
  const metrics = fs.readFileSync(path.join(root, "n0", "metrics.jsonl"), "utf8").trim().split("\n");
  assert.equal(metrics.length, 2);
  assert.match(r0.stderr, new RegExp(`coordinator listening on \\[::\\]:${port}`), "node 0 listens on IPv6 (dual stack)");
  fs.rmSync(root, { recursive: true, force: true });
});

async function canListenIpv6(): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(0, "::1", () => server.close(() => resolve(true)));
  });
}
