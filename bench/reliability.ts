/**
 * `npm run bench:reliability [-- --runs 3 --json]`: injects faults into real runs (tiny model, 3 workers on
 * loopback) and measures, per fault, the time to detection (fault -> launch reports it), the time to recovery
 * (fault -> first step completed after the restart) and the steps lost (the step in flight when the fault hit
 * minus the checkpoint step resumed from). Medians over --runs repetitions. Feeds docs/RELIABILITY.md.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { repoRoot } from "../shared/paths";

interface Measurement {
  fault: string;
  detect_ms: number;
  recover_ms: number;
  steps_lost: number;
  outcome: string;
}

const CONFIG = path.join(repoRoot(), "test", "fixtures", "tiny-pretrain.yaml");
const CACHE = path.join(os.tmpdir(), "ringtrain-test-cache");
const HEARTBEAT_TIMEOUT_MS = 3000;

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function metricsSteps(dir: string): number[] {
  const f = path.join(dir, "metrics.jsonl");
  if (!fs.existsSync(f)) return [];
  // The last line may be half written while the run goes on: keep complete lines only.
  return fs.readFileSync(f, "utf8").split("\n").filter((l) => l.endsWith("}")).map((l) => (JSON.parse(l) as { step: number }).step);
}

function workerPid(dir: string, rank: number): number {
  const text = fs.readFileSync(path.join(dir, "logs", `rank-${rank}.log`), "utf8");
  const all = [...text.matchAll(/\(pid (\d+)\)/g)];
  return Number(all[all.length - 1][1]);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** One faulty run: start, wait for `atStep`, inject, time what follows. */
type Fault = "sigkill-worker" | "sigkill-worker+snapshots" | "sigstop-worker" | "sigkill-coordinator";

async function trial(fault: Fault): Promise<Measurement> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-rel-"));
  const args = [
    path.join(repoRoot(), "dist", "launch", "main.js"), CONFIG, "--workers", "3", "--output", dir, "--max-steps", "40",
    "--set", `data.cache_dir=${CACHE}`, "--set", "training.checkpoint_interval_steps=4",
    "--set", `communication.heartbeat_timeout_ms=${HEARTBEAT_TIMEOUT_MS}`, "--set", "communication.heartbeat_interval_ms=300",
    "--set", "communication.timeout_ms=10000", "--max-restarts", fault === "sigkill-coordinator" ? "0" : "1",
    ...(fault === "sigkill-worker+snapshots" ? ["--set", "elastic.snapshot_interval_steps=1"] : []),
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  const events: { t: number; line: string }[] = [];
  child.stderr.on("data", (d: Buffer) => {
    for (const line of d.toString().split("\n")) if (line) events.push({ t: Date.now(), line });
  });
  const done = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const atStep = 6 + Math.floor(Math.random() * 4);
  while (metricsSteps(dir).length < atStep) await sleep(20);
  const inFlight = Math.max(...metricsSteps(dir)) + 1;
  const t0 = Date.now();
  let detect = NaN;
  let recover = NaN;
  if (fault === "sigkill-coordinator") {
    const pids = [0, 1, 2].map((r) => workerPid(dir, r));
    child.kill("SIGKILL");
    const alive = (p: number): boolean => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    };
    while (pids.some(alive) && Date.now() - t0 < 60_000) await sleep(20);
    detect = Date.now() - t0;
    await done;
    fs.rmSync(dir, { recursive: true, force: true });
    return { fault, detect_ms: detect, recover_ms: NaN, steps_lost: NaN, outcome: "workers exited; resume with launch --resume" };
  }
  process.kill(workerPid(dir, 1), fault === "sigstop-worker" ? "SIGSTOP" : "SIGKILL");
  const code = await done;
  // Detection: when the coordinator recorded the failure (failure.json is written at that moment).
  const record = JSON.parse(fs.readFileSync(path.join(dir, "failure.json"), "utf8")) as { time: string };
  detect = Date.parse(record.time) - t0;
  const failed = events.find((e) => e.t >= t0 && /restart 1\/1/.test(e.line));
  const resumedFrom = Number(/(?:checkpoint|snapshot) of step (\d+)/.exec(failed?.line ?? "")?.[1] ?? 0);
  // Recovery: the first step completed after the restart (metrics lines carry their time).
  const lines = fs.readFileSync(path.join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { time: string; step: number });
  const after = lines.find((l) => failed !== undefined && Date.parse(l.time) > failed.t);
  if (after) recover = Date.parse(after.time) - t0;
  fs.rmSync(dir, { recursive: true, force: true });
  return { fault, detect_ms: detect, recover_ms: recover, steps_lost: inFlight - resumedFrom, outcome: code === 0 ? "completed" : `exit ${code}` };
}

/** The flags of this script, parsed and checked. */
export interface ReliabilityBenchArgs {
  runs: number;
  json: boolean;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or a bad value. */
export function parseArgs(argv: string[]): ReliabilityBenchArgs {
  const a = yargs(argv)
    .usage("npm run bench:reliability -- [flags]\n\nInjects faults into real runs (tiny model, 3 workers on loopback) and measures, per fault, the time to detection, the time to recovery and the steps lost.")
    .option("runs", { type: "number", default: 3, requiresArg: true, describe: "repetitions per fault (medians over them)" })
    .option("json", { type: "boolean", default: false, describe: "one JSON line per run instead of the table" })
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  return { runs: a.runs, json: a.json };
}

async function main(): Promise<void> {
  const { runs, json } = parseArgs(hideBin(process.argv));
  const rows: Measurement[] = [];
  for (const fault of ["sigkill-worker", "sigkill-worker+snapshots", "sigstop-worker", "sigkill-coordinator"] as const) {
    for (let i = 0; i < runs; i++) rows.push(await trial(fault));
  }
  if (json) {
    for (const r of rows) process.stdout.write(JSON.stringify(r) + "\n");
    return;
  }
  process.stdout.write(`fault                     runs  detect ms (median)  recover ms (median)  steps lost (median)  outcome\n`);
  for (const fault of [...new Set(rows.map((r) => r.fault))]) {
    const rs = rows.filter((r) => r.fault === fault);
    process.stdout.write(`${fault.padEnd(25)} ${String(rs.length).padStart(4)}  ${median(rs.map((r) => r.detect_ms)).toFixed(0).padStart(18)}  ${median(rs.map((r) => r.recover_ms)).toFixed(0).padStart(19)}  ${String(median(rs.map((r) => r.steps_lost))).padStart(19)}  ${rs.map((r) => r.outcome).join("; ")}\n`);
  }
}

if (require.main === module) void main();
