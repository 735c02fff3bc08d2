/** Where in a collective a failure was seen. */
export type CollectivePhase = "connect" | "begin" | "reduce-scatter" | "all-gather" | "finish" | "idle";

/** Fields of a CollectiveError, all plain data so the caller can log or forward them. */
export interface CollectiveErrorInfo {
  /** Rank held responsible (the neighbour that died, stalled, misbehaved or disagreed); -1 if unknown. */
  rank: number;
  /** That rank's address ("host:port"), "" if unknown. */
  address: string;
  phase: CollectivePhase | string;
  /** Training step of the collective (-1 outside a collective). */
  step: number;
  /** Rank that raised this error. */
  reportedBy: number;
  /** Short machine-readable kind: timeout, peer-lost, layout-mismatch, protocol, auth, aborted, closed, usage. */
  kind: string;
}

/** Error from a ring collective: names the responsible rank, its address, the phase and the step. */
export class CollectiveError extends Error implements CollectiveErrorInfo {
  readonly rank: number;
  readonly address: string;
  readonly phase: CollectivePhase | string;
  readonly step: number;
  readonly reportedBy: number;
  readonly kind: string;
  /** What went wrong, without the rank, phase and step of the message (e.g. "stream to us failed: ..."). */
  readonly detail: string;

  constructor(info: CollectiveErrorInfo, detail: string) {
    super(`[rank ${info.reportedBy}] collective failed in phase ${info.phase} of step ${info.step}: ${responsibleOf(info)}: ${detail}`);
    this.detail = detail;
    this.name = "CollectiveError";
    this.rank = info.rank;
    this.address = info.address;
    this.phase = info.phase;
    this.step = info.step;
    this.reportedBy = info.reportedBy;
    this.kind = info.kind;
  }
}

/** "rank R (host:port)" of the rank held responsible, or "unknown rank". */
export function responsibleOf(info: Pick<CollectiveErrorInfo, "rank" | "address">): string {
  return info.rank >= 0 ? `rank ${info.rank} (${info.address || "unknown address"})` : "unknown rank";
}
