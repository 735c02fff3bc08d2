/**
 * Worker process entry point. Started by `launch` (or by a scheduler setting the same environment, torchrun
 * style): reads its place in the job from the environment, trains, and exits with a code launch understands.
 */
import { readWorkerEnv } from "./env";
import { runWorker, type CommSettings } from "./train-loop";
import { CollectiveError, responsibleOf } from "./collective/collective-error";
import { CoordinatorClient, CoordinatorUnreachableError, JobMismatchError } from "./coordinator-client";
import { MISMATCH_PHASE } from "../proto/coordinator";
import { workerStatus } from "./heartbeat";
import { loadMutualTls } from "../shared/security/tls";
import { EXIT_CONFIG, EXIT_COORDINATOR_LOST, EXIT_OK, EXIT_WORKER_FAILURE } from "../shared/exit-codes";
import { communicationSchema } from "../shared/config/schema";

async function main(): Promise<number> {
  const env = readWorkerEnv();
  const comm: CommSettings = communicationSchema.parse(JSON.parse(process.env.RINGTRAIN_COMM_JSON ?? "{}"));
  // set by launch on nodes other than 0: the config this node was started with, checked against the job's
  const nodeConfig: unknown = process.env.RINGTRAIN_NODE_CONFIG_JSON ? JSON.parse(process.env.RINGTRAIN_NODE_CONFIG_JSON) : undefined;
  const log = (line: string): void => {
    process.stdout.write(`${new Date().toISOString()} [rank ${env.rank}] ${line}\n`);
  };
  // Errors go to the rank's log file (stdout, written directly) and to stderr (echoed by launch, which may be gone).
  const fail = (message: string): void => {
    log(message);
    process.stderr.write(`${message}\n`);
  };
  process.stderr.on("error", () => undefined); // launch died: the log file still has everything
  const lost = (message: string): void => {
    fail(message);
    process.exit(EXIT_COORDINATOR_LOST);
  };
  try {
    const reason = await runWorker(env, comm, log, lost, nodeConfig);
    log(`stopping: ${reason}`);
    return reason === "done" ? EXIT_OK : EXIT_WORKER_FAILURE;
  } catch (err) {
    // A collective counts steps from 0 (the optimizer's completed steps), the plan and metrics.jsonl from 1: name
    // only the training step, so a message never carries two numbers for one step.
    const message = err instanceof CollectiveError
      ? `all-reduce failed${err.phase === "idle" ? " between collectives" : ` in phase ${err.phase}`}: ${responsibleOf(err)}: ${err.detail}`
      : err instanceof Error ? err.message : String(err);
    fail(`rank ${env.rank} (${env.hostname}, pid ${process.pid}) failed at step ${workerStatus.step} (${workerStatus.phase}): ${message}`);
    if (err instanceof CoordinatorUnreachableError) return EXIT_COORDINATOR_LOST;
    // Refused before joining: the coordinator never counted this rank, and a retry cannot help.
    if (err instanceof JobMismatchError && !err.joined) return EXIT_CONFIG;
    // Tell the coordinator at once, so every rank stops now instead of at its next deadline.
    const client = new CoordinatorClient(env.coordinatorAddress, env.token, loadMutualTls(comm.tls)?.channel());
    const phase = err instanceof JobMismatchError ? MISMATCH_PHASE : err instanceof CollectiveError ? String(err.phase) : workerStatus.phase;
    const step = workerStatus.step;
    const reportError = await client
      .reportFailure({ job_id: env.jobId, rank: env.rank, step: Math.max(0, step), phase, message }, 2000)
      .then(() => undefined, (e: unknown) => e);
    client.close();
    if (reportError instanceof CoordinatorUnreachableError) {
      // A peer that lost the coordinator first stops and closes its ring streams: the failure above is then only
      // the symptom, and the coordinator is the cause. Say so, and exit as a rank that lost its coordinator.
      fail(`${reportError.message}; the coordinator is unreachable too, so the failure above is probably a consequence of losing it`);
      return EXIT_COORDINATOR_LOST;
    }
    return err instanceof JobMismatchError ? EXIT_CONFIG : EXIT_WORKER_FAILURE;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`worker: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(EXIT_WORKER_FAILURE);
  },
);
