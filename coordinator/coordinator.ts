import * as fs from "node:fs";
import * as path from "node:path";
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  loadCoordinatorProto,
  EXITED_PHASE,
  MISMATCH_PHASE,
  type FailureReport,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type JoinRequest,
  type JoinResponse,
  type StepPlan,
  type StepReport,
} from "../proto/coordinator";
import type { RunConfig } from "../shared/config/schema";
import { accumulationSteps } from "../shared/config/load";
import { checkToken, rpcError } from "./auth";
import { balanceLag, DataSharder, evalShard, splitOffset } from "../shared/data/sharding";
import { BatchBalancer } from "./batch-balancer";
import { MetricsWriter, type StepMetrics } from "./metrics";
import { addClassificationMetrics } from "./classification";
import { probeLiveness, type Liveness } from "./liveness";
import { loadMutualTls } from "../shared/security/tls";
import { joinHostPort, splitHostPort } from "../shared/net/host-port";

/** Everything the coordinator needs to run one job. */
export interface CoordinatorOptions {
  jobId: string;
  token: string;
  config: RunConfig;
  runDir: string;
  /** Total workers and workers per node (rank = node_rank * workersPerNode + local_rank). */
  worldSize: number;
  workersPerNode: number;
  vocab: string[];
  numTrainSequences: number;
  numValidationSequences: number;
  /** Classification runs: test examples (evaluated after the last step, sharded over ranks) and the class names. */
  numTestSequences?: number;
  classLabels?: string[];
  /** Learning rate of a step (the coordinator owns the schedule). */
  learningRateAt: (step: number) => number;
  /** Directory a checkpoint of `step` goes to. */
  checkpointDirFor: (step: number) => string;
  /** Directory an in-memory snapshot of `step` goes to (elastic.snapshot_interval_steps); none when absent. */
  snapshotDirFor?: (step: number) => string;
  /** Step already done (resume), and the checkpoint to load. */
  startStep?: number;
  resumeCheckpointDir?: string;
  /** Bind address; "127.0.0.1:0" picks a free loopback port. */
  bindAddress?: string;
}

/** How a job ended. */
export interface JobOutcome {
  status: "done" | "failed";
  reason: string;
  /** Rank blamed for a failure, when known. */
  rank?: number;
  /** For a rank that went silent: whether it was found dead, stalled or unreachable. */
  liveness?: Liveness;
  /** The failure is a configuration mismatch between nodes (token, world size, settings): no retry can cure it. */
  misconfigured?: boolean;
}

interface Member {
  request: JoinRequest;
  rank: number;
  lastSeenMs: number;
  /** When the rank last changed step or phase (heartbeats keep coming from a thread while it computes). */
  lastProgressMs: number;
  step: number;
  phase: string;
}

/**
 * The coordinator: a gRPC service that forms the world, hands out step plans, gathers per-rank reports into
 * metrics.jsonl, and watches heartbeats. Emits "step" (StepMetrics) after every step all ranks reported,
 * "joined" when the world is complete, and "end" (JobOutcome).
 */
export class Coordinator extends EventEmitter {
  // Requests to the coordinator are small (reports, heartbeats): a low limit keeps a rogue client from making it
  // buffer large messages.
  readonly server = new grpc.Server({ "grpc.max_receive_message_length": MAX_REQUEST_BYTES, "grpc.max_concurrent_streams": 1024 });
  address = "";
  private readonly members = new Map<number, Member>();
  private readonly joinWaiters: Array<() => void> = [];
  private readonly startWaiters: Array<() => void> = [];
  private readonly failureReports: FailureReport[] = [];
  private readonly refusedJoins: string[] = [];
  private diagnosing = false;
  private started = false;
  private readonly initialChecksums = new Map<number, string>();
  private worldReady = false;
  private outcome: JobOutcome | undefined;
  private readonly sharder: DataSharder;
  private readonly pending = new Map<number, StepReport[]>();
  private readonly finishedRanks = new Set<number>();
  private readonly metrics: MetricsWriter;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private joinTimer: NodeJS.Timeout | undefined;
  private readonly endPromise: Promise<JobOutcome>;
  private resolveEnd!: (o: JobOutcome) => void;
  private readonly balancer: BatchBalancer;

  constructor(private readonly opts: CoordinatorOptions) {
    super();
    const { batch, data } = opts.config;
    this.sharder = new DataSharder(opts.numTrainSequences, batch.global_batch_size, opts.config.seed);
    const lag = balanceLag(data.prefetch_batches, accumulationSteps(opts.config, opts.worldSize));
    this.balancer = new BatchBalancer(batch.global_batch_size, opts.worldSize, lag, batch.balance === "adaptive" && opts.worldSize > 1, opts.startStep ?? 0);
    this.metrics = new MetricsWriter(path.join(opts.runDir, "metrics.jsonl"), opts.startStep && opts.startStep > 0 ? opts.startStep : undefined);
    this.endPromise = new Promise((resolve) => (this.resolveEnd = resolve));
    const { service } = loadCoordinatorProto();
    this.server.addService(service, {
      Join: this.unary("Join", (req: JoinRequest) => this.join(req)),
      NextStep: this.unary("NextStep", (req: StepReport) => this.nextStep(req)),
      Heartbeat: this.unary("Heartbeat", (req: HeartbeatRequest) => this.heartbeat(req)),
      ReportFailure: this.unary("ReportFailure", (req: FailureReport) => this.reportFailure(req)),
    });
  }

  /** metrics.jsonl records of steps after the resume step that were dropped (they are trained again). */
  get droppedMetricRecords(): number {
    return this.metrics.droppedRecords;
  }

  /** Binds the server and starts the join and heartbeat clocks. Returns the bound "host:port". */
  async start(): Promise<string> {
    const bind = this.opts.bindAddress ?? "127.0.0.1:0";
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(bind, loadMutualTls(this.opts.config.communication.tls)?.server() ?? grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.address = joinHostPort(splitHostPort(bind).host, port);
    const { join_timeout_ms: joinTimeout, heartbeat_interval_ms: interval } = this.opts.config.communication;
    this.joinTimer = setTimeout(() => this.joinTimedOut(), joinTimeout);
    this.heartbeatTimer = setInterval(() => this.checkHeartbeats(), Math.max(100, Math.min(interval, 1000)));
    return this.address;
  }

  /** Resolves when the job is done or has failed. */
  finished(): Promise<JobOutcome> {
    return this.endPromise;
  }

  /**
   * Ends the job from outside (e.g. Ctrl-C or a worker process exit seen by launch). With `reported` (a worker that
   * exited after reporting its own failure), the workers' reports decide who is to blame if any arrived: the rank
   * that exited is often only the neighbour of the one that died, perhaps on another node.
   */
  fail(reason: string, rank?: number, reported = false): void {
    if (reported && this.failureReports.length > 0) return; // decideFailure ends the job within FAILURE_GRACE_MS
    this.end({ status: "failed", reason, rank });
  }

  /** Stops the server (waits briefly for in-flight calls so workers receive their stop plans). */
  async stop(): Promise<void> {
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.joinTimer);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.metrics.close();
  }

  /** Step and phase a rank last reported (heartbeats), for failure messages; undefined before it joined. */
  lastKnown(rank: number): { step: number; phase: string } | undefined {
    const m = this.members.get(rank);
    return m ? { step: m.step, phase: m.phase } : undefined;
  }

  /** Host and pid of a rank, for messages ("rank 1 (host a, pid 123)"). */
  describeRank(rank: number): string {
    const m = this.members.get(rank);
    return m ? `rank ${rank} (host ${m.request.hostname}, pid ${m.request.pid}, peer ${m.request.peer_address})` : `rank ${rank}`;
  }

  private unary<Req, Res>(method: string, handler: (req: Req) => Promise<Res> | Res) {
    return (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      const refuse = (err: grpc.ServiceError): void => {
        if (method === "Join") this.refusedJoin(`${call.getPeer()}: ${err.details}`);
        callback(err);
      };
      const denied = checkToken(call.metadata, this.opts.token);
      if (denied) return refuse(denied);
      const jobId = (call.request as { job_id?: string }).job_id;
      if (jobId !== this.opts.jobId) {
        return refuse(rpcError(grpc.status.FAILED_PRECONDITION, `job id '${jobId}' does not match this coordinator's job '${this.opts.jobId}'`));
      }
      Promise.resolve()
        .then(() => handler(call.request))
        .then((res) => callback(null, res), (err: unknown) => {
          const e = toServiceError(err);
          if (e.code === grpc.status.ABORTED || method !== "Join") callback(e);
          else refuse(e);
        });
    };
  }

  /**
   * A join that can never succeed (wrong token or job id, rank out of range, a rank twice): said at once on node 0
   * ("refused" event) and named when the join deadline passes, instead of only "missing rank(s)".
   */
  private refusedJoin(detail: string): void {
    if (this.refusedJoins.length < 5) this.refusedJoins.push(detail);
    this.emit("refused", `refused a join from ${detail}`);
  }

  private async join(req: JoinRequest): Promise<JoinResponse> {
    const { worldSize, workersPerNode } = this.opts;
    if (this.outcome) throw rpcError(grpc.status.ABORTED, `job has ended: ${this.outcome.reason}`);
    if (req.local_rank >= workersPerNode) {
      throw rpcError(grpc.status.INVALID_ARGUMENT, `local_rank ${req.local_rank} from ${req.hostname} is out of range: ${workersPerNode} workers per node`);
    }
    const rank = req.node_rank * workersPerNode + req.local_rank;
    if (rank >= worldSize) {
      throw rpcError(grpc.status.INVALID_ARGUMENT, `node_rank ${req.node_rank} from ${req.hostname} is out of range for a world of ${worldSize} (${workersPerNode} per node)`);
    }
    if (this.worldReady || this.members.has(rank)) {
      const prev = this.members.get(rank);
      throw rpcError(grpc.status.ALREADY_EXISTS, `rank ${rank} already joined (host ${prev?.request.hostname}, pid ${prev?.request.pid}); second join from host ${req.hostname}, pid ${req.pid}`);
    }
    this.members.set(rank, { request: req, rank, lastSeenMs: Date.now(), lastProgressMs: Date.now(), step: 0, phase: "join" });
    if (this.members.size === worldSize) this.formWorld();
    await new Promise<void>((resolve) => (this.worldReady ? resolve() : this.joinWaiters.push(resolve)));
    const ended = this.outcome as JobOutcome | undefined; // may have been set while waiting
    if (ended) throw rpcError(grpc.status.ABORTED, ended.reason);
    return {
      rank,
      world_size: worldSize,
      ring_peer_addresses: [...Array(worldSize).keys()].map((r) => this.members.get(r)!.request.peer_address),
      vocab_tokens: this.opts.vocab,
      config_json: JSON.stringify(this.opts.config),
      start_step: this.opts.startStep ?? 0,
      resume_checkpoint_dir: this.opts.resumeCheckpointDir ?? "",
      run_dir: this.opts.runDir,
    };
  }

  private formWorld(): void {
    clearTimeout(this.joinTimer);
    const now = Date.now();
    for (const m of this.members.values()) m.lastSeenMs = m.lastProgressMs = now;
    this.worldReady = true;
    this.emit("joined", [...this.members.values()].map((m) => ({ rank: m.rank, host: m.request.hostname, pid: m.request.pid })));
    for (const wake of this.joinWaiters.splice(0)) wake();
  }

  /** First report of every rank: wait for all, then check they start from identical parameters. */
  private async startBarrier(report: StepReport): Promise<void> {
    this.initialChecksums.set(report.rank, report.param_checksum);
    if (this.initialChecksums.size === this.opts.worldSize) {
      const groups = new Map<string, number[]>();
      for (const [rank, sum] of this.initialChecksums) groups.set(sum, [...(groups.get(sum) ?? []), rank]);
      if (groups.size > 1) {
        const detail = [...groups.entries()].map(([sum, ranks]) => `rank(s) ${ranks.sort().join(",")}: ${sum || "(none)"}`).join("; ");
        this.end({ status: "failed", reason: `initial parameters differ between ranks (${detail}); every rank must start from the same seed/checkpoint` });
      }
      this.started = true;
      for (const m of this.members.values()) m.lastProgressMs = Date.now();
      this.emit("started");
      for (const wake of this.startWaiters.splice(0)) wake();
      return;
    }
    await new Promise<void>((resolve) => this.startWaiters.push(resolve));
  }

  private joinTimedOut(): void {
    if (this.worldReady) return;
    const missing = [...Array(this.opts.worldSize).keys()].filter((r) => !this.members.has(r));
    const nodes = [...new Set(missing.map((r) => Math.floor(r / this.opts.workersPerNode)))];
    this.end({
      status: "failed",
      reason: `timed out after ${this.opts.config.communication.join_timeout_ms} ms waiting for workers to join: ` +
        `missing rank(s) ${missing.join(", ")} (node_rank ${nodes.join(", ")}); ${this.members.size}/${this.opts.worldSize} joined` +
        (this.refusedJoins.length > 0 ? `; refused join(s): ${this.refusedJoins.join("; ")}` : ""),
      misconfigured: this.refusedJoins.length > 0,
    });
    for (const wake of this.joinWaiters.splice(0)) wake();
  }

  private async nextStep(report: StepReport): Promise<StepPlan> {
    const member = this.members.get(report.rank);
    if (!member) throw rpcError(grpc.status.FAILED_PRECONDITION, `rank ${report.rank} has not joined`);
    member.lastSeenMs = Date.now();
    const start = this.opts.startStep ?? 0;
    const maxSteps = this.opts.config.training.max_steps;
    if (report.completed_step === start && !this.initialChecksums.has(report.rank)) await this.startBarrier(report);
    else if (report.completed_step > start) this.collect(report);
    const ended = this.outcome as JobOutcome | undefined; // may have been set while waiting at the barrier
    if (ended) return stopPlan(ended.reason);
    const step = Math.max(report.completed_step, start) + 1;
    if (step > maxSteps) {
      this.finishedRanks.add(report.rank);
      if (this.finishedRanks.size === this.opts.worldSize) this.end({ status: "done", reason: "done" });
      return stopPlan("done");
    }
    member.step = step;
    const counts = this.balancer.countsFor(step);
    const offset = splitOffset(counts, report.rank);
    const { indices, epochs } = this.sharder.slice(step, offset, counts[report.rank]);
    const micro = this.opts.config.batch.micro_batch_size;
    const ahead = this.opts.config.batch.balance === "adaptive" && step + this.balancer.lag <= maxSteps ? step + this.balancer.lag : 0;
    const t = this.opts.config.training;
    const last = step === maxSteps;
    const evalNow = (t.eval_interval_steps > 0 && step % t.eval_interval_steps === 0) || (last && t.eval_interval_steps > 0);
    const ckptNow = (t.checkpoint_interval_steps > 0 && step % t.checkpoint_interval_steps === 0) || last;
    // A snapshot is a checkpoint written to RAM-backed storage; the worker writes both the same way.
    const snapEvery = this.opts.config.elastic.snapshot_interval_steps;
    const snapshotNow = !ckptNow && this.opts.snapshotDirFor !== undefined && snapEvery > 0 && step % snapEvery === 0;
    const evalCount = t.eval_sequences === 0 ? this.opts.numValidationSequences : Math.min(t.eval_sequences, this.opts.numValidationSequences);
    return {
      step,
      stop: false,
      stop_reason: "",
      sequence_indices: indices,
      sequence_epochs: epochs,
      micro_batch_size: micro,
      accumulation_steps: Math.ceil(counts[report.rank] / micro),
      sequence_offset: offset,
      split_for_step: ahead,
      split_sequences_per_rank: ahead > 0 ? this.balancer.countsFor(ahead) : [],
      learning_rate: this.opts.learningRateAt(step),
      eval_sequence_indices: evalNow ? evalShard(evalCount, report.rank, this.opts.worldSize) : [],
      checkpoint_dir: ckptNow ? this.opts.checkpointDirFor(step) : snapshotNow ? this.opts.snapshotDirFor!(step) : "",
      max_steps: maxSteps,
      report_param_checksum: ckptNow,
      test_sequence_indices: last && (this.opts.numTestSequences ?? 0) > 0 ? evalShard(this.opts.numTestSequences ?? 0, report.rank, this.opts.worldSize) : [],
    };
  }

  private collect(report: StepReport): void {
    const step = report.completed_step;
    const reports = this.pending.get(step) ?? [];
    reports.push(report);
    this.pending.set(step, reports);
    if (reports.length < this.opts.worldSize) return;
    this.pending.delete(step);
    const sums = new Set(reports.map((r) => r.param_checksum).filter((s) => s !== ""));
    if (sums.size > 1) {
      const detail = reports.map((r) => `rank ${r.rank}: ${r.param_checksum}`).join(", ");
      this.end({ status: "failed", reason: `parameters diverged between ranks after step ${step} (${detail})` });
    }
    this.balancer.observe(step, reports.map((r) => ({ rank: r.rank, sequences: r.sequences, compute_ms: r.compute_ms, fixed_ms: r.optimizer_ms + r.data_wait_ms })));
    const m = aggregate(step, reports, this.sharder.progress(step));
    m.learning_rate = this.opts.learningRateAt(step);
    m.allreduce_bytes = reports[0].allreduce_bytes;
    if (this.opts.classLabels !== undefined) addClassificationMetrics(m, reports, this.opts.classLabels, this.opts.runDir);
    this.metrics.write(m);
    this.emit("step", m);
  }

  private heartbeat(req: HeartbeatRequest): HeartbeatResponse {
    const member = this.members.get(req.rank);
    if (member) {
      member.lastSeenMs = Date.now();
      if (req.step !== member.step || req.phase !== member.phase) member.lastProgressMs = member.lastSeenMs;
      member.step = req.step;
      member.phase = req.phase;
    }
    return { running: this.outcome === undefined, stop_reason: this.outcome?.reason ?? "" };
  }

  /**
   * A worker failed. When one rank dies, its neighbours fail too ("peer closed its stream"), and their reports
   * can arrive first; so reports are gathered for a short grace period and the root cause (a report from outside
   * the collective, else the earliest) names the failure. All reports go into failure.json.
   */
  private reportFailure(req: FailureReport): Record<string, never> {
    const seen = this.members.get(req.rank);
    if (req.phase === EXITED_PHASE && req.step === 0 && seen !== undefined) req = { ...req, step: seen.step };
    this.failureReports.push(req);
    if (this.failureReports.length === 1) setTimeout(() => this.decideFailure(), FAILURE_GRACE_MS).unref();
    return {};
  }

  private decideFailure(): void {
    const collectivePhases = new Set(["connect", "idle", "begin", "reduce-scatter", "all-gather", "finish"]);
    const root = this.failureReports.find((r) => !collectivePhases.has(r.phase)) ?? this.failureReports[0];
    if (collectivePhases.has(root.phase)) {
      // Only collective symptoms: a neighbour's stream broke. The rank they name that reported nothing itself is the
      // likely cause (killed, or its node lost), so it is the one named, with the report that points at it.
      const reporters = new Set(this.failureReports.map((r) => r.rank));
      for (const r of this.failureReports) {
        const peer = [...r.message.matchAll(/\brank (\d+)\b/g)].map((m) => Number(m[1])).find((p) => p !== r.rank);
        if (peer !== undefined && !reporters.has(peer) && this.members.has(peer)) {
          this.end({
            status: "failed",
            reason: `${this.describeRank(peer)} was lost at step ${r.step} (${r.phase}); rank ${r.rank} reported: ${r.message}`,
            rank: peer,
          });
          return;
        }
      }
    }
    const misconfigured = this.failureReports.find((r) => r.phase === MISMATCH_PHASE);
    if (misconfigured !== undefined) {
      this.end({ status: "failed", reason: `${this.describeRank(misconfigured.rank)} does not match the job: ${misconfigured.message}`, rank: misconfigured.rank, misconfigured: true });
      return;
    }
    this.end({ status: "failed", reason: `${this.describeRank(root.rank)} failed at step ${root.step} (${root.phase}): ${root.message}`, rank: root.rank });
  }

  private checkHeartbeats(): void {
    if (!this.worldReady || this.outcome || this.diagnosing) return;
    const comm = this.opts.config.communication;
    // Until every rank has built its data and model (the start barrier), loading may block a worker for a
    // while: the join deadline applies then; the heartbeat deadline once training runs.
    const limit = this.started ? comm.heartbeat_timeout_ms : Math.max(comm.heartbeat_timeout_ms, comm.join_timeout_ms);
    const now = Date.now();
    for (const m of this.members.values()) {
      if (this.finishedRanks.has(m.rank)) continue;
      const silentMs = now - m.lastSeenMs;
      const stuckMs = now - m.lastProgressMs;
      if (this.started && silentMs <= limit && stuckMs > comm.stall_timeout_ms) {
        const culprit = this.stallCulprit(m, now, comm.stall_timeout_ms - 2 * comm.heartbeat_interval_ms);
        const culpritStuckMs = now - culprit.lastProgressMs;
        this.end({
          status: "failed",
          reason: `${this.describeRank(culprit.rank)} is stalled: alive (heartbeats arrive) but no progress for ${culpritStuckMs} ms in step ${culprit.step}, phase ${culprit.phase} (limit ${comm.stall_timeout_ms} ms)`,
          rank: culprit.rank,
          liveness: "stalled",
        });
        return;
      }
      if (silentMs > limit) {
        this.diagnosing = true;
        // Tell a dead process from a stopped/stuck one before ending the job, so the message says which.
        void probeLiveness(m.request.peer_address, Math.min(2000, limit)).then((state) => {
          const where = `last seen at step ${m.step}, phase ${m.phase}`;
          const what: Record<Liveness, string> = {
            dead: `is dead: no heartbeat for ${silentMs} ms and its peer port refuses connections`,
            stalled: `is stalled: alive (its port accepts connections) but unresponsive, no heartbeat for ${silentMs} ms (stopped or stuck)`,
            unreachable: `is unreachable: no heartbeat for ${silentMs} ms and no answer from its host (host down or network partitioned)`,
            responsive: `sent no heartbeat for ${silentMs} ms although its peer port answers (heartbeats lost on the way?)`,
          };
          this.end({ status: "failed", reason: `${this.describeRank(m.rank)} ${what[state]}; ${where} (limit ${limit} ms)`, rank: m.rank, liveness: state });
        });
        return;
      }
    }
  }

  /**
   * Ranks waiting in a collective (or for the next plan) stop progressing because another rank does: blame a rank
   * stuck in its own work instead, when one has been stuck about as long (phase changes reach the coordinator up to a
   * heartbeat interval late, so the order of two nearly simultaneous stalls is not reliable).
   */
  private stallCulprit(stuck: Member, now: number, minStuckMs: number): Member {
    const waiting = new Set(["all-reduce", "waiting for plan"]);
    if (!waiting.has(stuck.phase)) return stuck;
    const busy = [...this.members.values()]
      .filter((o) => !this.finishedRanks.has(o.rank) && !waiting.has(o.phase) && now - o.lastProgressMs > minStuckMs)
      .sort((a, b) => a.lastProgressMs - b.lastProgressMs);
    return busy[0] ?? stuck;
  }

  private end(outcome: JobOutcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    clearTimeout(this.joinTimer);
    if (outcome.status === "failed") {
      try {
        fs.mkdirSync(this.opts.runDir, { recursive: true });
        const record = { time: new Date().toISOString(), job_id: this.opts.jobId, ...outcome, worker_reports: this.failureReports };
        fs.writeFileSync(path.join(this.opts.runDir, "failure.json"), JSON.stringify(record, null, 2) + "\n");
      } catch {
        // The failure itself is still reported through the outcome; a read-only run dir must not hide it.
      }
    }
    for (const wake of [...this.joinWaiters.splice(0), ...this.startWaiters.splice(0)]) wake();
    this.emit("end", outcome);
    this.resolveEnd(outcome);
  }
}

/** Largest request the coordinator accepts. */
export const MAX_REQUEST_BYTES = 1024 * 1024;

/** How long failure reports are gathered before one is named the cause (reports from other nodes' launchers included). */
const FAILURE_GRACE_MS = 1000;

function stopPlan(reason: string): StepPlan {
  return {
    step: 0, stop: true, stop_reason: reason, sequence_indices: [], sequence_epochs: [], micro_batch_size: 0,
    accumulation_steps: 0, learning_rate: 0, eval_sequence_indices: [], checkpoint_dir: "", max_steps: 0,
    sequence_offset: 0, split_for_step: 0, split_sequences_per_rank: [],
    report_param_checksum: false, test_sequence_indices: [],
  };
}

function aggregate(step: number, reports: StepReport[], progress: { epoch: number; fraction: number }): StepMetrics {
  const sum = (f: (r: StepReport) => number): number => reports.reduce((a, r) => a + f(r), 0);
  const max = (f: (r: StepReport) => number): number => Math.max(...reports.map(f));
  const stepMs = max((r) => r.step_ms);
  const tokens = sum((r) => r.tokens);
  const targets = sum((r) => r.target_count);
  const m: StepMetrics = {
    step,
    epoch: progress.epoch + progress.fraction,
    loss: targets > 0 ? sum((r) => r.loss_sum) / targets : NaN,
    tokens,
    step_ms: stepMs,
    tokens_per_s: stepMs > 0 ? (tokens / stepMs) * 1000 : 0,
    mfu: stepMs > 0 && sum((r) => r.peak_flops_per_s) > 0 ? sum((r) => r.model_flops) / (stepMs / 1000) / sum((r) => r.peak_flops_per_s) : 0,
    grad_norm: reports[0].grad_norm,
    per_rank: reports
      .slice()
      .sort((a, b) => a.rank - b.rank)
      .map((r) => ({
        rank: r.rank, sequences: r.sequences, step_ms: r.step_ms, data_wait_ms: r.data_wait_ms, compute_ms: r.compute_ms,
        communication_ms: r.communication_ms, allreduce_wall_ms: r.allreduce_wall_ms, optimizer_ms: r.optimizer_ms,
        idle_ms: Math.max(0, stepMs - r.step_ms),
      })),
  };
  const evals = reports.map((r) => r.eval).filter((e): e is NonNullable<StepReport["eval"]> => e !== null && e.sequences > 0);
  if (evals.length > 0) {
    const lossSum = evals.reduce((a, e) => a + e.loss_sum, 0);
    const count = evals.reduce((a, e) => a + e.target_count, 0);
    const correct = evals.reduce((a, e) => a + e.correct_count, 0);
    const loss = count > 0 ? lossSum / count : NaN;
    m.eval = { loss, perplexity: Math.exp(loss), accuracy: count > 0 ? correct / count : NaN, sequences: evals.reduce((a, e) => a + e.sequences, 0) };
  }
  const nspTargets = sum((r) => r.nsp_target_count);
  if (nspTargets > 0) m.nsp_loss = sum((r) => r.nsp_loss_sum) / nspTargets;
  const ckpt = reports.find((r) => r.checkpoint_dir !== "");
  if (ckpt) m.checkpoint_dir = ckpt.checkpoint_dir;
  return m;
}

function toServiceError(err: unknown): grpc.ServiceError {
  if (err && typeof err === "object" && "code" in err && typeof (err as { code: unknown }).code === "number") {
    return err as grpc.ServiceError;
  }
  return rpcError(grpc.status.INTERNAL, err instanceof Error ? err.message : String(err));
}
