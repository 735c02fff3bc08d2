/**
 * The worker's training loop, top to bottom:
 *   listen for ring peers -> join the coordinator -> build the task (tokenizer, data, model; resume) ->
 *   repeat { get plan -> forward/backward per micro-batch -> all-reduce -> AdamW -> eval / test / checkpoint -> report }.
 * What is trained (MLM pretraining, or a classifier fine-tuned with some method) is the Task's business (worker/tasks).
 */
import type { RunConfig } from "../shared/config/schema";
import { joinHostPort, splitHostPort } from "../shared/net/host-port";
import { selectBackend, type BackendName } from "../shared/backend/select";
import { measurePeakFlops } from "../shared/backend/peak-flops";
import type { StepPlan, StepReport } from "../proto/coordinator";
import { RingCommunicator } from "./collective/ring-communicator";
import { ThreadedRing, type Collective } from "./collective/ring-thread";
import { CompressingReducer } from "./compression/compressing-reducer";
import { loadCompressionState, saveCompressionState } from "./compression/compression-state";
import { createReducer } from "./compression/create-reducer";
import * as grpc from "@grpc/grpc-js";
import { CoordinatorClient, JobMismatchError } from "./coordinator-client";
import { Heartbeat } from "./heartbeat";
import { hangIfInjected, slowDownIfInjected } from "./fault-injection";
import { loadMutualTls } from "../shared/security/tls";
import { createTask } from "./tasks";
import type { MicroBatch } from "./tasks/task";
import type { WorkerEnv } from "./env";
import { TimelineRecorder } from "./timeline";
import { SplitSchedule } from "./tasks/plans";
import { balanceLag } from "../shared/data/sharding";
import { accumulationSteps } from "../shared/config/load";
import { configDifferences } from "../shared/config/node-differences";
import * as fs from "node:fs";

/** Communication settings a worker needs before it joins (launch passes them in RINGTRAIN_COMM_JSON). */
export type CommSettings = RunConfig["communication"];

/** gRPC codes with which the coordinator refuses a join that cannot succeed on retry (token, job id, rank range, duplicate). */
const REFUSED_JOIN = new Set([grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED, grpc.status.FAILED_PRECONDITION, grpc.status.INVALID_ARGUMENT, grpc.status.ALREADY_EXISTS]);

/**
 * Runs one worker to completion; resolves with the reason the coordinator gave for stopping. `nodeConfig` is the
 * run config this worker's node was started with (nodes other than 0), checked against the one the job runs.
 */
export async function runWorker(
  env: WorkerEnv, comm: CommSettings, log: (line: string) => void, onCoordinatorLost: (message: string) => void, nodeConfig?: unknown,
): Promise<string> {
  // 1. Listen for ring peers, then join: the coordinator answers once the whole world is there.
  const timeline = env.timelineDir !== undefined ? new TimelineRecorder(env.timelineDir, env.rank, env.hostname, { warn: log }) : undefined;
  // With overlap the ring lives in its own thread, so buckets travel while this thread runs the backward pass.
  const ringOptions = {
    jobId: env.jobId, token: env.token, rank: env.rank, worldSize: env.worldSize, timeoutMs: comm.timeout_ms,
    host: env.bindHost, port: env.peerPort, chunkBytes: comm.chunk_bytes, bucketBytes: comm.bucket_bytes, compression: comm.compression,
    transport: comm.transport === "auto" ? undefined : comm.transport,
    localSockets: comm.unix_sockets, advertisedHost: env.advertiseHost,
    onEvent: timeline?.collective.observe,
  };
  const ring: Collective = comm.overlap
    ? await ThreadedRing.listen(ringOptions, comm.tls)
    : await RingCommunicator.listen({ ...ringOptions, tls: loadMutualTls(comm.tls) });
  const client = new CoordinatorClient(env.coordinatorAddress, env.token, loadMutualTls(comm.tls)?.channel());
  const heartbeat = new Heartbeat(env, comm, onCoordinatorLost);
  try {
    const joined = await client.join(
      { job_id: env.jobId, node_rank: env.nodeRank, local_rank: env.localRank, hostname: env.hostname,
        peer_address: joinHostPort(env.advertiseHost, splitHostPort(ring.address).port), pid: process.pid },
      comm.join_timeout_ms + 5_000,
    ).catch((e: unknown) => {
      throw REFUSED_JOIN.has((e as { code?: number }).code ?? -1) ? new JobMismatchError((e as Error).message, false) : e;
    });
    if (joined.rank !== env.rank || joined.world_size !== env.worldSize) {
      throw new JobMismatchError(`coordinator assigned rank ${joined.rank}/${joined.world_size}, but this worker was started as rank ${env.rank}/${env.worldSize} (--nodes and --workers must agree on every node)`, true);
    }
    const cfg = JSON.parse(joined.config_json) as RunConfig;
    // The job runs node 0's config; a node started with other settings is refused rather than silently overruled.
    const differ = configDifferences(nodeConfig ?? { communication: comm }, nodeConfig !== undefined ? cfg : { communication: cfg.communication });
    if (differ.length > 0) {
      throw new JobMismatchError(`rank ${env.rank} on ${env.hostname} was started with settings that differ from node 0's config (give every node the same config and flags): ${differ.join("; ")}`, true);
    }
    heartbeat.start();
    await ring.connect(joined.ring_peer_addresses);

    // 2. Backend, then the task (tokenizer, data, model, objective): identical on every rank (same vocab, seed, cache).
    const backend = await selectBackend(cfg.backend as BackendName);
    const peakFlops = measurePeakFlops();
    const reducer = createReducer(cfg.communication, ring);
    const lag = balanceLag(cfg.data.prefetch_batches, accumulationSteps(cfg, env.worldSize));
    const splits = new SplitSchedule(cfg.batch.global_batch_size, env.worldSize, cfg.batch.balance === "adaptive" && env.worldSize > 1, joined.start_step + lag);
    const task = await createTask({ cfg, joined, env, reducer, log, splits });
    // Compression's residuals are this rank's own: restored from its own file beside the checkpoint.
    const compression = reducer instanceof CompressingReducer ? reducer : undefined;
    if (joined.resume_checkpoint_dir !== "" && compression !== undefined) {
      log(await loadCompressionState(joined.resume_checkpoint_dir, compression, { rank: env.rank, worldSize: env.worldSize }));
    }
    log(`rank ${env.rank}/${env.worldSize} on ${env.hostname} (pid ${process.pid}): backend ${backend}, peak matmul ${(peakFlops / 1e9).toFixed(1)} GFLOP/s, ${task.summary}; ${heapSetting()}`);

    // 3. The loop: the first report is the start barrier carrying the initial parameter checksum.
    const micro = cfg.batch.micro_batch_size;
    let report = emptyReport(env, joined.start_step);
    report.param_checksum = task.checksum();
    // Optional trace of the sequences each step trained on (debugging sharding and resume).
    const dataLog = process.env.RINGTRAIN_DATA_LOG || undefined;
    try {
      for (;;) {
        heartbeat.set(report.completed_step, "waiting for plan");
        const tw = performance.now();
        const plan = await client.nextStep(report, comm.heartbeat_timeout_ms + comm.timeout_ms);
        timeline?.planWait(tw, plan.step, plan.stop);
        if (plan.stop) return plan.stop_reason;
        const t0 = performance.now();
        report = emptyReport(env, plan.step);
        if (plan.split_for_step > 0) splits.announce(plan.split_for_step, plan.split_sequences_per_rank);

        // Logged before this rank contributes to the step's all-reduce (with overlap that starts during the last
        // backward pass): a step whose all-reduce completed is then logged by every rank, even one that dies right after.
        if (dataLog !== undefined) {
          fs.appendFileSync(dataLog, JSON.stringify({ step: plan.step, rank: env.rank, world: env.worldSize, coordinator: env.coordinatorAddress, indices: plan.sequence_indices, epochs: plan.sequence_epochs }) + "\n");
        }
        let dataWait = 0;
        let compute = 0;
        const fetchMicroBatch = async (m: number): Promise<MicroBatch> => {
          heartbeat.set(plan.step, "data");
          const td = performance.now();
          const batch = await task.nextMicroBatch();
          dataWait += performance.now() - td;
          timeline?.endSpan("data wait", "data", td, { step: plan.step, micro: m });
          if (batch === undefined) throw new Error(`data plan ended before step ${plan.step}`);
          checkPlan(plan, m, micro, batch.indices);
          return batch;
        };
        // A loss averaged over global counts of the whole step (mlm+nsp: MLM per masked token, NSP per sequence)
        // needs them before the first backward pass: fetch the step's micro-batches (prefetched) first and let the
        // task sum their counts across ranks. Every other task trains each micro-batch as it arrives.
        const fetched: MicroBatch[] = [];
        let countsMs = 0;
        if (task.beginStep !== undefined) {
          for (let m = 0; m < plan.accumulation_steps; m++) fetched.push(await fetchMicroBatch(m));
          heartbeat.set(plan.step, "target counts all-reduce");
          const tn = performance.now();
          await task.beginStep(fetched);
          countsMs = performance.now() - tn;
        }
        for (let m = 0; m < plan.accumulation_steps; m++) {
          const batch = fetched[m] ?? (await fetchMicroBatch(m));
          heartbeat.set(plan.step, "compute");
          hangIfInjected(env.rank, plan.step);
          const tc = performance.now();
          const last = m === plan.accumulation_steps - 1; // only the last micro-batch's gradients are final: it starts the all-reduce
          const stats = batch.train((plan.step - 1) * cfg.batch.global_batch_size + plan.sequence_offset + m * micro, last);
          slowDownIfInjected(env.rank, performance.now() - tc);
          compute += performance.now() - tc;
          timeline?.endSpan("forward+backward", "compute", tc, { step: plan.step, micro: m });
          report.loss_sum += stats.mlmLossSum;
          report.target_count += stats.mlmTargets;
          report.nsp_loss_sum += stats.nspLossSum;
          report.nsp_target_count += stats.nspTargets;
          report.tokens += batch.tokens;
          report.sequences += batch.indices.length;
          await new Promise<void>((resolve) => setImmediate(resolve)); // let heartbeats and peer traffic run
        }
        heartbeat.set(plan.step, "all-reduce");
        const tu = performance.now();
        const result = await task.applyUpdate();
        timeline?.update(tu, plan.step);
        if (Math.abs(result.lr - plan.learning_rate) > 1e-12 * Math.max(1, plan.learning_rate)) {
          throw new Error(`step ${plan.step}: learning rate ${result.lr} differs from the coordinator's ${plan.learning_rate} (config mismatch?)`);
        }
        // Exposed communication: what this thread waited for the result after its backward pass (with overlap the
        // result may already be in before the update starts: 0); the rest of applyUpdate is the optimizer.
        const tEnd = performance.now();
        const doneAt = Math.min(tEnd, Math.max(tu, reducer.lastDoneAt ?? tu + reducer.lastMs));
        // the target counts' collective before the backward pass (mlm+nsp) is exposed communication too
        report.communication_ms = doneAt - tu + countsMs;
        report.allreduce_wall_ms = reducer.lastTotalMs + countsMs;
        report.allreduce_bytes = reducer.lastBytes;
        report.optimizer_ms = tEnd - doneAt;
        report.grad_norm = result.gradNorm;
        report.data_wait_ms = dataWait;
        report.compute_ms = compute;
        report.model_flops = task.flops(report.tokens, report.target_count);
        report.peak_flops_per_s = peakFlops;

        if (plan.eval_sequence_indices.length > 0) {
          heartbeat.set(plan.step, "evaluation");
          const te = performance.now();
          report.eval = task.evaluate("validation", plan.eval_sequence_indices);
          timeline?.endSpan("evaluation", "eval", te, { step: plan.step, sequences: plan.eval_sequence_indices.length });
        }
        if (plan.test_sequence_indices.length > 0) {
          heartbeat.set(plan.step, "test evaluation");
          const te = performance.now();
          report.test_eval = task.evaluate("test", plan.test_sequence_indices);
          timeline?.endSpan("test evaluation", "eval", te, { step: plan.step, sequences: plan.test_sequence_indices.length });
        }
        if (plan.report_param_checksum) report.param_checksum = task.checksum();
        if (plan.checkpoint_dir !== "" && env.rank === 0) {
          heartbeat.set(plan.step, "checkpoint");
          const tk = performance.now();
          await task.save(plan.checkpoint_dir, plan.step);
          timeline?.endSpan("checkpoint", "checkpoint", tk, { step: plan.step });
          report.checkpoint_dir = plan.checkpoint_dir;
        }
        if (plan.checkpoint_dir !== "" && compression !== undefined) {
          await saveCompressionState(plan.checkpoint_dir, compression, { rank: env.rank, worldSize: env.worldSize, step: plan.step });
        }
        report.step_ms = performance.now() - t0;
        timeline?.endSpan("step", "step", t0, { step: plan.step, tokens: report.tokens });
      }
    } finally {
      await task.close();
    }
  } finally {
    heartbeat.stop();
    client.close();
    await ring.close();
    timeline?.close();
  }
}

/** This process's V8 old-space setting as launch passed it (training.worker_initial_old_space_mb), for the log. */
function heapSetting(): string {
  const flag = process.execArgv.find((a) => a.startsWith("--initial-old-space-size="));
  return flag === undefined ? "V8 initial old space: node's default" : `V8 initial old space: ${flag.split("=")[1]} MB`;
}

/** The prefetched micro-batch must be the one the coordinator planned (same sharding on both sides). */
function checkPlan(plan: StepPlan, m: number, micro: number, prefetched: number[] | undefined): void {
  const want = plan.sequence_indices.slice(m * micro, (m + 1) * micro);
  if (prefetched === undefined || prefetched.length !== want.length || prefetched.some((x, i) => x !== want[i])) {
    throw new Error(`step ${plan.step}: prefetched micro-batch ${m} holds sequences [${prefetched?.slice(0, 4).join(",")}...] but the coordinator planned [${want.slice(0, 4).join(",")}...]; data sharding disagrees`);
  }
}

function emptyReport(env: WorkerEnv, completedStep: number): StepReport {
  return {
    job_id: env.jobId, rank: env.rank, completed_step: completedStep, loss_sum: 0, target_count: 0, tokens: 0,
    step_ms: 0, data_wait_ms: 0, compute_ms: 0, communication_ms: 0, optimizer_ms: 0, grad_norm: 0, eval: null,
    checkpoint_dir: "", param_checksum: "", model_flops: 0, peak_flops_per_s: 0, test_eval: null, allreduce_bytes: 0, allreduce_wall_ms: 0, sequences: 0,
    nsp_loss_sum: 0, nsp_target_count: 0,
  };
}

