/**
 * CPU cost of the per-rank timeline (worker/timeline.ts) without the noise of a whole training run: records the
 * events of STEPS synthetic steps (plan wait, 3 micro-batches of data wait + forward+backward, one all-reduce of
 * BUCKETS buckets with one reduce-scatter and one all-gather chunk each, update, step), as the training loop and
 * the communicator report them, then times the first flush (serialise + write + rename) of the whole file and a
 * later one (only new events are serialised; the file is rewritten from the kept buffers).
 *
 *   npx tsc -p . && node dist/bench/timeline-overhead.js [STEPS=20000] [BUCKETS=4]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { TimelineRecorder } from "../worker/timeline";
import { traceNow } from "../worker/collective/collective-event";

function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

/** The arguments of this script. */
export interface TimelineOverheadArgs {
  steps: number;
  buckets: number;
}

/** Parses argv (without node and the script); exits with a message on an unknown flag or an extra argument. */
export function parseArgs(argv: string[]): TimelineOverheadArgs {
  let parsed: TimelineOverheadArgs | undefined;
  yargs(argv)
    .command(
      "$0 [steps] [buckets]",
      "CPU cost of the per-rank timeline: records the events of STEPS synthetic steps, then times the first flush of the whole file and a later one.",
      (y) =>
        y
          .positional("steps", { type: "number", default: 20_000, describe: "synthetic steps recorded (after 500 warm-up steps)" })
          .positional("buckets", { type: "number", default: 4, describe: "all-reduce buckets per step" }),
      (a) => {
        parsed = { steps: a.steps, buckets: a.buckets };
      },
    )
    .parserConfiguration({ "duplicate-arguments-array": false, "boolean-negation": false })
    .strict()
    .parseSync();
  if (parsed === undefined) throw new Error("usage: node dist/bench/timeline-overhead.js [STEPS] [BUCKETS]");
  return parsed;
}

function main(): void {
  const { steps, buckets } = parseArgs(hideBin(process.argv));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ringtrain-timeline-bench-"));
  const rec = new TimelineRecorder(dir, 0, os.hostname(), { handleProcessEnd: false, flushIntervalMs: 3_600_000, maxEvents: 1e9 });
  const elements = Array.from({ length: buckets }, () => 250_000);
  const oneStep = (s: number): void => {
    const t = performance.now();
    rec.planWait(t, s, false);
    for (let m = 0; m < 3; m++) {
      rec.endSpan("data wait", "data", t, { step: s, micro: m });
      rec.endSpan("forward+backward", "compute", t, { step: s, micro: m });
    }
    const o = rec.collective.observe;
    o({ kind: "start", at: traceNow(), collective: s, step: s - 1, buckets: elements });
    for (let b = 0; b < buckets; b++) o({ kind: "bucket-start", at: traceNow(), collective: s, bucket: b });
    o({ kind: "begin", at: traceNow(), collective: s });
    for (let b = 0; b < buckets; b++) {
      o({ kind: "chunk", at: traceNow(), collective: s, bucket: b, phase: "reduce-scatter", bytes: 500_000 });
      o({ kind: "chunk", at: traceNow(), collective: s, bucket: b, phase: "all-gather", bytes: 500_000 });
    }
    o({ kind: "end", at: traceNow(), collective: s, ok: true });
    rec.update(t, s);
    rec.endSpan("step", "step", t, { step: s, tokens: 4096 });
  };
  for (let s = 1; s <= 500; s++) oneStep(s); // warm-up
  const c0 = process.cpuUsage();
  for (let s = 501; s < 501 + steps; s++) oneStep(s);
  const recordMs = cpuMs(c0);
  const c1 = process.cpuUsage();
  rec.flush();
  const flushMs = cpuMs(c1);
  // A later periodic flush: the new step's events are serialised, the rest is written out as it is.
  oneStep(501 + steps);
  const c2 = process.cpuUsage();
  const w2 = performance.now();
  rec.flush();
  const rewriteMs = cpuMs(c2);
  const rewriteWall = performance.now() - w2;
  const size = fs.statSync(rec.file).size;
  rec.close();
  fs.rmSync(dir, { recursive: true, force: true });
  const total = steps + 500;
  process.stdout.write(
    `record: ${((1000 * recordMs) / steps).toFixed(1)} us CPU per step (${buckets} buckets)\n` +
      `first flush of ${total} steps (serialises them all): ${flushMs.toFixed(0)} ms CPU, ${(size / 1e6).toFixed(1)} MB (${Math.round(size / total)} bytes per step)\n` +
      `a later flush rewriting that file: ${rewriteMs.toFixed(0)} ms CPU, ${rewriteWall.toFixed(0)} ms wall (the next one waits >= 100x that)\n`,
  );
}

if (require.main === module) main();
