import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { childNodeFlags } from "./child-node-flags";

/** One worker process to start. */
export interface WorkerSpec {
  rank: number;
  localRank: number;
  env: NodeJS.ProcessEnv;
}

/** How a worker process ended. */
export interface WorkerExit {
  rank: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Starts the local worker processes, writes each one's output to logs/rank-R.log, and stops them all
 * together. `onExit` is called once per worker as it exits.
 */
export class Supervisor {
  private readonly children = new Map<number, ChildProcess>();
  private readonly exits: Promise<WorkerExit>[] = [];

  /** `nodeFlags`: node/V8 flags for every worker, after the launcher's own (childNodeFlags). */
  constructor(
    private readonly script: string,
    private readonly logDir: string,
    private readonly onExit: (exit: WorkerExit) => void,
    private readonly nodeFlags: readonly string[] = [],
  ) {
    fs.mkdirSync(logDir, { recursive: true });
  }

  /** Spawns one worker; its stdout and stderr go to its log file (and stderr lines also to ours when `echoErrors`). */
  start(spec: WorkerSpec, echoErrors: boolean): ChildProcess {
    const log = fs.openSync(path.join(this.logDir, `rank-${spec.rank}.log`), "a");
    const child = spawn(process.execPath, [...childNodeFlags(), ...this.nodeFlags, this.script], {
      env: spec.env,
      stdio: ["ignore", log, echoErrors ? "pipe" : log],
    });
    fs.closeSync(log);
    if (echoErrors && child.stderr) {
      const logStream = fs.createWriteStream(path.join(this.logDir, `rank-${spec.rank}.log`), { flags: "a" });
      child.stderr.pipe(logStream);
      child.stderr.on("data", (chunk: Buffer) => process.stderr.write(prefixLines(`[rank ${spec.rank}] `, chunk.toString())));
    }
    this.children.set(spec.rank, child);
    this.exits.push(
      new Promise<WorkerExit>((resolve) => {
        child.on("exit", (code, signal) => {
          this.children.delete(spec.rank);
          const exit = { rank: spec.rank, pid: child.pid ?? -1, code, signal };
          this.onExit(exit);
          resolve(exit);
        });
        child.on("error", (err) => {
          this.children.delete(spec.rank);
          const exit = { rank: spec.rank, pid: -1, code: 127, signal: null };
          process.stderr.write(`launch: cannot start worker rank ${spec.rank}: ${err.message}\n`);
          this.onExit(exit);
          resolve(exit);
        });
      }),
    );
    return child;
  }

  /** Pids of the workers still running. */
  runningPids(): number[] {
    return [...this.children.values()].map((c) => c.pid ?? -1).filter((p) => p > 0);
  }

  /** Waits up to graceMs for every worker to exit by itself, then SIGTERMs, then SIGKILLs the rest. */
  async stopAll(graceMs: number): Promise<WorkerExit[]> {
    const all = Promise.all(this.exits);
    if (await settlesWithin(all, graceMs)) return all;
    for (const c of this.children.values()) c.kill("SIGTERM");
    if (await settlesWithin(all, Math.min(3000, graceMs))) return all;
    for (const c of this.children.values()) c.kill("SIGKILL");
    return all;
  }

  /** Resolves when every worker has exited. */
  waitAll(): Promise<WorkerExit[]> {
    return Promise.all(this.exits);
  }
}

function prefixLines(prefix: string, text: string): string {
  return text.split(/(?<=\n)/).map((l) => prefix + l).join("");
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const done = p.then(() => true);
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}
