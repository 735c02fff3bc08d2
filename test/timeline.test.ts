/**
 * The per-rank timeline (worker/timeline.ts, `launch --timeline`): the recorder's files are complete JSON,
 * replaced atomically; collective observations become properly nested spans; rank files merge into one trace;
 * and a real 2-worker run writes, for every step and rank, compute and all-reduce spans with each fusion
 * bucket's reduce-scatter and all-gather inside the all-reduce. No timed assertions.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  TID_BUCKET_BASE, TID_COLLECTIVE, TID_GC, TID_STEP, TimelineRecorder, mergeTimelines, readTimeline, type TraceEvent,
} from "../worker/timeline";
import { traceNow } from "../worker/collective/collective-event";
import { runLaunch, startLaunch, tempDir, tinyArgs, waitFor } from "./helpers/launch";

const end = (e: TraceEvent): number => e.ts + (e.dur ?? 0);
const complete = (events: TraceEvent[]): TraceEvent[] => events.filter((e) => e.ph === "X");

/** Asserts that complete events of every (pid, tid) are disjoint or nested, never partly overlapping. */
function assertProperlyNested(events: TraceEvent[], what: string): void {
  const rows = new Map<string, TraceEvent[]>();
  for (const e of complete(events)) {
    const k = `${e.pid}/${e.tid}`;
    rows.set(k, [...(rows.get(k) ?? []), e]);
  }
  for (const [k, row] of rows) {
    row.sort((a, b) => a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
    const stack: TraceEvent[] = [];
    for (const e of row) {
      while (stack.length > 0 && end(stack[stack.length - 1]) <= e.ts) stack.pop();
      const parent = stack[stack.length - 1];
      if (parent !== undefined) {
        assert.ok(end(e) <= end(parent), `${what}: on thread ${k}, "${e.name}" [${e.ts}, ${end(e)}] overlaps "${parent.name}" [${parent.ts}, ${end(parent)}] without nesting`);
      }
      stack.push(e);
    }
  }
}

/** Asserts the basic shape of every event: integer ts, dur >= 0 for complete events. */
function assertWellFormed(events: TraceEvent[], what: string): void {
  for (const e of events) {
    assert.ok(["X", "M", "i"].includes(e.ph), `${what}: unexpected phase ${e.ph}`);
    assert.ok(Number.isInteger(e.pid) && Number.isInteger(e.tid), `${what}: pid/tid of ${e.name}`);
    if (e.ph === "X") {
      assert.ok(Number.isInteger(e.ts) && e.ts > 0, `${what}: ts of ${e.name}`);
      assert.ok(Number.isInteger(e.dur) && e.dur! >= 0, `${what}: dur of ${e.name} is ${e.dur}`);
    }
  }
}

test("the recorder writes complete JSON atomically, turns collective observations into nested spans, and continues an existing file", () => {
  const dir = tempDir("timeline-unit");
  const rec = new TimelineRecorder(dir, 3, "host-a", { handleProcessEnd: false, flushIntervalMs: 3_600_000 });
  const t0 = performance.now();
  rec.planWait(t0, 7, false);
  rec.span("forward+backward", "compute", t0 + 1, t0 + 2, { step: 7, micro: 0 });
  // A collective with two buckets, as the communicator reports it (absolute times).
  const a = traceNow();
  const obs = rec.collective.observe;
  obs({ kind: "start", at: a, collective: 0, step: 6, buckets: [1000, 10] });
  obs({ kind: "bucket-start", at: a + 0.1, collective: 0, bucket: 0 });
  obs({ kind: "bucket-start", at: a + 0.2, collective: 0, bucket: 1 });
  obs({ kind: "begin", at: a + 0.5, collective: 0 });
  obs({ kind: "chunk", at: a + 1, collective: 0, bucket: 0, phase: "reduce-scatter", bytes: 2000 });
  obs({ kind: "chunk", at: a + 1.5, collective: 0, bucket: 1, phase: "reduce-scatter", bytes: 20 });
  obs({ kind: "chunk", at: a + 2, collective: 0, bucket: 0, phase: "all-gather", bytes: 2000 });
  obs({ kind: "chunk", at: a + 2.5, collective: 0, bucket: 1, phase: "all-gather", bytes: 20 });
  obs({ kind: "end", at: a + 3, collective: 0, ok: true });
  rec.flush();
  const file = path.join(dir, "rank-3.json");
  const doc = JSON.parse(fs.readFileSync(file, "utf8")) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
  assert.equal(doc.displayTimeUnit, "ms");
  assert.deepEqual(fs.readdirSync(dir), ["rank-3.json"], "no temp file is left behind");
  const ev = doc.traceEvents;
  assertWellFormed(ev, "unit");
  assert.ok(ev.every((e) => e.pid === 3));
  assert.match(String(ev.find((e) => e.name === "process_name")?.args?.name), /rank 3 \(host-a/);
  const ar = ev.find((e) => e.name === "all-reduce")!;
  assert.equal(ar.tid, TID_COLLECTIVE);
  assert.equal(ar.args?.step, 7, "collective events carry the training step of the plan");
  assert.equal(ar.args?.ring_step, 6);
  assert.equal(ar.args?.buckets, 2);
  assert.equal(ar.args?.bytes, 4040);
  const wait = ev.find((e) => e.name === "wait: left neighbour")!;
  assert.equal(wait.dur, Math.round((a + 0.5) * 1000) - Math.round(a * 1000));
  for (const b of [0, 1]) {
    const rs = ev.find((e) => e.name === "reduce-scatter" && e.tid === TID_BUCKET_BASE + b)!;
    const ag = ev.find((e) => e.name === "all-gather" && e.tid === TID_BUCKET_BASE + b)!;
    assert.equal(rs.args?.bucket, b);
    assert.equal(end(rs), ag.ts, "the all-gather span starts where the reduce-scatter span ends");
    assert.ok(rs.ts >= ar.ts && end(ag) <= end(ar), "bucket phases lie inside the all-reduce");
    assert.ok(ev.some((e) => e.ph === "M" && e.name === "thread_name" && e.tid === TID_BUCKET_BASE + b && e.args?.name === `bucket ${b}`));
  }
  assertProperlyNested(ev, "unit");

  // Events recorded after the last flush are not in the file yet (a crash loses at most one flush interval),
  // and the file stays complete JSON.
  rec.span("evaluation", "eval", t0 + 3, t0 + 4, { step: 7 });
  assert.equal(readTimeline(file).filter((e) => e.name === "evaluation").length, 0);
  // A failed collective still leaves spans, marked failed.
  obs({ kind: "start", at: a + 10, collective: 1, step: 7, buckets: [1000] });
  obs({ kind: "chunk", at: a + 11, collective: 1, bucket: 0, phase: "reduce-scatter", bytes: 2000 });
  obs({ kind: "end", at: a + 12, collective: 1, ok: false, error: "rank 1 died" });
  rec.close();
  const after = readTimeline(file);
  assert.equal(after.filter((e) => e.name === "evaluation").length, 1);
  const failed = after.find((e) => e.name === "all-reduce" && e.args?.ok === false)!;
  assert.equal(failed.args?.error, "rank 1 died");
  assert.ok(after.some((e) => e.name === "reduce-scatter" && e.args?.failed === true));
  assertProperlyNested(after, "unit after failure");

  // A second recorder for the same rank (a resumed run) continues the file.
  const again = new TimelineRecorder(dir, 3, "host-a", { handleProcessEnd: false, flushIntervalMs: 3_600_000 });
  again.span("forward+backward", "compute", t0 + 5, t0 + 6, { step: 8, micro: 0 });
  again.close();
  const continued = readTimeline(file);
  assert.equal(continued.filter((e) => e.name === "all-reduce").length, 2);
  assert.equal(continued.filter((e) => e.name === "forward+backward").length, 2);
  assert.equal(continued.filter((e) => e.name === "process_name").length, 1);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("mergeTimelines joins rank files into one trace (one process per rank) and skips unreadable ones", () => {
  const dir = tempDir("timeline-merge");
  for (const r of [1, 0, 10]) {
    const rec = new TimelineRecorder(dir, r, `host-${r}`, { handleProcessEnd: false, flushIntervalMs: 3_600_000 });
    const t = performance.now();
    rec.span("forward+backward", "compute", t, t + 1, { step: 1, micro: 0 });
    rec.close();
  }
  fs.writeFileSync(path.join(dir, "rank-2.json"), '{"traceEvents":[{"name":"x"'); // torn (never written by the recorder)
  fs.writeFileSync(path.join(dir, "notes.txt"), "ignored");
  const out = path.join(dir, "timeline.json");
  const merged = mergeTimelines(dir, out);
  assert.deepEqual(merged.ranks, [0, 1, 10]);
  assert.equal(merged.skipped.length, 1);
  assert.match(merged.skipped[0], /rank-2\.json/);
  const doc = JSON.parse(fs.readFileSync(out, "utf8")) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
  assert.equal(doc.displayTimeUnit, "ms");
  assert.equal(doc.traceEvents.length, merged.events);
  for (const r of [0, 1, 10]) {
    const name = doc.traceEvents.find((e) => e.name === "process_name" && e.pid === r);
    assert.match(String(name?.args?.name), new RegExp(`^rank ${r} \\(host-${r},`));
    assert.equal(doc.traceEvents.filter((e) => e.name === "forward+backward" && e.pid === r).length, 1);
  }
  assert.ok(!fs.readdirSync(dir).some((f) => f.includes(".tmp-")), "no temp file is left behind");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("launch --timeline: every rank and step has compute and all-reduce spans, buckets nest inside; without it, no timeline", async () => {
  const off = tempDir("timeline-off");
  const ro = await runLaunch(tinyArgs(off, "--workers", "2", "--max-steps", "2"));
  assert.equal(ro.code, 0, ro.stderr);
  assert.ok(!fs.existsSync(path.join(off, "timeline")), "no timeline folder without --timeline");
  assert.ok(!fs.existsSync(path.join(off, "timeline.json")), "no merged timeline without --timeline");
  fs.rmSync(off, { recursive: true, force: true });

  const dir = tempDir("timeline-on");
  const steps = 3;
  // Small buckets and chunks: several buckets, several chunks per bucket; an evaluation and a checkpoint.
  const r = await runLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", String(steps), "--timeline",
    "--set", "communication.bucket_bytes=16384", "--set", "communication.chunk_bytes=4096",
    "--set", "training.eval_interval_steps=2", "--set", "training.eval_sequences=8", "--set", "training.checkpoint_interval_steps=3"));
  assert.equal(r.code, 0, r.stderr);
  const perRank = [0, 1].map((rank) => readTimeline(path.join(dir, "timeline", `rank-${rank}.json`)));
  const mergedDoc = JSON.parse(fs.readFileSync(path.join(dir, "timeline.json"), "utf8")) as { traceEvents: TraceEvent[] };
  const merged = mergedDoc.traceEvents;
  assert.equal(merged.length, perRank[0].length + perRank[1].length);
  assertWellFormed(merged, "merged");
  assertProperlyNested(merged, "merged");
  for (const rank of [0, 1]) {
    const ev = perRank[rank];
    assert.ok(ev.every((e) => e.pid === rank), `rank ${rank}'s file holds only its own process`);
    const pname = merged.find((e) => e.ph === "M" && e.name === "process_name" && e.pid === rank);
    assert.match(String(pname?.args?.name), new RegExp(`^rank ${rank} \\(.+, pid \\d+\\)$`));
    for (const [tid, name] of [[TID_STEP, "step"], [TID_COLLECTIVE, "collective"], [TID_GC, "gc"]] as const) {
      assert.ok(ev.some((e) => e.ph === "M" && e.name === "thread_name" && e.tid === tid && e.args?.name === name), `rank ${rank}: thread ${name} is named`);
    }
    const x = complete(ev);
    // loading the data and building the model alone allocates enough for V8 to collect at least once
    const gc = x.filter((e) => e.tid === TID_GC);
    assert.ok(gc.length > 0 && gc.every((e) => /^gc: (major|minor|incremental|weak callbacks)$/.test(e.name) && e.cat === "gc"), `rank ${rank}: V8's pauses on the gc row (${gc.length})`);
    for (let step = 1; step <= steps; step++) {
      const at = (name: string, tid: number): TraceEvent[] => x.filter((e) => e.name === name && e.tid === tid && e.args?.step === step);
      const stepSpan = at("step", TID_STEP);
      assert.equal(stepSpan.length, 1, `rank ${rank} step ${step}: one step span`);
      assert.equal(at("wait for plan", TID_STEP).length, 1, `rank ${rank} step ${step}: plan wait`);
      const fb = at("forward+backward", TID_STEP);
      assert.equal(fb.length, 3, `rank ${rank} step ${step}: 12 sequences / 2 ranks / micro-batch 2 = 3 forward+backward spans`);
      assert.equal(at("data wait", TID_STEP).length, 3);
      assert.equal(at("optimizer", TID_STEP).length, 1);
      for (const e of [...fb, ...at("update", TID_STEP)]) assert.ok(e.ts >= stepSpan[0].ts && end(e) <= end(stepSpan[0]), `${e.name} inside step ${step}`);
      const ars = at("all-reduce", TID_COLLECTIVE);
      assert.equal(ars.length, 1, `rank ${rank} step ${step}: one all-reduce`);
      const ar = ars[0];
      assert.equal(ar.args?.ok, true);
      assert.equal(ar.args?.ring_step, step - 1);
      const buckets = Number(ar.args?.buckets);
      assert.ok(buckets >= 3, `bucket_bytes 16384 gives several buckets (got ${buckets})`);
      assert.equal(at("wait: left neighbour", TID_COLLECTIVE).length, 1);
      let bytes = 0;
      for (let b = 0; b < buckets; b++) {
        for (const phase of ["reduce-scatter", "all-gather"]) {
          const spans = at(phase, TID_BUCKET_BASE + b);
          assert.equal(spans.length, 1, `rank ${rank} step ${step} bucket ${b}: one ${phase} span`);
          const s = spans[0];
          assert.equal(s.args?.bucket, b);
          assert.ok(Number(s.args?.chunks_received) >= 1, `bucket ${b} ${phase} received chunks`);
          assert.ok(s.ts >= ar.ts && end(s) <= end(ar), `rank ${rank} step ${step} bucket ${b} ${phase} [${s.ts}, ${end(s)}] inside all-reduce [${ar.ts}, ${end(ar)}]`);
          if (phase === "reduce-scatter") bytes += Number(s.args?.bytes);
        }
        const rs = at("reduce-scatter", TID_BUCKET_BASE + b)[0];
        const ag = at("all-gather", TID_BUCKET_BASE + b)[0];
        assert.ok(end(rs) <= ag.ts, `bucket ${b}: reduce-scatter before all-gather`);
      }
      assert.equal(bytes, ar.args?.bytes, "the buckets cover the all-reduced bytes");
    }
    assert.ok(x.some((e) => e.name === "evaluation" && e.args?.step === 2), `rank ${rank}: evaluation at step 2`);
    assert.equal(x.filter((e) => e.name === "checkpoint").length, rank === 0 ? 1 : 0, "rank 0 writes the checkpoint");
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("a run whose worker is killed still leaves readable rank files and a merged timeline", async () => {
  const dir = tempDir("timeline-kill");
  const run = startLaunch(tinyArgs(dir, "--workers", "2", "--max-steps", "400", "--timeline",
    "--set", "communication.heartbeat_timeout_ms=3000", "--set", "communication.heartbeat_interval_ms=300", "--set", "communication.timeout_ms=8000"));
  let ended: string | undefined;
  void run.done.then((r) => (ended = `launch exited early with ${r.code}:\n${r.stderr}`));
  const rank1 = path.join(dir, "timeline", "rank-1.json");
  // Wait for a periodic flush of rank 1 that holds at least one all-reduce, then kill it without warning.
  await waitFor(() => {
    if (ended !== undefined) throw new Error(ended);
    try {
      return readTimeline(rank1).some((e) => e.name === "all-reduce") ? true : undefined;
    } catch {
      return undefined; // not written yet
    }
  }, 120_000, "a flushed timeline of rank 1");
  const pid = Number(/pid (\d+)\)/.exec(String(readTimeline(rank1).find((e) => e.name === "process_name")?.args?.name))?.[1]);
  assert.ok(pid > 0);
  process.kill(pid, "SIGKILL");
  const r = await run.done;
  assert.equal(r.code, 3, r.stderr);
  const merged = readTimeline(path.join(dir, "timeline.json"));
  assertWellFormed(merged, "after a crash");
  assertProperlyNested(merged, "after a crash");
  for (const rank of [0, 1]) {
    assert.ok(merged.some((e) => e.pid === rank && e.name === "all-reduce"), `rank ${rank}'s events up to its last flush are kept`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
