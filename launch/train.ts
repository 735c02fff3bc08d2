/**
 * `launch CONFIG.yaml`: validate the config, prepare tokenizer and data once, start the coordinator (node 0)
 * and this node's workers, show progress, and stop everything together.
 */
import * as crypto from "node:crypto";
import { isIpv6Literal, joinHostPort, splitHostPort, wildcardHost } from "../shared/net/host-port";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { stringify } from "yaml";
import { Coordinator, type JobOutcome } from "../coordinator/coordinator";
import { EXITED_PHASE } from "../proto/coordinator";
import { CoordinatorClient } from "../worker/coordinator-client";
import { loadMutualTls } from "../shared/security/tls";
import type { StepMetrics } from "../coordinator/metrics";
import { ConfigError, loadRunConfig, validateForWorld, configWarnings, type ConfigOverrides } from "../shared/config/load";
import type { RunConfig } from "../shared/config/schema";
import { scheduleOf } from "../shared/config/derived";
import { lrAt } from "../shared/train/schedule";
import { checkpointDirFor } from "../shared/checkpoint/run-checkpoints";
import { readManifest } from "../shared/checkpoint/manifest";
import { hasTrainingState, readTrainingMeta } from "../shared/checkpoint/checkpoint";
import { missingTrainingStateMessage } from "../shared/finetune/resume";
import { modelChecksum, resolveCheckpointDir } from "../shared/finetune/base-model";
import { methodSettings, peftSettingsOf } from "../shared/peft/settings";
import { Vocab } from "../shared/tokenizer/vocab";
import { atomicWriteFile } from "../shared/io/atomic-write";
import { workerMallocEnv } from "../worker/transport/malloc-env";
import { EXIT_CONFIG, EXIT_COORDINATOR_LOST, EXIT_INTERRUPTED, EXIT_OK, EXIT_WORKER_FAILURE } from "../shared/exit-codes";
import { resolveWorld, type World, type WorldArgs } from "./world";
import { gpuFallbackReason, installedNativeBackend } from "../shared/backend/select";
import { Supervisor, type WorkerExit } from "./supervisor";
import { workerHeapFlags } from "./child-node-flags";
import { ProgressReporter } from "./progress";
import { dropSnapshots, newestResumePoint, pruneSnapshots, snapshotRoot } from "./snapshots";
import { checkFinetuneConfig, checkInitFrom, classificationReport, prepareJobData } from "./job-data";
import { waitForCoordinator, watchCoordinator } from "./coordinator-wait";
import { asInputError } from "./input-error";
import { mergeTimelines, timelineFileName } from "../worker/timeline";
import { makeDirs } from "../shared/io/make-dirs";

/** Arguments of a training launch. */
export interface TrainArgs extends WorldArgs {
  config?: string;
  resume?: string;
  /** Resume from output_dir's latest good checkpoint when it has one, else start fresh. */
  autoResume?: boolean;
  overrides: ConfigOverrides;
  jobId?: string;
  advertiseHost?: string;
  dryRun?: boolean;
  quiet?: boolean;
  /** Replace a previous run in output_dir (its checkpoints, metrics, logs) instead of refusing to start. */
  overwrite?: boolean;
  /**
   * Set by --max-restarts on every attempt after the first: an attempt that starts over keeps the failed one's logs
   * (appended to), and a resumed one gives no advice about the worker count it chose itself.
   */
  restarting?: boolean;
}

/** Where the resolved config of a run is saved; `--resume RUN_DIR` reads it back. */
export const RUN_CONFIG_FILE = "config.yaml";

/** Runs (or resumes) a training job on this node; resolves with the process exit code. */
export async function launchTraining(args: TrainArgs): Promise<number> {
  const world = resolveWorld(args);
  const { cfg, source, resume, complete } = await resolveConfig(args);
  if (complete) {
    process.stderr.write(`launch: ${cfg.output_dir} already holds the final checkpoint (step ${cfg.training.max_steps}); nothing to do\n`);
    return EXIT_OK;
  }
  validateForWorld(cfg, world.worldSize, source);
  // an automatic restart (--max-restarts, elastic) chose its world itself: no advice to the user then
  if (resume !== undefined && world.nodeRank === 0 && args.restarting !== true) {
    const before = lastWorldSize(path.resolve(cfg.output_dir));
    if (before !== undefined && before !== world.worldSize) {
      process.stderr.write(`launch: note: resuming with ${world.worldSize} worker(s); the run last trained with ${before} (the global batch stays the same; pass --workers ${before} to train as before)\n`);
    }
  }
  for (const w of configWarnings(cfg, source)) process.stderr.write(`launch: warning: ${w}\n`);
  if (cfg.backend === "tensorflow" && installedNativeBackend() === null) {
    throw new ConfigError(`${source}: field backend: 'tensorflow' needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node (optional, not installed): npm install @tensorflow/tfjs-node-gpu, or use backend wasm`);
  }
  // --gpus on a machine (or config) that cannot use them still trains, on the CPU: say so before anything starts.
  const gpuFallback = world.useGpus ? gpuFallbackReason(cfg.backend, installedNativeBackend()) : null;
  if (gpuFallback !== null) process.stderr.write(`launch: warning: --gpus ${world.workersPerNode}: the workers will run on the CPU: ${gpuFallback}\n`);
  await checkFinetuneConfig(cfg, source);
  await checkInitFrom(cfg, source);
  if (world.useGpus) gpuOf(0, world.workersPerNode); // checks an inherited CUDA_VISIBLE_DEVICES before anything starts
  // Node 0 owns the run directory; other nodes only add their ranks' logs to it.
  const previousRun = resume === undefined && world.nodeRank === 0 ? previousRunIn(path.resolve(cfg.output_dir)) : undefined;
  if (previousRun !== undefined && !(args.overwrite === true || args.autoResume === true)) {
    throw new ConfigError(
      `${source}: field output_dir: ${path.resolve(cfg.output_dir)} already holds a run (${previousRun}); continue it with launch --resume ${cfg.output_dir}, ` +
        `replace it with --overwrite, or choose another --output`,
    );
  }
  const jobId = args.jobId ?? process.env.RINGTRAIN_JOB_ID ?? cfg.name;
  const token = jobToken(world);
  const multiNode = world.nodes > 1;
  if (args.dryRun) {
    // the resume point by directory and step (its vocabulary is the checkpoint's vocab.txt, not worth printing)
    const resumeAt = resume === undefined ? null : { dir: resume.dir, step: resume.step };
    const data = world.nodeRank === 0 && cfg.task === "classification" ? await dryRunClassificationData(cfg, source, args.quiet === true) : undefined;
    process.stdout.write(JSON.stringify({ config: cfg, world, jobId, resume: resumeAt, ...(data && { data }) }, null, 2) + "\n");
    return EXIT_OK;
  }
  const log = (line: string): void => {
    if (!args.quiet) process.stderr.write(`launch: ${line}\n`);
  };
  /** Failures and interruptions are printed even with --quiet. */
  const alert = (line: string): void => {
    process.stderr.write(`launch: ${line}\n`);
  };
  const runDir = path.resolve(cfg.output_dir);
  const snapshots = snapshotRoot(cfg);
  // Checked before anything in it changes: an unwritable run directory is bad input (exit 2), not a crash.
  try {
    makeDirs(runDir);
  } catch (e) {
    throw new ConfigError(`${source}: field output_dir: cannot create ${runDir}: ${(e as Error).message}`);
  }
  checkWritable(runDir, source);
  // A restart or resume keeps the earlier attempt's failure record in logs/, so failure.json names only this attempt's.
  if (world.nodeRank === 0 && (resume !== undefined || args.restarting === true)) {
    const kept = archiveFailureRecord(runDir);
    if (kept !== undefined) log(`the previous attempt's failure.json is kept as ${kept}`);
  }
  // Node 0 reads the data before --overwrite removes anything: a data error (a misspelt label_field, say) must
  // leave the previous run as it was.
  const job = world.nodeRank !== 0 ? undefined : await prepareJobData(cfg, resume?.vocab, log).catch((e: unknown) => {
    throw asInputError(e, `${source}: data: `);
  });
  if (previousRun !== undefined) {
    log(`replacing the previous run in ${runDir} (${previousRun})`);
    clearRun(runDir, args.restarting === true);
  }
  const timelineDir = cfg.training.timeline ? prepareTimelineDir(runDir, world, resume !== undefined) : undefined;

  let coordinator: Coordinator | undefined;
  let coordinatorAddress = world.coordinatorAddress;
  if (job !== undefined) {
    // written once the data is known to be usable, so a run that cannot start leaves its directory as it was
    await atomicWriteFile(path.join(runDir, RUN_CONFIG_FILE), stringify(cfg));
    await atomicWriteFile(path.join(runDir, "vocab.txt"), job.vocab.join("\n") + "\n");
    const schedule = scheduleOf(cfg);
    const port = coordinatorAddress ? splitHostPort(coordinatorAddress).port : 0;
    coordinator = constructOrInputError(source, () => new Coordinator({
      jobId, token, config: cfg, runDir,
      worldSize: world.worldSize, workersPerNode: world.workersPerNode,
      vocab: job.vocab,
      numTrainSequences: job.numTrain, numValidationSequences: job.numValidation,
      numTestSequences: job.numTest, classLabels: job.labels,
      learningRateAt: (step) => lrAt(schedule, step - 1),
      checkpointDirFor: (step) => checkpointDirFor(runDir, step),
      snapshotDirFor: cfg.elastic.snapshot_interval_steps > 0 ? (step) => checkpointDirFor(snapshots, step) : undefined,
      startStep: resume?.step ?? 0,
      resumeCheckpointDir: resume?.dir,
      bindAddress: joinHostPort(multiNode ? wildcardHost(usesIpv6(world, args.advertiseHost)) : "127.0.0.1", port),
    }));
    if (coordinator.droppedMetricRecords > 0) log(`metrics.jsonl: dropped ${coordinator.droppedMetricRecords} record(s) after step ${resume?.step} (those steps are trained again from the checkpoint)`);
    const bound = await coordinator.start();
    coordinatorAddress = multiNode ? coordinatorAddress : bound;
    log(`coordinator listening on ${bound}; job '${jobId}', ${world.worldSize} worker(s) on ${world.nodes} node(s)${resume ? `, resuming at step ${resume.step}` : ""}`);
  }

  // Nodes start in any order: wait for node 0's coordinator rather than letting workers fail to join it.
  if (world.nodeRank > 0 && !(await waitForCoordinator(coordinatorAddress!, cfg.communication.join_timeout_ms, log))) {
    process.stderr.write(`launch: coordinator ${coordinatorAddress} not reachable within communication.join_timeout_ms (${cfg.communication.join_timeout_ms} ms)\n`);
    return EXIT_COORDINATOR_LOST;
  }
  const supervisor = new Supervisor(path.join(__dirname, "..", "worker", "main.js"), path.join(runDir, "logs"), (exit) => onWorkerExit(exit), workerHeapFlags(cfg.training.worker_initial_old_space_mb));
  let interrupted = false;
  /** Reports of this node's dead workers to node 0's coordinator, awaited before launch exits. */
  const exitReports: Promise<void>[] = [];
  let resolveInterrupted!: () => void;
  const interruption = new Promise<void>((resolve) => (resolveInterrupted = resolve));
  let workerFailure: string | undefined;
  const onWorkerExit = (exit: WorkerExit): void => {
    if (exit.code === 0) return;
    const why = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    const seen = coordinator?.lastKnown(exit.rank);
    const where = seen ? ` at step ${seen.step} (${seen.phase})` : "";
    workerFailure ??= `worker rank ${exit.rank} (pid ${exit.pid}, host ${os.hostname()}) ${why}${where}; see ${path.join(runDir, "logs", `rank-${exit.rank}.log`)}`;
    // exit 2, 3 or 4: the worker reported its failure (or was refused, or lost the coordinator); else it died without a word
    const reported = exit.signal === null && (exit.code === EXIT_CONFIG || exit.code === EXIT_WORKER_FAILURE || exit.code === EXIT_COORDINATOR_LOST);
    if (coordinator) coordinator.fail(workerFailure, exit.rank, reported);
    else if (!reported) exitReports.push(reportExitToCoordinator(coordinatorAddress!, token, jobId, cfg, exit.rank, `worker process (pid ${exit.pid}, host ${os.hostname()}) ${why}`));
  };
  const stopSignals = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    resolveInterrupted(); // the main flow then stops the workers, escalating to SIGKILL for any that ignore SIGTERM
    alert(`${signal}: stopping all workers`);
    coordinator?.fail(`interrupted by ${signal}`);
    for (const pid of supervisor.runningPids()) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // already gone
      }
    }
  };
  process.on("SIGINT", stopSignals);
  process.on("SIGTERM", stopSignals);

  const progress = new ProgressReporter(cfg.training.max_steps, resume?.step ?? 0, !args.quiet, cfg.training.log_interval_steps, cfg.objective === "causal" ? "next-token accuracy" : "masked-token accuracy");
  coordinator?.on("refused", (line: string) => alert(`coordinator: ${line}`));
  coordinator?.on("step", (m: StepMetrics) => {
    progress.update(m);
    if (m.checkpoint_dir?.startsWith(snapshots)) void pruneSnapshots(snapshots).catch(() => undefined);
  });
  const comm = JSON.stringify(cfg.communication);
  // Nodes other than 0 run node 0's config: their workers compare it with this node's and refuse a mismatch.
  const nodeConfigEnv = world.nodeRank > 0 ? { RINGTRAIN_NODE_CONFIG_JSON: JSON.stringify(cfg) } : {};
  for (let local = 0; local < world.workersPerNode; local++) {
    const rank = world.nodeRank * world.workersPerNode + local;
    supervisor.start({
      rank,
      localRank: local,
      env: { ...timelineEnv(workerEnv(world, local, rank, jobId, token, coordinatorAddress!, comm, args.advertiseHost), timelineDir), ...nodeConfigEnv },
    }, true);
  }

  let outcome: JobOutcome | undefined;
  let coordinatorLost: string | undefined;
  if (coordinator) {
    outcome = await Promise.race([coordinator.finished(), supervisor.waitAll().then(() => coordinator!.finished())]);
  } else {
    // Nodes without the coordinator: the workers end when the coordinator ends the job (or they lose it). A worker
    // that cannot notice (stopped, hung) would keep this node waiting forever: the launcher watches the coordinator too.
    const { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } = cfg.communication;
    const watch = watchCoordinator(coordinatorAddress!, Math.max(200, Math.min(interval, 2000)), timeout);
    coordinatorLost = await Promise.race([supervisor.waitAll().then(() => undefined), watch.lost, interruption.then(() => undefined)]);
    watch.stop();
    if (coordinatorLost !== undefined) alert(`${coordinatorLost}: stopping this node's workers`);
  }
  const exits = await supervisor.stopAll(outcome?.status === "failed" || coordinatorLost !== undefined || interrupted ? 2000 : 30_000);
  await Promise.all(exitReports);
  progress.finish();
  await coordinator?.stop();
  if (timelineDir !== undefined && coordinator) writeMergedTimeline(runDir, timelineDir, log, alert);
  process.off("SIGINT", stopSignals);
  process.off("SIGTERM", stopSignals);

  if (interrupted) {
    alert(`interrupted; ${await resumeHint(cfg, runDir, world)}`);
    return EXIT_INTERRUPTED;
  }
  if (outcome?.status === "failed") {
    alert(`job failed: ${outcome.reason}`);
    return outcome.misconfigured === true ? EXIT_CONFIG : EXIT_WORKER_FAILURE;
  }
  if (coordinatorLost !== undefined) {
    alert(`job failed: ${coordinatorLost}`);
    return EXIT_COORDINATOR_LOST;
  }
  const failed = exits.filter((e) => e.code !== 0);
  if (failed.length > 0) {
    const bad = failed[0];
    alert(`job failed: ${workerFailure ?? `worker rank ${bad.rank} exited with ${bad.code ?? bad.signal}`}`);
    // every failed worker lost the coordinator (the job ended elsewhere, or node 0 died): say that, as the workers did
    if (failed.every((e) => e.code === EXIT_CONFIG)) return EXIT_CONFIG; // refused by the coordinator: settings differ between nodes
    return failed.every((e) => e.code === EXIT_COORDINATOR_LOST) ? EXIT_COORDINATOR_LOST : EXIT_WORKER_FAILURE;
  }
  if (coordinator) {
    log(`done: ${progress.summary()}; run directory ${runDir}`);
    dropSnapshots(snapshots);
  }
  const report = coordinator && cfg.task === "classification" ? classificationReport(runDir, job?.numValidation) : undefined;
  if (report !== undefined) process.stdout.write(report);
  return EXIT_OK;
}

/**
 * A fine-tune resumes on the base weights it trained on: its checkpoint records the base's model.safetensors sha256,
 * compared here with what finetune.base_model holds now (e.g. a base run started over in the same directory), so
 * the mismatch exits 2 before any process starts. A base that cannot be read is left to the worker, which names it.
 */
async function checkResumeBase(runDir: string, checkpointDir: string, baseModel: string): Promise<void> {
  const meta = await readTrainingMeta(checkpointDir).catch((e: Error) => {
    throw new ConfigError(`--resume ${runDir}: ${e.message}`);
  });
  const now = await modelChecksum(path.resolve(baseModel)).catch(() => undefined);
  if (now === undefined || meta.base_model_sha256 === now) return;
  throw new ConfigError(
    `--resume ${runDir}: checkpoint ${checkpointDir} was trained on base model ${String(meta.base_model)} with model.safetensors sha256 ` +
      `${String(meta.base_model_sha256)}, but finetune.base_model (${baseModel}) now holds sha256 ${now}: the frozen weights would differ. ` +
      `Resume with the base checkpoint it trained on, or start the fine-tune over: ${restartCommand(runDir)}`,
  );
}

/** Config from the file (+ overrides), or from RUN_DIR/config.yaml with --resume and its latest good checkpoint. */
async function resolveConfig(args: TrainArgs): Promise<{ cfg: RunConfig; source: string; resume?: { dir: string; step: number; vocab?: Vocab }; complete?: boolean }> {
  if (args.resume === undefined) {
    if (args.config === undefined) throw new ConfigError("give a CONFIG.yaml to train, or --resume RUN_DIR");
    const cfg = loadRunConfig(args.config, args.overrides);
    if (args.autoResume) {
      // A restarted job (e.g. a Kubernetes pod) continues its run directory when it holds a complete checkpoint.
      const runDir = path.resolve(cfg.output_dir);
      const { entry: checkpoint } = fs.existsSync(path.join(runDir, RUN_CONFIG_FILE)) ? await newestResumePoint(runDir, snapshotRoot(cfg)) : { entry: undefined };
      if (checkpoint !== undefined && checkpoint.step >= cfg.training.max_steps) return { cfg, source: args.config, complete: true };
      if (checkpoint !== undefined && cfg.task === "classification" && !hasTrainingState(await readManifest(checkpoint.dir))) {
        // a fine-tune saved before its checkpoints kept a training state: automation cannot ask, so it starts over as it used to
        process.stderr.write(`launch: --auto-resume: ${missingTrainingStateMessage(checkpoint.dir)}; starting ${cfg.output_dir} over\n`);
        return { cfg, source: args.config };
      }
      if (checkpoint !== undefined) return resolveConfig({ ...args, resume: runDir, autoResume: false });
    }
    return { cfg, source: args.config };
  }
  const source = path.join(args.resume, RUN_CONFIG_FILE);
  if (args.overrides.output !== undefined && path.resolve(args.overrides.output) !== path.resolve(args.resume)) {
    throw new ConfigError(`--resume ${args.resume} continues that run in place; --output ${args.overrides.output} cannot move it (copy the directory, then resume the copy)`);
  }
  if (!fs.existsSync(source)) throw new ConfigError(`--resume ${args.resume}: not a run directory (no ${RUN_CONFIG_FILE})`);
  const cfg = loadRunConfig(args.config ?? source, { ...args.overrides, output: args.resume });
  // config.yaml records the checkpoint finetune.base_model resolved to; an override (a restart passes the user's
  // flags again) may name its run directory: compare the checkpoints (a base run that trained on is another model)
  if (cfg.finetune !== undefined) cfg.finetune.base_model = await resolveCheckpointDir(path.resolve(cfg.finetune.base_model), "").catch(() => cfg.finetune!.base_model);
  checkResumeKeepsModel(loadRunConfig(source, { output: args.resume }), cfg, args.resume);
  const { entry: checkpoint, warnings, snapshot } = await newestResumePoint(args.resume, snapshotRoot(cfg));
  for (const w of warnings) process.stderr.write(`launch: warning: ${w}\n`);
  if (snapshot && checkpoint) process.stderr.write(`launch: resuming from the in-memory snapshot of step ${checkpoint.step} (${checkpoint.dir})\n`);
  if (checkpoint === undefined) throw new ConfigError(`--resume ${args.resume}: no complete checkpoint to resume from`);
  const manifest = await readManifest(checkpoint.dir);
  if (cfg.task === "classification" && !hasTrainingState(manifest)) {
    throw new ConfigError(`--resume ${args.resume}: ${missingTrainingStateMessage(checkpoint.dir)}; start the run over in place: ${restartCommand(args.resume)}`);
  }
  if (cfg.task === "classification" && cfg.finetune !== undefined) await checkResumeBase(args.resume, checkpoint.dir, cfg.finetune.base_model);
  // a fine-tune takes its vocabulary from finetune.base_model (an adapter checkpoint has no vocab.txt)
  const vocab = cfg.task === "classification" ? undefined : Vocab.load(path.join(checkpoint.dir, "vocab.txt"));
  if (cfg.training.max_steps <= checkpoint.step) {
    throw new ConfigError(`--resume ${args.resume}: checkpoint is at step ${checkpoint.step}, training.max_steps is ${cfg.training.max_steps}; raise it with --max-steps`);
  }
  return { cfg, source, resume: { dir: checkpoint.dir, step: manifest.step ?? checkpoint.step, vocab } };
}

/**
 * On a node without the coordinator: tells it that a local worker died without reporting (killed by a signal, or
 * crashed), so the job's failure names that rank rather than its neighbours, whose streams broke (best effort).
 */
async function reportExitToCoordinator(address: string, token: string, jobId: string, cfg: RunConfig, rank: number, message: string): Promise<void> {
  const client = new CoordinatorClient(address, token, loadMutualTls(cfg.communication.tls)?.channel());
  await client.reportFailure({ job_id: jobId, rank, step: 0, phase: EXITED_PHASE, message }, 2000).catch(() => undefined);
  client.close();
}

/** The job token: RINGTRAIN_TOKEN / RINGTRAIN_TOKEN_FILE, or a fresh random one on a single node. */
function jobToken(world: World): string {
  if (process.env.RINGTRAIN_TOKEN) return process.env.RINGTRAIN_TOKEN;
  if (process.env.RINGTRAIN_TOKEN_FILE) return fs.readFileSync(process.env.RINGTRAIN_TOKEN_FILE, "utf8").trim();
  if (world.nodes > 1) throw new ConfigError("multi-node runs need a shared job token: set RINGTRAIN_TOKEN or RINGTRAIN_TOKEN_FILE on every node");
  return crypto.randomBytes(24).toString("base64url");
}

/** Whether this job's nodes talk IPv6: the coordinator's or this node's advertised address is an IPv6 literal. */
function usesIpv6(world: World, advertiseHost: string | undefined): boolean {
  const coordinatorHost = world.coordinatorAddress === undefined ? "" : splitHostPort(world.coordinatorAddress).host;
  return isIpv6Literal(coordinatorHost) || (advertiseHost !== undefined && isIpv6Literal(advertiseHost));
}

function workerEnv(world: World, local: number, rank: number, jobId: string, token: string, coordinator: string, comm: string, advertiseHost?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...workerMallocEnv(),
    COORDINATOR_ADDR: coordinator,
    RINGTRAIN_JOB_ID: jobId,
    RINGTRAIN_TOKEN: token,
    RINGTRAIN_COMM_JSON: comm,
    NODE_RANK: String(world.nodeRank),
    LOCAL_RANK: String(local),
    LOCAL_WORLD_SIZE: String(world.workersPerNode),
    WORLD_SIZE: String(world.worldSize),
    RANK: String(rank),
    RINGTRAIN_BIND_HOST: world.nodes > 1 ? wildcardHost(usesIpv6(world, advertiseHost)) : "127.0.0.1",
  };
  delete env.RINGTRAIN_TOKEN_FILE;
  // A single node binds loopback and all its peers are local: an advertised host would not match.
  if (advertiseHost && world.nodes > 1) env.RINGTRAIN_ADVERTISE_HOST = advertiseHost;
  if (world.useGpus) env.CUDA_VISIBLE_DEVICES = gpuOf(local, world.workersPerNode);
  return env;
}

/**
 * The GPU of local rank `local`: the local-th entry of an inherited CUDA_VISIBLE_DEVICES (as torchrun keeps the
 * scheduler's mask), else `local` itself.
 */
export function gpuOf(local: number, perNode: number, visible = process.env.CUDA_VISIBLE_DEVICES): string {
  if (visible === undefined || visible.trim() === "") return String(local);
  const ids = visible.split(",").map((x) => x.trim()).filter((x) => x !== "");
  if (ids.length < perNode) {
    throw new ConfigError(`--gpus ${perNode}: CUDA_VISIBLE_DEVICES=${visible} makes only ${ids.length} GPU(s) visible`);
  }
  return ids[local];
}

/** Files and folders a run writes into its output_dir (what --overwrite removes; anything else there is left alone). */
const RUN_ENTRIES = ["checkpoints", "metrics.jsonl", "logs", "failure.json", "classification_metrics.json", "timeline", "timeline.json", "vocab.txt", RUN_CONFIG_FILE];

/** What shows that runDir holds a run that trained (checkpoints or metrics), or undefined. */
export function previousRunIn(runDir: string): string | undefined {
  const ckpts = path.join(runDir, "checkpoints");
  const steps = fs.existsSync(ckpts) ? fs.readdirSync(ckpts).filter((n) => n.startsWith("step-")) : [];
  if (steps.length > 0) return `${steps.length} checkpoint(s), newest ${steps.sort().at(-1)}`;
  const metrics = path.join(runDir, "metrics.jsonl");
  if (fs.existsSync(metrics) && fs.statSync(metrics).size > 0) return "metrics.jsonl from an earlier run";
  return undefined;
}

/**
 * Throws a ConfigError naming output_dir unless a file can be created in `runDir` and in its logs/ folder (a
 * read-only or full file system, or a directory without write permission), so that launch refuses at once.
 */
export function checkWritable(runDir: string, source: string): void {
  for (const dir of [runDir, path.join(runDir, "logs")]) {
    const probe = path.join(dir, `.ringtrain-write-test-${process.pid}`);
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.closeSync(fs.openSync(probe, "wx"));
      fs.rmSync(probe, { force: true });
    } catch (e) {
      throw new ConfigError(`${source}: field output_dir: cannot write in ${dir}: ${(e as Error).message}`);
    }
  }
}

/** Moves RUN_DIR/failure.json to RUN_DIR/logs/failure-K.json (the next free K); returns the new path, if one was moved. */
export function archiveFailureRecord(runDir: string): string | undefined {
  const record = path.join(runDir, "failure.json");
  if (!fs.existsSync(record)) return undefined;
  const logs = path.join(runDir, "logs");
  fs.mkdirSync(logs, { recursive: true });
  let k = 1;
  while (fs.existsSync(path.join(logs, `failure-${k}.json`))) k++;
  const target = path.join(logs, `failure-${k}.json`);
  fs.renameSync(record, target);
  return target;
}

function clearRun(runDir: string, keepLogs: boolean): void {
  for (const name of RUN_ENTRIES) if (!(keepLogs && name === "logs")) fs.rmSync(path.join(runDir, name), { recursive: true, force: true });
}

/** A resumed run must train the model its checkpoint holds: overrides may change the schedule, not the model. */
function checkResumeKeepsModel(saved: RunConfig, wanted: RunConfig, runDir: string): void {
  // dropout rates are training settings (a second stage may change them); everything else fixes the model
  const shape = (c: RunConfig): Record<string, unknown> => {
    const { hidden_dropout: _h, attention_dropout: _a, ...rest } = c.model ?? {};
    // a fine-tune's model is its base, its method and the method's settings; the head's dropout is a training setting
    const f = c.finetune;
    const finetune = f === undefined ? undefined : { base_model: f.base_model, method: f.method, init: f.init, pooling: f.pooling, settings: methodSettings(peftSettingsOf(f, 2 /* classes: no part of the method's settings */)) };
    return { task: c.task, objective: c.objective, model: rest, tokenizer: c.tokenizer, finetune };
  };
  const before = shape(saved);
  const after = shape(wanted);
  for (const key of Object.keys(before)) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) {
      throw new ConfigError(`--resume ${runDir}: field ${key} differs from the run's ${RUN_CONFIG_FILE} (${JSON.stringify(before[key])} -> ${JSON.stringify(after[key])}); a resumed run keeps its model: start a new run (model.init_from: ${runDir}) instead`);
    }
  }
}

/** How many ranks the last step in RUN_DIR/metrics.jsonl had, if known. */
function lastWorldSize(runDir: string): number | undefined {
  try {
    const last = fs.readFileSync(path.join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").at(-1);
    const perRank = last ? (JSON.parse(last) as { per_rank?: unknown[] }).per_rank : undefined;
    return Array.isArray(perRank) && perRank.length > 0 ? perRank.length : undefined;
  } catch {
    return undefined;
  }
}

/** The coordinator's checks of the prepared data (e.g. an empty training split) are bad input too. */
function constructOrInputError<T>(source: string, make: () => T): T {
  try {
    return make();
  } catch (e) {
    throw asInputError(e, `${source}: data: `);
  }
}

/**
 * A dry run of a fine-tune reads and encodes its labelled data as the run would (seconds: no tokenizer to train),
 * so a misspelt label_field or a validation file with other labels fails here, not after the user started the job.
 */
async function dryRunClassificationData(cfg: RunConfig, source: string, quiet: boolean): Promise<{ labels: string[]; train: number; validation: number; test: number }> {
  const job = await prepareJobData(cfg, undefined, (line) => {
    if (!quiet) process.stderr.write(`launch: ${line}\n`);
  }).catch((e: unknown) => {
    throw asInputError(e, `${source}: data: `);
  });
  return { labels: job.labels ?? [], train: job.numTrain, validation: job.numValidation, test: job.numTest ?? 0 };
}

/** The command that starts a run over again in its run directory, from the resolved config saved there. */
function restartCommand(runDir: string): string {
  return `launch ${path.join(runDir, RUN_CONFIG_FILE)} --overwrite`;
}

/** After Ctrl-C: how to continue, or that nothing can be resumed. */
async function resumeHint(cfg: RunConfig, runDir: string, world: World): Promise<string> {
  const { entry } = await newestResumePoint(runDir, snapshotRoot(cfg)).catch(() => ({ entry: undefined }));
  if (entry === undefined) return `no checkpoint was written yet (training.checkpoint_interval_steps ${cfg.training.checkpoint_interval_steps}): nothing to resume; start it over in place: ${restartCommand(runDir)}`;
  const flag = world.useGpus ? `--gpus ${world.workersPerNode}` : `--workers ${world.workersPerNode}`;
  // several nodes resume together, each with its own node rank
  const nodes = world.nodes > 1 ? ` --nodes ${world.nodes} --node-rank ${world.nodeRank} --coordinator ${world.coordinatorAddress}` : "";
  const where = world.nodes > 1 ? " (on every node, each with its --node-rank)" : "";
  return `the last complete checkpoint (step ${entry.step}, ${entry.dir}) is intact; resume with${where}: launch --resume ${runDir} ${flag}${nodes}`;
}

/** Where the ranks write their timelines (training.timeline); a fresh run first drops this node's stale rank files. */
function prepareTimelineDir(runDir: string, world: World, resumed: boolean): string {
  const dir = path.join(runDir, "timeline");
  fs.mkdirSync(dir, { recursive: true });
  if (!resumed) {
    // a resumed (or restarted) run continues its ranks' files; a fresh one starts them anew
    for (let local = 0; local < world.workersPerNode; local++) {
      fs.rmSync(path.join(dir, timelineFileName(world.nodeRank * world.workersPerNode + local)), { force: true });
    }
    if (world.nodeRank === 0) fs.rmSync(path.join(runDir, "timeline.json"), { force: true });
  }
  return dir;
}

/** Tells a worker where to write its timeline, or (no timeline) that it writes none. */
function timelineEnv(env: NodeJS.ProcessEnv, dir: string | undefined): NodeJS.ProcessEnv {
  if (dir === undefined) delete env.RINGTRAIN_TIMELINE_DIR;
  else env.RINGTRAIN_TIMELINE_DIR = dir;
  return env;
}

/** Merges the rank files into RUN_DIR/timeline.json (node 0, after the workers stopped, also after a failure). */
function writeMergedTimeline(runDir: string, dir: string, log: (line: string) => void, alert: (line: string) => void): void {
  const out = path.join(runDir, "timeline.json");
  try {
    const merged = mergeTimelines(dir, out);
    log(`timeline: ${out} (${merged.ranks.length} rank(s), ${merged.events} events); open it in https://ui.perfetto.dev or chrome://tracing`);
    for (const s of merged.skipped) alert(`timeline: skipped ${s}`);
  } catch (err) {
    alert(`timeline: cannot merge ${dir} into ${out}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
