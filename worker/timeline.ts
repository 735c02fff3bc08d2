/**
 * Per-rank timeline in Chrome trace-event format (like Horovod's HOROVOD_TIMELINE), opt-in with
 * `launch --timeline` or `training.timeline: true`.
 *
 * Each rank records complete events (`ph: "X"`, `ts`/`dur` in microseconds since the Unix epoch, taken from
 * `performance.timeOrigin + performance.now()`, so the ranks of one machine share a clock) and writes
 * `RUN_DIR/timeline/rank-<r>.json` as a complete JSON object `{"traceEvents":[...],"displayTimeUnit":"ms"}`,
 * replaced atomically (temp file + rename) every few seconds, at the end, on failure, on process exit and on
 * SIGTERM/SIGINT, so a crashed run leaves a readable timeline up to its last flush. `launch` merges the rank
 * files into `RUN_DIR/timeline.json` (`mergeTimelines`). Open either in https://ui.perfetto.dev or chrome://tracing.
 *
 * Rows: one process per rank (`pid` = rank), thread "step" (the training loop), thread "collective" (each
 * all-reduce as a whole, and the wait for the left neighbour to join it), thread "gc" (V8's pauses of the
 * training loop's thread: a full collection lands in a step like any other work) and one thread per fusion bucket
 * ("bucket b": its reduce-scatter, then its all-gather). No tfjs here; events are plain serialisable objects with
 * absolute times, so a collective running in another thread can record them and post them here (`recordAll`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { PerformanceObserver, constants as perfConstants, type PerformanceEntry } from "node:perf_hooks";
import type { CollectiveEvent, CollectiveObserver } from "./collective/collective-event";

/** One Chrome trace event (the subset this module writes). */
export interface TraceEvent {
  name: string;
  /** Category: idle, data, compute, update, optimizer, wait, collective, gc, eval, checkpoint, step. */
  cat?: string;
  /** X = complete event, M = metadata, i = instant. */
  ph: "X" | "M" | "i";
  /** Microseconds since the Unix epoch (integer). */
  ts: number;
  /** Microseconds (integer), complete events only. */
  dur?: number;
  pid: number;
  tid: number;
  /** Scope of an instant event. */
  s?: "t" | "p" | "g";
  args?: Record<string, string | number | boolean>;
}

/** Thread of the training loop (plan wait, data, forward+backward, update, evaluation, checkpoint). */
export const TID_STEP = 1;
/** Thread of the collectives as a whole (all-reduce spans and the wait for the left neighbour). */
export const TID_COLLECTIVE = 2;
/** Thread of the garbage collector's pauses of the training loop's thread (major, minor, incremental). */
export const TID_GC = 3;
/** Thread of fusion bucket b is TID_BUCKET_BASE + b. */
export const TID_BUCKET_BASE = 10;

/** Name of rank r's timeline file inside the timeline folder. */
export function timelineFileName(rank: number): string {
  return `rank-${rank}.json`;
}

/** Converts an absolute time in milliseconds (traceNow()) to integer trace microseconds. */
export function traceMicros(absMs: number): number {
  return Math.round(absMs * 1000);
}

/** A complete event between two absolute millisecond times (end clamped to start). */
export function completeEvent(name: string, cat: string, pid: number, tid: number, startMs: number, endMs: number, args?: TraceEvent["args"]): TraceEvent {
  const ts = traceMicros(startMs);
  const e: TraceEvent = { name, cat, ph: "X", ts, dur: Math.max(0, traceMicros(endMs) - ts), pid, tid };
  if (args !== undefined) e.args = args;
  return e;
}

/** State of the collective being observed. */
interface OpenCollective {
  id: number;
  step: number;
  ringStep: number;
  start: number;
  begin: number;
  elements: number[];
  bucketStart: Float64Array;
  rsLast: Float64Array;
  agLast: Float64Array;
  rsChunks: Uint32Array;
  agChunks: Uint32Array;
  rsBytes: Float64Array;
  agBytes: Float64Array;
}

/**
 * Turns a communicator's CollectiveEvents into trace events of one rank: an "all-reduce" span on the
 * collective thread, a nested "wait: left neighbour" (from our start until the left neighbour's BEGIN arrived:
 * time spent waiting for it to join), and per bucket a "reduce-scatter" span (from the bucket's first queued
 * send to its last received reduce-scatter chunk) followed by an "all-gather" span (to its last received
 * all-gather chunk). With several chunks per segment the all-gather of early chunks overlaps the
 * reduce-scatter of later ones; the boundary drawn is the last reduce-scatter chunk. Can run in any thread.
 */
export class CollectiveTimeline {
  private open: OpenCollective | null = null;
  private last = { start: NaN, end: NaN };
  private readonly namedBuckets = new Set<number>();
  /**
   * Training step (1-based, as in metrics.jsonl) the events are labelled with; set by the training loop. The
   * ring's own step id (the optimizer's 0-based count) is kept as `ring_step`. Until set, the ring's id is used.
   */
  trainingStep: number | undefined = undefined;

  constructor(private readonly pid: number, private readonly sink: (e: TraceEvent) => void) {}

  /** The observer to pass as RingOptions.onEvent. */
  readonly observe: CollectiveObserver = (e) => this.onEvent(e);

  /** Absolute start and end (ms) of the last collective that completed, if it ended at or after `sinceMs`. */
  lastCollective(sinceMs: number): { start: number; end: number } | undefined {
    return this.last.end >= sinceMs ? { start: this.last.start, end: this.last.end } : undefined;
  }

  private onEvent(e: CollectiveEvent): void {
    if (e.kind === "start") {
      const n = e.buckets.length;
      this.open = {
        id: e.collective, step: this.trainingStep ?? e.step, ringStep: e.step, start: e.at, begin: NaN, elements: e.buckets,
        bucketStart: new Float64Array(n).fill(NaN), rsLast: new Float64Array(n).fill(NaN), agLast: new Float64Array(n).fill(NaN),
        rsChunks: new Uint32Array(n), agChunks: new Uint32Array(n), rsBytes: new Float64Array(n), agBytes: new Float64Array(n),
      };
      return;
    }
    const c = this.open;
    if (c === null || c.id !== e.collective) return;
    switch (e.kind) {
      case "bucket-start":
        if (e.bucket < c.elements.length && Number.isNaN(c.bucketStart[e.bucket])) c.bucketStart[e.bucket] = e.at;
        return;
      case "begin":
        if (Number.isNaN(c.begin)) c.begin = e.at;
        return;
      case "chunk":
        if (e.bucket >= c.elements.length) return;
        if (e.phase === "reduce-scatter") {
          c.rsLast[e.bucket] = e.at;
          c.rsChunks[e.bucket]++;
          c.rsBytes[e.bucket] += e.bytes;
        } else {
          c.agLast[e.bucket] = e.at;
          c.agChunks[e.bucket]++;
          c.agBytes[e.bucket] += e.bytes;
        }
        return;
      case "end":
        this.open = null;
        this.finish(c, e.at, e.ok, e.error);
        return;
    }
  }

  private finish(c: OpenCollective, end: number, ok: boolean, error: string | undefined): void {
    const { pid, sink } = this;
    const bytes = c.elements.reduce((a, n) => a + 4 * n, 0);
    const args: Record<string, string | number | boolean> = { step: c.step, ring_step: c.ringStep, collective: c.id, buckets: c.elements.length, bytes, ok };
    if (error !== undefined) args.error = error.slice(0, 500);
    sink(completeEvent("all-reduce", "collective", pid, TID_COLLECTIVE, c.start, end, args));
    const joined = Number.isNaN(c.begin) ? end : Math.min(Math.max(c.begin, c.start), end);
    sink(completeEvent("wait: left neighbour", "wait", pid, TID_COLLECTIVE, c.start, joined, { step: c.step, joined: !Number.isNaN(c.begin) }));
    for (let b = 0; b < c.elements.length; b++) {
      const tid = TID_BUCKET_BASE + b;
      if (!this.namedBuckets.has(b)) {
        this.namedBuckets.add(b);
        sink({ name: "thread_name", ph: "M", ts: 0, pid, tid, args: { name: `bucket ${b}` } });
        sink({ name: "thread_sort_index", ph: "M", ts: 0, pid, tid, args: { sort_index: tid } });
      }
      const bs = Number.isNaN(c.bucketStart[b]) ? c.start : Math.min(Math.max(c.bucketStart[b], c.start), end);
      const rsEnd = Number.isNaN(c.rsLast[b]) ? (ok ? bs : end) : Math.min(Math.max(c.rsLast[b], bs), end);
      const common = { step: c.step, bucket: b, bytes: 4 * c.elements[b] };
      sink(completeEvent("reduce-scatter", "collective", pid, tid, bs, rsEnd,
        { ...common, chunks_received: c.rsChunks[b], wire_bytes_received: c.rsBytes[b], ...(ok ? {} : { failed: true }) }));
      if (ok || c.agChunks[b] > 0) {
        const agEnd = ok ? (Number.isNaN(c.agLast[b]) ? rsEnd : Math.min(Math.max(c.agLast[b], rsEnd), end)) : end;
        sink(completeEvent("all-gather", "collective", pid, tid, rsEnd, agEnd,
          { ...common, chunks_received: c.agChunks[b], wire_bytes_received: c.agBytes[b], ...(ok ? {} : { failed: true }) }));
      }
    }
    if (ok) this.last = { start: c.start, end };
  }
}

/** Options of a TimelineRecorder. */
export interface TimelineOptions {
  /** Shortest interval between periodic flushes (default 5000 ms); grows to 100x the last flush's duration. */
  flushIntervalMs?: number;
  /** Events kept at most (default 2,000,000); later ones are dropped and a "timeline truncated" mark is left. */
  maxEvents?: number;
  /** Flush on SIGTERM/SIGINT (then die of the signal as before) and on process exit (default true). */
  handleProcessEnd?: boolean;
  /** Where flush errors are reported (once); default stderr. */
  warn?: (line: string) => void;
}

/**
 * Records one rank's timeline and keeps `DIR/rank-<r>.json` up to date. An existing file for the rank (a
 * resumed or restarted run: launch deletes stale files of fresh runs) is continued, not overwritten.
 * Spans of the training loop take `performance.now()` values of this thread; `record`/`recordAll` take
 * events with absolute times (from any thread).
 */
export class TimelineRecorder {
  /** The rank's timeline file. */
  readonly file: string;
  /** Collective spans; pass `collective.observe` as RingOptions.onEvent. */
  readonly collective: CollectiveTimeline;

  private readonly pid: number;
  private pending: TraceEvent[] = [];
  /** Serialised events, one buffer per flush (each but the first starts with the separator): never re-encoded. */
  private readonly chunks: Buffer[] = [];
  private count = 0;
  private truncated = false;
  private dirty = true;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private warned = false;
  private readonly baseInterval: number;
  private readonly maxEvents: number;
  private readonly warn: (line: string) => void;
  private readonly gcObserver: PerformanceObserver;
  private readonly onExit = (): void => this.flush();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.flush();
    this.detach();
    process.kill(process.pid, signal); // no listener left: the default action (terminate) as without a timeline
  };

  constructor(dir: string, readonly rank: number, readonly hostname: string, opts: TimelineOptions = {}) {
    this.pid = rank;
    this.file = path.join(dir, timelineFileName(rank));
    this.baseInterval = opts.flushIntervalMs ?? 5000;
    this.maxEvents = opts.maxEvents ?? 2_000_000;
    this.warn = opts.warn ?? ((line) => process.stderr.write(`${line}\n`));
    fs.mkdirSync(dir, { recursive: true });
    this.continueExisting();
    const pid = this.pid;
    this.pending.push(
      { name: "process_name", ph: "M", ts: 0, pid, tid: 0, args: { name: `rank ${rank} (${hostname}, pid ${process.pid})` } },
      { name: "process_sort_index", ph: "M", ts: 0, pid, tid: 0, args: { sort_index: rank } },
      { name: "thread_name", ph: "M", ts: 0, pid, tid: TID_STEP, args: { name: "step" } },
      { name: "thread_sort_index", ph: "M", ts: 0, pid, tid: TID_STEP, args: { sort_index: TID_STEP } },
      { name: "thread_name", ph: "M", ts: 0, pid, tid: TID_COLLECTIVE, args: { name: "collective" } },
      { name: "thread_sort_index", ph: "M", ts: 0, pid, tid: TID_COLLECTIVE, args: { sort_index: TID_COLLECTIVE } },
      { name: "thread_name", ph: "M", ts: 0, pid, tid: TID_GC, args: { name: "gc" } },
      { name: "thread_sort_index", ph: "M", ts: 0, pid, tid: TID_GC, args: { sort_index: TID_GC } },
    );
    this.collective = new CollectiveTimeline(pid, (e) => this.record(e));
    this.gcObserver = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.span(`gc: ${gcKind(e)}`, "gc", e.startTime, e.startTime + e.duration, undefined, TID_GC);
    });
    this.gcObserver.observe({ entryTypes: ["gc"] });
    if (opts.handleProcessEnd ?? true) {
      process.on("exit", this.onExit);
      process.once("SIGTERM", this.onSignal);
      process.once("SIGINT", this.onSignal);
    }
    this.schedule(this.baseInterval);
  }

  /** Adds one event with absolute times (any thread's events, e.g. posted from a collective thread). */
  record(e: TraceEvent): void {
    if (this.closed || this.truncated) return;
    if (this.count >= this.maxEvents) {
      this.truncated = true;
      this.pending.push({ name: "timeline truncated", cat: "meta", ph: "i", s: "p", ts: e.ts, pid: this.pid, tid: TID_STEP, args: { max_events: this.maxEvents } });
      return;
    }
    this.count++;
    this.pending.push(e);
    this.dirty = true;
  }

  /** Adds several events with absolute times. */
  recordAll(events: readonly TraceEvent[]): void {
    for (const e of events) this.record(e);
  }

  /** A span of the training loop (or, with `tid`, another row) between two `performance.now()` values of this thread. */
  span(name: string, cat: string, start: number, end: number, args?: TraceEvent["args"], tid = TID_STEP): void {
    const o = performance.timeOrigin;
    this.record(completeEvent(name, cat, this.pid, tid, o + start, o + end, args));
  }

  /** A span of the training loop from `start` (`performance.now()`) until now. */
  endSpan(name: string, cat: string, start: number, args?: TraceEvent["args"]): void {
    this.span(name, cat, start, performance.now(), args);
  }

  /** The wait for the coordinator's plan of `step` (idle, or the start barrier), from `start` until now; labels what follows with `step`. */
  planWait(start: number, step: number, stop: boolean): void {
    if (!stop) this.collective.trainingStep = step;
    this.endSpan("wait for plan", "idle", start, stop ? { step, stop } : { step });
  }

  /**
   * The update of `step` from `start` (`performance.now()`) until now: an "update" span holding "wait:
   * all-reduce" (the part of the step's all-reduce that ran inside it) and "optimizer" (from the all-reduce's
   * end, or the update's start, until now).
   */
  update(start: number, step: number): void {
    const o = performance.timeOrigin;
    const s = o + start;
    const end = o + performance.now();
    this.record(completeEvent("update", "update", this.pid, TID_STEP, s, end, { step }));
    const ar = this.collective.lastCollective(s);
    let optStart = s;
    if (ar !== undefined && ar.end >= s) {
      optStart = Math.min(ar.end, end);
      this.record(completeEvent("wait: all-reduce", "wait", this.pid, TID_STEP, Math.max(ar.start, s), optStart, { step }));
    }
    this.record(completeEvent("optimizer", "optimizer", this.pid, TID_STEP, optStart, end, { step }));
  }

  /** Writes the rank file now (atomically: temp file + rename). Errors are reported once, never thrown. */
  flush(): void {
    if (this.pending.length > 0) {
      this.appendChunk(this.pending);
      this.pending = [];
    }
    if (!this.dirty) return;
    const other = JSON.stringify({ rank: this.rank, host: this.hostname, clock: "microseconds since the Unix epoch (performance.timeOrigin + performance.now())", truncated: this.truncated });
    const tmp = `${this.file}.tmp-${process.pid}`;
    try {
      const fd = fs.openSync(tmp, "w");
      try {
        writeAll(fd, Buffer.from('{"traceEvents":[\n'));
        for (const c of this.chunks) writeAll(fd, c);
        writeAll(fd, Buffer.from(`\n],"displayTimeUnit":"ms","otherData":${other}}\n`));
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.file);
      this.dirty = false;
    } catch (err) {
      try {
        fs.rmSync(tmp, { force: true });
      } catch {
        // nothing more to do
      }
      if (!this.warned) {
        this.warned = true;
        this.warn(`timeline: cannot write ${this.file}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  /** Final flush; stops the periodic flushes and the exit/signal hooks. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.detach();
  }

  private detach(): void {
    this.gcObserver.disconnect();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    process.off("exit", this.onExit);
    process.off("SIGTERM", this.onSignal);
    process.off("SIGINT", this.onSignal);
  }

  /** Periodic flushes, spaced so that rewriting the growing file stays a small share of the run (<= 1%). */
  private schedule(delay: number): void {
    this.timer = setTimeout(() => {
      if (this.closed) return;
      const t = performance.now();
      this.flush();
      this.schedule(Math.max(this.baseInterval, 100 * (performance.now() - t)));
    }, delay);
    this.timer.unref();
  }

  /** Keeps the events of an earlier attempt of this run (resume, restart), minus its process/step/collective names. */
  private continueExisting(): void {
    let old: TraceEvent[];
    try {
      old = readTimeline(this.file);
    } catch {
      return; // no file (a fresh run) or unreadable: start anew
    }
    const kept = old.filter((e) => !(e.ph === "M" && (e.tid === 0 || e.tid === TID_STEP || e.tid === TID_COLLECTIVE || e.tid === TID_GC)));
    if (kept.length > 0) this.appendChunk(kept);
    this.count = kept.length;
  }

  private appendChunk(events: readonly TraceEvent[]): void {
    this.chunks.push(Buffer.from((this.chunks.length > 0 ? ",\n" : "") + events.map((e) => JSON.stringify(e)).join(",\n")));
  }
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length;) off += fs.writeSync(fd, buf, off, buf.length - off);
}

/** Reads a trace file (`{"traceEvents": [...]}` or a bare JSON array); throws if it is not one. */
export function readTimeline(file: string): TraceEvent[] {
  const parsed: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
  const events = Array.isArray(parsed) ? parsed : (parsed as { traceEvents?: unknown } | null)?.traceEvents;
  if (!Array.isArray(events)) throw new Error(`${file}: not a trace-event file (no traceEvents array)`);
  return events as TraceEvent[];
}

/** What mergeTimelines wrote. */
export interface MergeResult {
  /** Ranks whose files were merged, ascending. */
  ranks: number[];
  events: number;
  /** Files that could not be read, with the reason. */
  skipped: string[];
}

/**
 * Merges every `rank-<r>.json` in `dir` into one trace file `out` (written atomically): one process row per
 * rank, as each rank file already names its process. Unreadable rank files are skipped and listed.
 */
export function mergeTimelines(dir: string, out: string): MergeResult {
  const files = fs.readdirSync(dir)
    .map((f) => ({ f, m: /^rank-(\d+)\.json$/.exec(f) }))
    .filter((x): x is { f: string; m: RegExpExecArray } => x.m !== null)
    .map((x) => ({ file: path.join(dir, x.f), rank: Number(x.m[1]) }))
    .sort((a, b) => a.rank - b.rank);
  const parts: string[] = [];
  const ranks: number[] = [];
  const skipped: string[] = [];
  let events = 0;
  for (const { file, rank } of files) {
    try {
      const ev = readTimeline(file);
      if (ev.length > 0) parts.push(ev.map((e) => JSON.stringify(e)).join(",\n"));
      events += ev.length;
      ranks.push(rank);
    } catch (err) {
      skipped.push(`${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const other = JSON.stringify({ ranks, skipped, clock: "microseconds since the Unix epoch (performance.timeOrigin + performance.now())" });
  const tmp = `${out}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `{"traceEvents":[\n${parts.join(",\n")}\n],"displayTimeUnit":"ms","otherData":${other}}\n`);
  fs.renameSync(tmp, out);
  return { ranks, events, skipped };
}

/** A gc performance entry's kind as V8 names it: major (mark-compact), minor (scavenge), incremental (marking step), weak callbacks. */
function gcKind(e: PerformanceEntry): string {
  const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
  switch (kind) {
    case perfConstants.NODE_PERFORMANCE_GC_MAJOR: return "major";
    case perfConstants.NODE_PERFORMANCE_GC_MINOR: return "minor";
    case perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL: return "incremental";
    case perfConstants.NODE_PERFORMANCE_GC_WEAKCB: return "weak callbacks";
    default: return "other";
  }
}
