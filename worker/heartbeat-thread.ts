/**
 * The heartbeat thread of a worker (node:worker_threads). TensorFlow.js computes synchronously on the main
 * thread, so a long micro-batch would silence heartbeats sent from there; from this thread they keep flowing,
 * carrying the step and phase the main thread last reported, and the coordinator judges progress separately.
 * A stopped process (SIGSTOP) stops this thread too, so it still looks stalled from outside.
 */
import { parentPort, workerData } from "node:worker_threads";
import { CoordinatorClient } from "./coordinator-client";
import { loadMutualTls, type TlsFiles } from "../shared/security/tls";

/** What the main thread hands the heartbeat thread. */
export interface HeartbeatThreadData {
  coordinatorAddress: string;
  token: string;
  tls?: TlsFiles;
  jobId: string;
  rank: number;
  intervalMs: number;
  timeoutMs: number;
  /** After the job ended, how long to wait for the main thread to leave by itself (a collective's deadline). */
  stopGraceMs: number;
}

/** Messages from the heartbeat thread to the main thread. */
export type HeartbeatThreadMessage = { kind: "lost"; message: string };

/** Messages from the main thread: what it is doing now. */
export type HeartbeatUpdate = { step: number; phase: string };

function run(data: HeartbeatThreadData): void {
  const port = parentPort!;
  const client = new CoordinatorClient(data.coordinatorAddress, data.token, loadMutualTls(data.tls)?.channel());
  let step = 0;
  let phase = "join";
  let lastOkMs = Date.now();
  let inFlight = false;
  let endedSinceMs: number | undefined;
  port.on("message", (u: HeartbeatUpdate) => {
    step = u.step;
    phase = u.phase;
  });
  const lost = (message: string): void => {
    clearInterval(timer);
    port.postMessage({ kind: "lost", message } satisfies HeartbeatThreadMessage);
  };
  const timer = setInterval(() => {
    const now = Date.now();
    if (now - lastOkMs > data.timeoutMs) {
      lost(`coordinator ${data.coordinatorAddress} unreachable for ${now - lastOkMs} ms (limit ${data.timeoutMs} ms) at step ${step}, phase ${phase}; stopping rank ${data.rank}`);
      return;
    }
    if (inFlight) return;
    inFlight = true;
    client
      .heartbeat({ job_id: data.jobId, rank: data.rank, step, phase }, data.intervalMs * 2)
      .then((res) => {
        lastOkMs = Date.now();
        if (res.running) return;
        // The job ended; the loop normally learns it from its next plan. If it is stuck (e.g. in a collective
        // with a dead peer), give it one collective deadline before leaving.
        endedSinceMs ??= Date.now();
        if (Date.now() - endedSinceMs > data.stopGraceMs) {
          lost(`job ended (${res.stop_reason}) but rank ${data.rank} is still in step ${step}, phase ${phase}; stopping`);
        }
      })
      .catch(() => undefined) // counted by lastOkMs
      .finally(() => (inFlight = false));
  }, data.intervalMs);
}

if (parentPort !== null) run(workerData as HeartbeatThreadData);
