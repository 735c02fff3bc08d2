import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { protoPath } from "../shared/paths";

/** TypeScript view of proto/coordinator.proto (field names as in the .proto; keepCase). */
export interface JoinRequest {
  job_id: string;
  node_rank: number;
  local_rank: number;
  hostname: string;
  peer_address: string;
  pid: number;
}

export interface JoinResponse {
  rank: number;
  world_size: number;
  ring_peer_addresses: string[];
  vocab_tokens: string[];
  config_json: string;
  start_step: number;
  resume_checkpoint_dir: string;
  run_dir: string;
}

/** One rank's share of an evaluation (see EvalResult in coordinator.proto for every field). */
export interface EvalResult {
  loss_sum: number;
  target_count: number;
  correct_count: number;
  sequences: number;
  /** Classification: number of classes K; 0 for MLM. */
  num_classes: number;
  /** Classification: K x K confusion counts, row-major (row = true, column = predicted); empty for MLM. */
  confusion: number[];
}

export interface StepReport {
  job_id: string;
  rank: number;
  completed_step: number;
  loss_sum: number;
  target_count: number;
  tokens: number;
  step_ms: number;
  data_wait_ms: number;
  compute_ms: number;
  communication_ms: number;
  optimizer_ms: number;
  grad_norm: number;
  eval: EvalResult | null;
  checkpoint_dir: string;
  param_checksum: string;
  model_flops: number;
  peak_flops_per_s: number;
  /** Test-split evaluation (classification, last step). */
  test_eval: EvalResult | null;
  /** Float32 bytes all-reduced in the step (trained parameters' gradients + counters). */
  allreduce_bytes: number;
  /** Wall time of the all-reduce from start to result, overlapped part included. */
  allreduce_wall_ms: number;
  /** Sequences this rank trained in the step. */
  sequences: number;
  /** mlm+nsp: sum of the per-sequence NSP losses and the number of NSP-labelled sequences (0 otherwise). */
  nsp_loss_sum: number;
  nsp_target_count: number;
}

export interface StepPlan {
  step: number;
  stop: boolean;
  stop_reason: string;
  sequence_indices: number[];
  sequence_epochs: number[];
  micro_batch_size: number;
  accumulation_steps: number;
  learning_rate: number;
  eval_sequence_indices: number[];
  checkpoint_dir: string;
  max_steps: number;
  report_param_checksum: boolean;
  /** Test-split indices to evaluate after the step (classification, last step). */
  test_sequence_indices: number[];
  /** Position of this rank's first sequence within the global batch. */
  sequence_offset: number;
  /** batch.balance adaptive: sequences per rank at step split_for_step (empty otherwise). */
  split_for_step: number;
  split_sequences_per_rank: number[];
}

export interface HeartbeatRequest {
  job_id: string;
  rank: number;
  step: number;
  phase: string;
}

export interface HeartbeatResponse {
  running: boolean;
  stop_reason: string;
}

export interface FailureReport {
  job_id: string;
  rank: number;
  step: number;
  phase: string;
  message: string;
}

/** Metadata key carrying the job token on every coordinator and peer call. */
export const TOKEN_METADATA_KEY = "x-ringtrain-token";

/** FailureReport.phase of a report sent by a node's launch for a worker process that died without reporting. */
export const EXITED_PHASE = "exited";
/** FailureReport.phase of a worker whose settings do not match the job (another world size, communication settings). */
export const MISMATCH_PHASE = "config";

/** The service definition and a client constructor for proto/coordinator.proto. */
export interface CoordinatorProto {
  service: grpc.ServiceDefinition;
  Client: grpc.ServiceClientConstructor;
}

let cached: CoordinatorProto | undefined;

/** Loads proto/coordinator.proto once (proto-loader; enums/longs as numbers, defaults filled). */
export function loadCoordinatorProto(): CoordinatorProto {
  if (cached) return cached;
  const def = protoLoader.loadSync(protoPath("coordinator.proto"), {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
    oneofs: false,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    ringtrain: { coordinator: { Coordinator: grpc.ServiceClientConstructor } };
  };
  const Client = pkg.ringtrain.coordinator.Coordinator;
  cached = { service: Client.service, Client };
  return cached;
}
