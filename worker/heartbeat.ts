import * as path from "node:path";
import { Worker } from "node:worker_threads";
import type { WorkerEnv } from "./env";
import type { CommSettings } from "./train-loop";
import type { HeartbeatThreadData, HeartbeatThreadMessage, HeartbeatUpdate } from "./heartbeat-thread";

/** What this worker is doing now (step and phase), for heartbeats and failure messages. */
export const workerStatus = { step: 0, phase: "start" };

/**
 * Heartbeats to the coordinator every heartbeat_interval_ms from a separate thread (heartbeat-thread.ts), with
 * the step and phase the loop last set. If the coordinator cannot be reached for heartbeat_timeout_ms, or the
 * job ended while this worker is stuck, `onLost` is called with a message naming the coordinator (the worker
 * then exits instead of hanging).
 */
export class Heartbeat {
  private thread: Worker | undefined;

  constructor(
    private readonly env: WorkerEnv,
    private readonly comm: CommSettings,
    private readonly onLost: (message: string) => void,
  ) {}

  /** Starts the heartbeat thread. */
  start(): void {
    const data: HeartbeatThreadData = {
      coordinatorAddress: this.env.coordinatorAddress, token: this.env.token, tls: this.comm.tls, jobId: this.env.jobId,
      rank: this.env.rank, intervalMs: this.comm.heartbeat_interval_ms, timeoutMs: this.comm.heartbeat_timeout_ms,
      stopGraceMs: this.comm.timeout_ms,
    };
    this.thread = new Worker(path.join(__dirname, "heartbeat-thread.js"), { workerData: data });
    this.thread.unref();
    this.thread.on("message", (m: HeartbeatThreadMessage) => {
      if (m.kind === "lost") this.onLost(m.message);
    });
    this.thread.on("error", (err: Error) => this.onLost(`heartbeat thread failed: ${err.message}`));
    this.set(workerStatus.step, workerStatus.phase);
  }

  /** Records what the worker is doing (sent with the next beat). */
  set(step: number, phase: string): void {
    workerStatus.step = step;
    workerStatus.phase = phase;
    this.thread?.postMessage({ step, phase } satisfies HeartbeatUpdate);
  }

  /** Stops the heartbeat thread. */
  stop(): void {
    void this.thread?.terminate();
    this.thread = undefined;
  }
}
