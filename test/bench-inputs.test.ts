/**
 * `launch bench` with inputs a user plausibly types wrong, as real processes: output paths that cannot be written
 * (a folder, a file in the way, a path under /proc), sizes out of range, a vocabulary too small for the synthetic
 * batches, a rank that fails. Each must end with a one-line message naming the flag and the right exit code
 * (2 for bad input, before anything runs; 3 when a rank fails), never a stack trace or a hang.
 * Also: `--min-bytes`/`--max-bytes` take the same sizes as `--sizes`, the simulator never prints a negative
 * exposed communication time, and a SIGTERM to `launch bench scaling` stops the training job it runs.
 */
import { test } from "node:test";
import { execFileSync } from "node:child_process";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_OK, EXIT_WORKER_FAILURE } from "../shared/exit-codes";
import type { AllreduceResult } from "../launch/bench/allreduce";
import type { SimulationReport } from "../launch/bench/simulate";
import { isAlive, startLaunch, tempDir, TEST_CACHE_DIR, TINY_CONFIG, type LaunchResult } from "./helpers/launch";
import { makePki, opensslUnavailable } from "./helpers/pki";

/** Runs `launch ARGS`; a run still going after `ms` is killed (SIGKILL to its pid) and reported with code null. */
async function launchWithin(args: string[], ms = 30_000): Promise<LaunchResult & { timedOut: boolean }> {
  const { child, done } = startLaunch(args);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
  }, ms);
  const r = await done;
  clearTimeout(timer);
  return { ...r, timedOut };
}

/** A stack frame line, as Node prints it under an uncaught error. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

function assertBadInput(r: LaunchResult & { timedOut: boolean }, message: RegExp, what: string): void {
  assert.equal(r.timedOut, false, `${what}: still running after the timeout (hang)\n${r.stderr}`);
  assert.equal(r.code, EXIT_CONFIG, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.match(r.stderr, message, what);
  assert.doesNotMatch(r.stderr, STACK_FRAME, `${what}: a stack trace instead of a message`);
}

test("bench: --json/--html/--keep-runs that cannot be written exit 2 before anything runs, naming the flag", async () => {
  const dir = tempDir("bench-inputs-out");
  const file = path.join(dir, "a-file");
  fs.writeFileSync(file, "x");
  const cases: [string[], RegExp][] = [
    // an existing folder as the output file: was found only when writing, after the whole benchmark (exit 1, stack)
    [["bench", "allreduce", "--workers", "2", "--sizes", "4KiB", "--iters", "1", "--warmup", "1", "--html", dir], /--html: .* is a directory/],
    [["bench", "simulate", "--gpus", "8", "--json", dir], /--json: .* is a directory/],
    [["bench", "step", "--steps", "1", "--warmup", "0", "--batch", "1", "--seq", "8", "--json", dir], /--json: .* is a directory/],
    // a file where a folder must be
    [["bench", "simulate", "--gpus", "8", "--json", path.join(file, "sim.json")], /--json: cannot write into .*a-file \(ENOTDIR\)/],
    [["bench", "scaling", TINY_CONFIG, "--workers", "1", "--steps", "2", "--warmup-steps", "1", "--keep-runs", file], /--keep-runs: .*a-file is not a folder/],
  ];
  if (fs.existsSync("/proc/self")) {
    // Node's recursive mkdir spins forever under /proc (mkdir says ENOENT although /proc exists): these hung
    cases.push(
      [["bench", "allreduce", "--workers", "2", "--sizes", "4KiB", "--json", "/proc/ringtrain-no-such/ar.json"], /--json: cannot write into \/proc\/ringtrain-no-such \(ENOENT\)/],
      [["bench", "scaling", TINY_CONFIG, "--workers", "1", "--html", "/proc/ringtrain-no-such/r.html"], /--html: cannot write into \/proc\/ringtrain-no-such/],
      [["bench", "scaling", TINY_CONFIG, "--workers", "1", "--keep-runs", "/proc/ringtrain-no-such/runs"], /--keep-runs: cannot write into \/proc\/ringtrain-no-such/],
      [["bench", "simulate", "--gpus", "8", "--json", "/proc/ringtrain-no-such/s.json"], /--json: cannot write into \/proc\/ringtrain-no-such/],
    );
  }
  for (const [args, message] of cases) assertBadInput(await launchWithin(args), message, `launch ${args.join(" ")}`);
  assert.deepEqual(fs.readdirSync(dir), ["a-file"], "nothing written");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench simulate --json FILE creates FILE's folder, as the other benchmarks do", async () => {
  const dir = tempDir("bench-inputs-sim");
  const out = path.join(dir, "new", "folder", "sim.json");
  const r = await launchWithin(["bench", "simulate", "--gpus", "1,2,8", "--json", out]);
  assert.equal(r.code, EXIT_OK, r.stderr);
  const rep = JSON.parse(fs.readFileSync(out, "utf8")) as SimulationReport;
  assert.deepEqual(rep.results.map((x) => x.gpus), [1, 2, 8]);
  // one GPU has no all-reduce: exposed communication is exactly 0, never a rounding "-0.00"
  assert.equal(rep.results[0].exposedCommMs, 0);
  for (const x of rep.results) assert.ok(x.exposedCommMs >= 0, `exposed ${x.exposedCommMs} at ${x.gpus} GPUs`);
  assert.doesNotMatch(r.stdout, /-0\.00/, "a negative zero in the table");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench allreduce: sizes out of range exit 2 naming the flag; --min-bytes/--max-bytes take sizes like --sizes", async () => {
  // more ranks x the largest message than this machine's memory: refused before any rank allocates it
  const ranks = Math.floor(os.totalmem() / 2 ** 34) + 2;
  const cases: [string[], RegExp][] = [
    [["bench", "allreduce", "--workers", "2", "--sizes", "99999999999999999999"], /--sizes: 99999999999999999999 exceeds the largest message, 16 GiB/],
    [["bench", "allreduce", "--workers", "2", "--sizes", "17GiB"], /--sizes: 17GiB exceeds the largest message/],
    [["bench", "allreduce", "--workers", String(ranks), "--sizes", "16GiB"], new RegExp(`--sizes: 16 GiB on ${ranks} ranks needs at least ${ranks} x 16 GiB of memory`)],
    // not a multiple of 4 bytes: the ranks reduced floor(S/4) floats while algbw divided S by the time
    [["bench", "allreduce", "--workers", "2", "--min-bytes", "6", "--max-bytes", "6", "--iters", "1", "--warmup", "1"], /--min-bytes: 6 must be a positive multiple of 4 bytes/],
    [["bench", "allreduce", "--workers", "2", "--max-bytes", "64x"], /--max-bytes: '64x' is not a byte size/],
  ];
  for (const [args, message] of cases) assertBadInput(await launchWithin(args), message, `launch ${args.join(" ")}`);

  const dir = tempDir("bench-inputs-ar");
  const json = path.join(dir, "ar.json");
  const r = await launchWithin(["bench", "allreduce", "--workers", "2", "--min-bytes", "4KiB", "--max-bytes", "64KiB", "--iters", "1", "--warmup", "1", "--json", json]);
  assert.equal(r.code, EXIT_OK, r.stderr);
  const res = JSON.parse(fs.readFileSync(json, "utf8")) as AllreduceResult;
  assert.deepEqual(res.sizes, [4096, 16384, 65536]);
  // the header's columns line up with the rows': "time" ends where the times' "ms" ends
  const lines = r.stdout.split("\n");
  const header = lines.find((l) => /\bimpl\b/.test(l)) ?? "";
  const row = lines.find((l) => /^\s+4 KiB\s+2\s+ringtrain-/.test(l)) ?? "";
  assert.equal(header.indexOf("time") + "time".length, row.indexOf(" ms") + " ms".length, `header and row misaligned:\n${header}\n${row}`);
  assert.equal(header.indexOf("busbw") + "busbw".length, row.search(/\d(?=\s+cpu)/) + 1, `busbw column misaligned:\n${header}\n${row}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench step --vocab below 3 exits 2 naming the flag (the synthetic batches need ids in [2, vocab))", async () => {
  for (const v of ["1", "2"]) {
    assertBadInput(await launchWithin(["bench", "step", "--vocab", v, "--steps", "1", "--warmup", "0", "--batch", "1", "--seq", "8"]), new RegExp(`--vocab: ${v} is not an integer >= 3`), `--vocab ${v}`);
  }
});

test("bench allreduce: a failing rank ends the run with exit 3 and a line naming the rank, no stack trace", async (t) => {
  const missing = opensslUnavailable();
  if (missing !== undefined) return t.skip(missing);
  const dir = tempDir("bench-inputs-tls");
  const job = makePki(dir, "job");
  const other = makePki(dir, "other");
  // a CA that did not sign our certificate: every TLS handshake of the ring fails, so the ranks exit
  const r = await launchWithin(["bench", "allreduce", "--workers", "2", "--sizes", "64KiB", "--iters", "1", "--warmup", "1", "--tls", `${other.ca},${job.cert},${job.key}`], 120_000);
  assert.equal(r.timedOut, false, r.stderr);
  assert.equal(r.code, EXIT_WORKER_FAILURE, r.stderr);
  assert.match(r.stderr, /launch bench allreduce: all-reduce benchmark: rank \d exited with \d+/);
  assert.match(r.stderr, /TLS: /);
  // the ranks' own output (forwarded above it) may hold their stacks; launch ends with its one line, not an uncaught error
  assert.doesNotMatch(r.stderr, /^launch: \w*Error/m, "launch's own error is an uncaught exception");
  assert.match(r.stderr.trimEnd().split("\n").pop() ?? "", /^launch bench allreduce: all-reduce benchmark: rank \d exited/);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Pids of the processes whose command line mentions `marker` (a unique temporary path). */
function pidsMentioning(marker: string): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.includes(marker)).map((l) => Number.parseInt(l.trim(), 10)).filter((p) => p !== process.pid && Number.isInteger(p));
}

/** Pids of the direct children of `parents`. */
function childrenOf(parents: number[]): number[] {
  const out = execFileSync("ps", ["-eo", "pid=,ppid="], { encoding: "utf8" });
  return out.split("\n").map((l) => l.trim().split(/\s+/).map(Number)).filter(([, ppid]) => parents.includes(ppid)).map(([pid]) => pid);
}

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("bench scaling: SIGTERM stops the running training job too and exits 130", async () => {
  const dir = tempDir("bench-inputs-sigterm");
  const runs = path.join(dir, "runs");
  const { child, stderrSoFar } = startLaunch(["bench", "scaling", TINY_CONFIG, "--workers", "2", "--steps", "100000", "--warmup-steps", "1",
    "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--keep-runs", runs]);
  // on exit, not close: an orphaned child job would hold the shared stderr pipe open until it ends
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  try {
    // the job is training once its first step is recorded
    await waitFor("the first step of the 2-worker job", () => fs.existsSync(path.join(runs, "workers-2", "metrics.jsonl")), 120_000);
    const launches = pidsMentioning(runs);
    assert.ok(launches.length >= 1, "the child launch runs with the run directory on its command line");
    const job = [...launches, ...childrenOf(launches)]; // the launch and its workers
    assert.ok(job.length >= 3, `the child launch and its 2 workers: ${job.join(", ")}`);
    process.kill(child.pid!, "SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    const r = await exited;
    clearTimeout(timer);
    assert.equal(r.code, EXIT_INTERRUPTED, `exit ${r.code} (signal ${r.signal})\n${stderrSoFar()}`);
    await waitFor("the last line", () => /launch bench scaling: interrupted by SIGTERM/.test(stderrSoFar()), 10_000);
    // the child launch and its workers are gone too (was: they trained on, orphaned)
    await waitFor("the child launch and its workers to stop", () => job.every((pid) => !isAlive(pid)), 30_000);
  } finally {
    // whatever a failed run left behind: the child launch and its workers
    const left = pidsMentioning(runs);
    for (const pid of [...left, ...childrenOf(left)]) process.kill(pid, "SIGKILL");
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("bench scaling: --set takes one value, so the config after it is the config (it was swallowed into the --set list)", { timeout: 90_000 }, async () => {
  const dir = tempDir("bench-set");
  const r = await launchWithin(["bench", "scaling", "--set", `data.cache_dir=${TEST_CACHE_DIR}`, TINY_CONFIG, "--workers", "1", "--steps", "2", "--warmup-steps", "1", "--json", path.join(dir, "s.json")], 80_000);
  assert.equal(r.code, EXIT_OK, r.stderr);
  assert.doesNotMatch(r.stderr, /expected field\.path=value/);
  assert.ok(fs.existsSync(path.join(dir, "s.json")));
  fs.rmSync(dir, { recursive: true, force: true });
});

test("bench: a single-valued flag given twice is refused naming it (yargs merged both values into a list)", async () => {
  assertBadInput(await launchWithin(["bench", "allreduce", "--workers", "2", "--workers", "4", "--sizes", "4KiB"]), /--workers given 2 times \(2, 4\); give it once/, "bench allreduce --workers twice");
  assertBadInput(await launchWithin(["bench", "simulate", "--gpus", "8", "--gpus", "16"]), /--gpus given 2 times/, "bench simulate --gpus twice");
});

test("a number flag given text names what was typed, not NaN", async () => {
  assertBadInput(await launchWithin(["bench", "step", "--steps", "x"]), /--steps: 'x' is not an integer >= 1/, "bench step --steps x");
  assertBadInput(await launchWithin(["bench", "allreduce", "--iters=abc", "--sizes", "4KiB"]), /--iters: 'abc' is not an integer >= 1/, "bench allreduce --iters=abc");
  assertBadInput(await launchWithin([TINY_CONFIG, "--workers", "two", "--dry-run"]), /--workers must be an integer >= 1 \(got 'two'\)/, "launch --workers two");
});
