import * as fs from "node:fs";
import * as os from "node:os";

/** What a worker process learns from its environment (set by launch, or by a scheduler, torchrun-style). */
export interface WorkerEnv {
  coordinatorAddress: string;
  jobId: string;
  token: string;
  nodeRank: number;
  localRank: number;
  /** Workers per node. */
  localWorldSize: number;
  worldSize: number;
  /** Global rank: nodeRank * localWorldSize + localRank. */
  rank: number;
  /** Address the ring peer server binds to (127.0.0.1 unless multi-node). */
  bindHost: string;
  /** Host other ranks use to reach this worker's peer server. */
  advertiseHost: string;
  /** Port of the ring peer server: RINGTRAIN_PEER_PORT_BASE + localRank (fixed ports for firewalls), or 0 = any free port. */
  peerPort: number;
  hostname: string;
  /** Folder of the per-rank timeline files (RINGTRAIN_TIMELINE_DIR, set by launch when training.timeline is on), else undefined. */
  timelineDir?: string;
}

/**
 * Reads COORDINATOR_ADDR, RINGTRAIN_JOB_ID, RINGTRAIN_TOKEN (or RINGTRAIN_TOKEN_FILE), NODE_RANK, LOCAL_RANK,
 * LOCAL_WORLD_SIZE, WORLD_SIZE, RANK (checked), RINGTRAIN_BIND_HOST, RINGTRAIN_ADVERTISE_HOST, RINGTRAIN_PEER_PORT_BASE,
 * RINGTRAIN_TIMELINE_DIR.
 */
export function readWorkerEnv(env: NodeJS.ProcessEnv = process.env): WorkerEnv {
  const need = (name: string): string => {
    const v = env[name];
    if (v === undefined || v === "") throw new Error(`worker: environment variable ${name} is not set (workers are started by launch, or by a scheduler that sets it)`);
    return v;
  };
  const int = (name: string, fallback?: number): number => {
    const v = env[name];
    if ((v === undefined || v === "") && fallback !== undefined) return fallback;
    const s = need(name);
    if (!/^\d+$/.test(s)) throw new Error(`worker: environment variable ${name}='${s}' is not a non-negative integer`);
    return Number(s);
  };
  let token = env.RINGTRAIN_TOKEN ?? "";
  if (token === "" && env.RINGTRAIN_TOKEN_FILE) token = fs.readFileSync(env.RINGTRAIN_TOKEN_FILE, "utf8").trim();
  if (token === "") throw new Error("worker: no job token: set RINGTRAIN_TOKEN or RINGTRAIN_TOKEN_FILE");
  const nodeRank = int("NODE_RANK", 0);
  const localRank = int("LOCAL_RANK");
  const localWorldSize = int("LOCAL_WORLD_SIZE");
  const worldSize = int("WORLD_SIZE");
  const rank = nodeRank * localWorldSize + localRank;
  if (env.RANK !== undefined && env.RANK !== "" && Number(env.RANK) !== rank) {
    throw new Error(`worker: RANK=${env.RANK} disagrees with NODE_RANK ${nodeRank} * LOCAL_WORLD_SIZE ${localWorldSize} + LOCAL_RANK ${localRank} = ${rank}`);
  }
  if (localRank >= localWorldSize) throw new Error(`worker: LOCAL_RANK ${localRank} is out of range for LOCAL_WORLD_SIZE ${localWorldSize}`);
  if (rank >= worldSize) throw new Error(`worker: rank ${rank} is out of range for WORLD_SIZE ${worldSize}`);
  const bindHost = env.RINGTRAIN_BIND_HOST || "127.0.0.1";
  const peerPortBase = int("RINGTRAIN_PEER_PORT_BASE", 0);
  if (peerPortBase !== 0 && (peerPortBase < 1 || peerPortBase + localWorldSize - 1 > 65535)) {
    throw new Error(`worker: RINGTRAIN_PEER_PORT_BASE=${peerPortBase} + ${localWorldSize} local workers is not a valid port range`);
  }
  return {
    coordinatorAddress: need("COORDINATOR_ADDR"),
    jobId: need("RINGTRAIN_JOB_ID"),
    token,
    nodeRank,
    localRank,
    localWorldSize,
    worldSize,
    rank,
    bindHost,
    advertiseHost: env.RINGTRAIN_ADVERTISE_HOST || (bindHost === "0.0.0.0" || bindHost === "::" ? os.hostname() : bindHost).replace(/^\[(.*)\]$/, "$1"),
    peerPort: peerPortBase === 0 ? 0 : peerPortBase + localRank,
    hostname: os.hostname(),
    timelineDir: env.RINGTRAIN_TIMELINE_DIR || undefined,
  };
}
