import type { CoordinatorClient } from "./coordinator-client";
import type { WorkerEnv } from "./env";
import type { CommSettings } from "./train-loop";

/**
 * Sends a heartbeat every heartbeat_interval_ms with the step and phase the worker is in. If the coordinator
 * cannot be reached for heartbeat_timeout_ms, or says the job has ended while this worker is stuck, `onLost`
 * is called with a message naming the coordinator (the worker then exits instead of hanging).
 */
/** What this worker is doing now (step and phase), for heartbeats and failure messages. */
export const workerStatus = { step: 0, phase: "start" };

export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private step = 0;
  private phase = "join";
  private lastOkMs = Date.now();
  private lastTickMs = Date.now();
  private inFlight = false;
  private stoppedSinceMs: number | undefined;

  constructor(
    private readonly client: CoordinatorClient,
    private readonly env: WorkerEnv,
    private readonly comm: CommSettings,
    private readonly onLost: (message: string) => void,
  ) {}

  /** Starts beating. */
  start(): void {
    this.lastOkMs = Date.now();
    this.lastTickMs = Date.now();
    this.timer = setInterval(() => this.beat(), this.comm.heartbeat_interval_ms);
    this.timer.unref();
  }

  /** Records what the worker is doing (sent with the next beat). */
  set(step: number, phase: string): void {
    this.step = step;
    this.phase = phase;
    workerStatus.step = step;
    workerStatus.phase = phase;
  }

  /** Stops beating. */
  stop(): void {
    clearInterval(this.timer);
  }

  private beat(): void {
    const now = Date.now();
    // If this process was blocked (a long synchronous step), the silence was ours, not the coordinator's:
    // give the coordinator a fresh chance to answer before judging it.
    if (now - this.lastTickMs > 2 * this.comm.heartbeat_interval_ms) this.lastOkMs = Math.max(this.lastOkMs, now - this.comm.heartbeat_interval_ms);
    this.lastTickMs = now;
    if (now - this.lastOkMs > this.comm.heartbeat_timeout_ms) {
      this.stop();
      this.onLost(`coordinator ${this.client.address} unreachable for ${now - this.lastOkMs} ms (limit ${this.comm.heartbeat_timeout_ms} ms) at step ${this.step}, phase ${this.phase}; stopping rank ${this.env.rank}`);
      return;
    }
    if (this.inFlight) return;
    this.inFlight = true;
    this.client
      .heartbeat({ job_id: this.env.jobId, rank: this.env.rank, step: this.step, phase: this.phase }, this.comm.heartbeat_interval_ms * 2)
      .then((res) => {
        this.lastOkMs = Date.now();
        if (!res.running) {
          // The job ended; the loop normally learns it from its next plan. If it is stuck (e.g. in a collective
          // with a dead peer), give it one collective deadline before leaving.
          this.stoppedSinceMs ??= Date.now();
          if (Date.now() - this.stoppedSinceMs > this.comm.timeout_ms) {
            this.stop();
            this.onLost(`job ended (${res.stop_reason}) but rank ${this.env.rank} is still in step ${this.step}, phase ${this.phase}; stopping`);
          }
        }
      })
      .catch(() => undefined) // counted by lastOkMs
      .finally(() => (this.inFlight = false));
  }
}
