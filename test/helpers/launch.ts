import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadCheckpoint } from "../../shared/checkpoint/checkpoint";
import { listCheckpoints } from "../../shared/checkpoint/run-checkpoints";
import { repoRoot } from "../../shared/paths";

/** The compiled launch CLI. */
export const LAUNCH = path.join(repoRoot(), "dist", "launch", "main.js");
/** Tests share one data cache so Brown is tokenised once per test run. */
export const TEST_CACHE_DIR = path.join(os.tmpdir(), "ringtrain-test-cache");
/** The tiny test config. */
export const TINY_CONFIG = path.join(repoRoot(), "test", "fixtures", "tiny-pretrain.yaml");

/** Output of one launch run. */
export interface LaunchResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `launch ARGS` as a real process; `env` is added to the environment. */
export function startLaunch(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<LaunchResult>; stderrSoFar: () => string } {
  const child = spawn(process.execPath, [LAUNCH, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<LaunchResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, stderrSoFar: () => stderr };
}

/** Runs `launch ARGS` to completion. */
export function runLaunch(args: string[], env: NodeJS.ProcessEnv = {}): Promise<LaunchResult> {
  return startLaunch(args, env).done;
}

/** A fresh temporary directory. */
export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ringtrain-${prefix}-`));
}

/** Parameters of the newest checkpoint of a run directory. */
export async function finalParams(runDir: string): Promise<Map<string, Float32Array>> {
  const list = await listCheckpoints(runDir);
  const last = list[list.length - 1];
  if (!last) throw new Error(`${runDir} has no checkpoint`);
  const ckpt = await loadCheckpoint(last.dir);
  return new Map([...ckpt.tensors].map(([k, v]) => [k, v.data]));
}

/** Largest absolute difference between two parameter sets with the same names and shapes. */
export function maxAbsDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  if (a.size !== b.size) throw new Error(`parameter sets differ in size: ${a.size} vs ${b.size}`);
  let worst = 0;
  for (const [name, x] of a) {
    const y = b.get(name);
    if (!y || y.length !== x.length) throw new Error(`parameter ${name} missing or of different size`);
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  }
  return worst;
}

/** Common overrides: run dir, shared data cache. */
export function tinyArgs(runDir: string, ...extra: string[]): string[] {
  return [TINY_CONFIG, "--output", runDir, "--set", `data.cache_dir=${TEST_CACHE_DIR}`, "--quiet", ...extra];
}

/** Whether a process with this pid exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `get` every 50 ms until it returns a value (not undefined); throws naming `what` after timeoutMs. */
export async function waitFor<T>(get: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
