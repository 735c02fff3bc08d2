/**
 * The worker's training loop, top to bottom:
 *   listen for ring peers -> join the coordinator -> build tokenizer, data and model -> (resume) ->
 *   repeat { get plan -> forward/backward per micro-batch -> all-reduce -> AdamW -> eval / checkpoint -> report }.
 */
import type { RunConfig } from "../shared/config/schema";
import { modelConfigOf, scheduleOf } from "../shared/config/derived";
import { accumulationSteps } from "../shared/config/load";
import { selectBackend, type BackendName } from "../shared/backend/select";
import { measurePeakFlops } from "../shared/backend/peak-flops";
import { loadRunDocuments, preparePretrainingData, tokenizerFromTokens } from "../shared/pipeline/prepare";
import { DataSharder } from "../shared/data/sharding";
import { makeMlmBatch, Prefetcher, type Batch, type PackedSequences } from "../shared/data";
import { maskSettingsFor, type StepPlan as BatchPlan } from "../shared/data/objective";
import { BertModel } from "../shared/model/bert";
import { exportHfTensors, importHfTensors, parameterChecksum } from "../shared/model/hf";
import { trainingFlops } from "../shared/model/flops";
import { Trainer } from "../shared/train/trainer";
import { evaluateMlm } from "../shared/train/eval";
import { saveCheckpoint, loadCheckpoint } from "../shared/checkpoint/checkpoint";
import { pruneCheckpoints } from "../shared/checkpoint/run-checkpoints";
import type { EvalResult, StepPlan, StepReport } from "../proto/coordinator";
import { RingCommunicator } from "./collective/ring-communicator";
import { RingReducer } from "./tfjs/ring-reducer";
import { CoordinatorClient } from "./coordinator-client";
import { Heartbeat } from "./heartbeat";
import type { WorkerEnv } from "./env";
import * as fs from "node:fs";

/** Communication settings a worker needs before it joins (launch passes them in RINGTRAIN_COMM_JSON). */
export type CommSettings = RunConfig["communication"];

/** Seed of the evaluation masks: fixed, so every evaluation scores the same masked positions. */
const EVAL_EPOCH = 0x7fffffff;

/** Runs one worker to completion; resolves with the reason the coordinator gave for stopping. */
export async function runWorker(env: WorkerEnv, comm: CommSettings, log: (line: string) => void, onCoordinatorLost: (message: string) => void): Promise<string> {
  // 1. Listen for ring peers, then join: the coordinator answers once the whole world is there.
  const ring = await RingCommunicator.listen({
    jobId: env.jobId, token: env.token, rank: env.rank, worldSize: env.worldSize, timeoutMs: comm.timeout_ms,
    host: env.bindHost, port: env.peerPort, chunkBytes: comm.chunk_bytes, bucketBytes: comm.bucket_bytes, compression: comm.compression,
  });
  const client = new CoordinatorClient(env.coordinatorAddress, env.token);
  const heartbeat = new Heartbeat(client, env, comm, onCoordinatorLost);
  try {
    const joined = await client.join(
      { job_id: env.jobId, node_rank: env.nodeRank, local_rank: env.localRank, hostname: env.hostname,
        peer_address: `${env.advertiseHost}:${ring.address.slice(ring.address.lastIndexOf(":") + 1)}`, pid: process.pid },
      comm.join_timeout_ms + 5_000,
    );
    if (joined.rank !== env.rank || joined.world_size !== env.worldSize) {
      throw new Error(`coordinator assigned rank ${joined.rank}/${joined.world_size}, but this worker was started as rank ${env.rank}/${env.worldSize}`);
    }
    const cfg = JSON.parse(joined.config_json) as RunConfig;
    if (JSON.stringify(cfg.communication) !== JSON.stringify(comm)) {
      throw new Error(`rank ${env.rank} on ${env.hostname} was started with communication settings that differ from the coordinator's config`);
    }
    heartbeat.start();
    await ring.connect(joined.ring_peer_addresses);

    // 2. Backend, tokenizer, data, model: identical on every rank (same vocab, seed, cache).
    const backend = await selectBackend(cfg.backend as BackendName);
    const peakFlops = measurePeakFlops();
    const tokenizer = tokenizerFromTokens(joined.vocab_tokens, cfg);
    const data = preparePretrainingData(cfg, loadRunDocuments(cfg), tokenizer);
    const modelConfig = modelConfigOf(cfg, tokenizer.vocabSize);
    const model = BertModel.create(modelConfig, cfg.seed);
    const trainer = new Trainer(model, {
      schedule: scheduleOf(cfg),
      adamw: { beta1: cfg.optimizer.beta1, beta2: cfg.optimizer.beta2, eps: cfg.optimizer.eps, weightDecay: cfg.optimizer.weight_decay },
      maxGradNorm: cfg.optimizer.grad_clip_norm,
      dropoutSeed: cfg.seed,
    }, new RingReducer(ring));
    if (joined.resume_checkpoint_dir !== "") {
      const ckpt = await loadCheckpoint(joined.resume_checkpoint_dir, { withTrainingState: true });
      importHfTensors(model, ckpt.tensors);
      const state = ckpt.trainingState!;
      trainer.setOptimizerState({ step: Number(state.meta.trainer_step), tensors: new Map([...state.tensors].map(([k, t]) => [k, t.data])) });
      log(`resumed from ${joined.resume_checkpoint_dir} at step ${joined.start_step}`);
    }
    log(`rank ${env.rank}/${env.worldSize} on ${env.hostname} (pid ${process.pid}): backend ${backend}, peak matmul ${(peakFlops / 1e9).toFixed(1)} GFLOP/s, ` +
      `${data.train.count} train / ${data.validation.count} validation sequences of ${data.train.seqLen}`);

    // 3. Batches are built ahead in a worker thread from the same deterministic sharding the coordinator uses.
    const mask = maskSettingsFor(tokenizer, cfg.seed, { mlmProbability: cfg.data.mlm_probability, wholeWordMask: cfg.data.whole_word_mask });
    const sharder = new DataSharder(data.train.count, cfg.batch.global_batch_size, cfg.seed);
    const micro = cfg.batch.micro_batch_size;
    const accumulation = accumulationSteps(cfg, env.worldSize);
    const planned: number[][] = []; // indices of the prefetched micro-batches, in order, to check against the plans
    const prefetcher = new Prefetcher(
      { kind: "mlm", data: data.train, mask },
      recordPlans(microBatchPlans(sharder, joined.start_step + 1, cfg.training.max_steps, env.rank, env.worldSize, micro), planned),
      { depth: Math.max(1, cfg.data.prefetch_batches) * accumulation, threads: cfg.data.prefetch_batches > 0 ? 1 : 0 },
    );

    // 4. The loop: the first report is the start barrier carrying the initial parameter checksum.
    let report = emptyReport(env, joined.start_step);
    report.param_checksum = parameterChecksum(model);
    const perRank = cfg.batch.global_batch_size / env.worldSize;
    // Optional trace of the sequences each step trained on (debugging sharding and resume).
    const dataLog = process.env.RINGTRAIN_DATA_LOG || undefined;
    try {
      for (;;) {
        heartbeat.set(report.completed_step, "waiting for plan");
        const plan = await client.nextStep(report, comm.heartbeat_timeout_ms + comm.timeout_ms);
        if (plan.stop) return plan.stop_reason;
        const t0 = performance.now();
        report = emptyReport(env, plan.step);

        let dataWait = 0;
        let compute = 0;
        for (let m = 0; m < plan.accumulation_steps; m++) {
          heartbeat.set(plan.step, "data");
          const td = performance.now();
          const batch = await prefetcher.next();
          dataWait += performance.now() - td;
          if (batch === undefined) throw new Error(`data plan ended before step ${plan.step}`);
          checkPlan(plan, m, micro, planned.shift());
          heartbeat.set(plan.step, "compute");
          const tc = performance.now();
          const stats = trainer.accumulate(batch, (plan.step - 1) * cfg.batch.global_batch_size + env.rank * perRank + m * micro);
          compute += performance.now() - tc;
          report.loss_sum += stats.mlmLossSum;
          report.target_count += stats.mlmTargets;
          report.tokens += tokensIn(batch);
          await new Promise<void>((resolve) => setImmediate(resolve)); // let heartbeats and peer traffic run
        }
        heartbeat.set(plan.step, "all-reduce");
        const tu = performance.now();
        const reducer = trainer.reducer as RingReducer;
        const result = await trainer.applyUpdate();
        if (Math.abs(result.lr - plan.learning_rate) > 1e-12 * Math.max(1, plan.learning_rate)) {
          throw new Error(`step ${plan.step}: learning rate ${result.lr} differs from the coordinator's ${plan.learning_rate} (config mismatch?)`);
        }
        report.communication_ms = reducer.lastMs;
        report.optimizer_ms = performance.now() - tu - reducer.lastMs;
        report.grad_norm = result.gradNorm;
        report.data_wait_ms = dataWait;
        report.compute_ms = compute;
        report.model_flops = trainingFlops(modelConfig, report.tokens, data.train.seqLen, report.target_count);
        report.peak_flops_per_s = peakFlops;

        if (plan.eval_sequence_indices.length > 0) {
          heartbeat.set(plan.step, "evaluation");
          report.eval = evaluate(model, data.validation, plan.eval_sequence_indices, micro, (b) => makeMlmBatch(data.validation, b, { ...mask, epoch: EVAL_EPOCH }));
        }
        if (plan.report_param_checksum) report.param_checksum = parameterChecksum(model);
        if (plan.checkpoint_dir !== "" && env.rank === 0) {
          heartbeat.set(plan.step, "checkpoint");
          await saveCheckpoint(plan.checkpoint_dir, {
            config: modelConfig,
            tensors: exportHfTensors(model),
            vocab: joined.vocab_tokens,
            padTokenId: tokenizer.specialIds.pad,
            step: plan.step,
            trainingState: {
              tensors: new Map([...trainer.getOptimizerState().tensors].map(([k, v]) => [k, { shape: [v.length], data: v }])),
              meta: { step: plan.step, trainer_step: trainer.step, data_position: plan.step * cfg.batch.global_batch_size, world_size: env.worldSize, seed: cfg.seed },
            },
          });
          await pruneCheckpoints(joined.run_dir, cfg.training.keep_checkpoints);
          report.checkpoint_dir = plan.checkpoint_dir;
        }
        report.step_ms = performance.now() - t0;
        if (dataLog !== undefined) {
          fs.appendFileSync(dataLog, JSON.stringify({ step: plan.step, rank: env.rank, indices: plan.sequence_indices, epochs: plan.sequence_epochs }) + "\n");
        }
      }
    } finally {
      await prefetcher.close();
      model.dispose();
    }
  } finally {
    heartbeat.stop();
    client.close();
    await ring.close();
  }
}

/** The micro-batches of this rank from `firstStep` to `maxSteps`, as the coordinator will plan them. */
function* microBatchPlans(sharder: DataSharder, firstStep: number, maxSteps: number, rank: number, world: number, micro: number): Generator<BatchPlan> {
  for (let step = firstStep; step <= maxSteps; step++) {
    const { indices, epochs } = sharder.rankSlice(step, rank, world);
    for (let i = 0; i < indices.length; i += micro) yield { indices: indices.slice(i, i + micro), epoch: epochs.slice(i, i + micro) };
  }
}

/** Passes plans through, recording each one's indices. */
function* recordPlans(plans: Iterable<BatchPlan>, into: number[][]): Generator<BatchPlan> {
  for (const p of plans) {
    into.push(Array.from(p.indices));
    yield p;
  }
}

/** The prefetched micro-batch must be the one the coordinator planned (same sharding on both sides). */
function checkPlan(plan: StepPlan, m: number, micro: number, prefetched: number[] | undefined): void {
  const want = plan.sequence_indices.slice(m * micro, (m + 1) * micro);
  if (prefetched === undefined || prefetched.length !== want.length || prefetched.some((x, i) => x !== want[i])) {
    throw new Error(`step ${plan.step}: prefetched micro-batch ${m} holds sequences [${prefetched?.slice(0, 4).join(",")}...] but the coordinator planned [${want.slice(0, 4).join(",")}...]; data sharding disagrees`);
  }
}

function tokensIn(batch: Batch): number {
  let n = 0;
  for (let i = 0; i < batch.attentionMask.length; i++) n += batch.attentionMask[i];
  return n;
}

function evaluate(model: BertModel, data: PackedSequences, indices: number[], micro: number, make: (idx: number[]) => Batch): EvalResult {
  const out: EvalResult = { loss_sum: 0, target_count: 0, correct_count: 0, sequences: indices.length };
  for (let i = 0; i < indices.length; i += micro) {
    const e = evaluateMlm(model, make(indices.slice(i, i + micro).filter((x) => x < data.count)));
    out.loss_sum += e.lossSum;
    out.target_count += e.numTargets;
    out.correct_count += e.correct;
  }
  return out;
}

function emptyReport(env: WorkerEnv, completedStep: number): StepReport {
  return {
    job_id: env.jobId, rank: env.rank, completed_step: completedStep, loss_sum: 0, target_count: 0, tokens: 0,
    step_ms: 0, data_wait_ms: 0, compute_ms: 0, communication_ms: 0, optimizer_ms: 0, grad_norm: 0, eval: null,
    checkpoint_dir: "", param_checksum: "", model_flops: 0, peak_flops_per_s: 0,
  };
}

