/**
 * Starts real allreduce-child processes on loopback, wires their addresses together and collects results.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { workerMallocEnv } from "../../worker/transport/malloc-env";
import type { ChildResult, ChildSpec } from "./allreduce-spec";

/** A started ring of child processes. */
export interface RingProcs {
  procs: ChildProcess[];
  addresses: string[];
  /** Resolves when every child printed `line` (e.g. "STARTED 1"), for the given ranks. */
  waitFor(line: string, ranks: number[]): Promise<void>;
  /** Writes one line to every child's stdin (opens gates). */
  sendLine(line: string): void;
  /** Resolves with each child's result (null for a child that died without writing one). */
  results(): Promise<(ChildResult | null)[]>;
}

const CHILD = path.join(__dirname, "allreduce-child.js");

/** Spawns one child per spec (spec i must have rank i... or any order the test wants) and returns their addresses. */
export async function startChildren(specs: Omit<ChildSpec, "outFile">[], opts: { sendAddresses?: boolean } = {}): Promise<RingProcs & { release(addresses?: string[]): void }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "allreduce-test-"));
  const seen: Set<string>[] = specs.map(() => new Set());
  const waiters: (() => void)[] = [];
  const outFiles: string[] = [];
  const exits: Promise<void>[] = [];
  const procs = specs.map((s, i) => {
    const outFile = path.join(dir, `rank${i}.json`);
    outFiles.push(outFile);
    const specFile = path.join(dir, `spec${i}.json`);
    fs.writeFileSync(specFile, JSON.stringify({ ...s, outFile }));
    const p = spawn(process.execPath, [CHILD, specFile], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...workerMallocEnv() } });
    let buf = "";
    p.stdout.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        seen[i].add(buf.slice(0, nl).trim());
        buf = buf.slice(nl + 1);
        waiters.forEach((w) => w());
      }
    });
    let err = "";
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    exits.push(new Promise((resolve) => p.on("exit", (code) => {
      if (code !== 0 && code !== null) process.stderr.write(`child rank ${s.rank} exited ${code}: ${err}\n`);
      resolve();
    })));
    p.stdin.on("error", () => undefined);
    return p;
  });
  const waitFor = (pred: (i: number) => boolean, ranks: number[]): Promise<void> => new Promise((resolve) => {
    const check = (): void => {
      if (ranks.every(pred)) resolve();
    };
    waiters.push(check);
    check();
  });
  await waitFor((i) => [...seen[i]].some((l) => l.startsWith("ADDRESS ")), specs.map((_, i) => i));
  const addresses = specs.map((_, i) => [...seen[i]].find((l) => l.startsWith("ADDRESS "))!.slice(8));
  const byRank: string[] = [];
  specs.forEach((s, i) => (byRank[s.rank] = addresses[i]));
  const release = (list: string[] = byRank): void => procs.forEach((p) => p.stdin.write(JSON.stringify(list) + "\n"));
  if (opts.sendAddresses !== false) release();
  return {
    procs, addresses, release,
    sendLine: (line) => procs.forEach((p) => p.stdin.write(line + "\n")),
    waitFor: (line, ranks) => waitFor((i) => seen[i].has(line), ranks),
    results: async () => {
      await Promise.all(exits);
      const res = outFiles.map((f) => (fs.existsSync(f) ? (JSON.parse(fs.readFileSync(f, "utf8")) as ChildResult) : null));
      fs.rmSync(dir, { recursive: true, force: true });
      return res;
    },
  };
}

/** Builds the specs of an N-rank ring that all run the same cases. */
export function ringSpecs(N: number, base: Omit<ChildSpec, "outFile" | "rank" | "worldSize">): Omit<ChildSpec, "outFile">[] {
  return Array.from({ length: N }, (_, rank) => ({ ...base, rank, worldSize: N }));
}
