import * as grpc from "@grpc/grpc-js";
import {
  loadCoordinatorProto,
  TOKEN_METADATA_KEY,
  type FailureReport,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type JoinRequest,
  type JoinResponse,
  type StepPlan,
  type StepReport,
} from "../proto/coordinator";

/** Raised when the coordinator cannot be reached or refuses a call; names the coordinator's address. */
export class CoordinatorUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CoordinatorUnreachableError";
  }
}

type Method = "Join" | "NextStep" | "Heartbeat" | "ReportFailure";

/**
 * This worker does not belong in the job as the coordinator runs it (wrong token or job id, a rank out of range,
 * another world size or other communication settings): a configuration mismatch between nodes, which no retry
 * cures. `joined`: the coordinator already counts this rank (it should be told why it leaves).
 */
export class JobMismatchError extends Error {
  constructor(message: string, readonly joined: boolean) {
    super(message);
    this.name = "JobMismatchError";
  }
}

/** A typed, promise-based client of proto/coordinator.proto that attaches the job token to every call. */
export class CoordinatorClient {
  private readonly client: grpc.Client;

  /** `credentials`: mutual TLS when the job uses it (communication.tls), else plaintext. */
  constructor(readonly address: string, private readonly token: string, credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure()) {
    const { Client } = loadCoordinatorProto();
    this.client = new Client(address, credentials, {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.keepalive_time_ms": 10_000,
    });
  }

  /** Joins the job; waits (up to timeoutMs) for the whole world. */
  join(req: JoinRequest, timeoutMs: number): Promise<JoinResponse> {
    return this.call("Join", req, timeoutMs);
  }

  /** Reports a finished step and gets the next plan. */
  nextStep(report: StepReport, timeoutMs: number): Promise<StepPlan> {
    return this.call("NextStep", report, timeoutMs);
  }

  /** One heartbeat. */
  heartbeat(req: HeartbeatRequest, timeoutMs: number): Promise<HeartbeatResponse> {
    return this.call("Heartbeat", req, timeoutMs);
  }

  /** Tells the coordinator this worker failed (best effort). */
  reportFailure(req: FailureReport, timeoutMs: number): Promise<void> {
    return this.call<FailureReport, Record<string, never>>("ReportFailure", req, timeoutMs).then(() => undefined);
  }

  /** Closes the channel. */
  close(): void {
    this.client.close();
  }

  private call<Req, Res>(method: Method, req: Req, timeoutMs: number): Promise<Res> {
    const metadata = new grpc.Metadata();
    metadata.set(TOKEN_METADATA_KEY, this.token);
    const fn = (this.client as unknown as Record<Method, (r: Req, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: Res) => void) => void>)[method];
    return new Promise<Res>((resolve, reject) => {
      fn.call(this.client, req, metadata, { deadline: Date.now() + timeoutMs }, (err, value) => {
        if (err) {
          const unreachable = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED;
          // grpc-js ends some details with an empty "Resolution note: "; drop it
          const detail = (err.details || err.message).replace(/\s*Resolution note:\s*$/, "");
          const msg = `coordinator ${this.address}: ${method} failed: ${detail}`;
          reject(unreachable ? new CoordinatorUnreachableError(msg) : Object.assign(new Error(msg), { code: err.code }));
        } else resolve(value as Res);
      });
    });
  }
}
