import { ConfigError } from "../shared/config/load";
import { wholeFlag } from "./input-error";
import { HOST_PORT_PATTERN, joinHostPort, splitHostPort } from "../shared/net/host-port";

/** Command-line view of where this launch sits in the job (torchrun-style). */
export interface WorldArgs {
  gpus?: number;
  workers?: number;
  nodes?: number;
  nodeRank?: number;
  coordinator?: string;
}

/** The resolved world: how many nodes, workers per node, and where the coordinator lives. */
export interface World {
  nodes: number;
  nodeRank: number;
  workersPerNode: number;
  worldSize: number;
  /** host:port of the coordinator; undefined on a single node (launch picks a free loopback port). */
  coordinatorAddress?: string;
  /** Whether workers get one GPU each (CUDA_VISIBLE_DEVICES per local rank). */
  useGpus: boolean;
}

/**
 * Resolves the world from flags and torchrun-like environment variables (flags win):
 * NNODES, NODE_RANK, LOCAL_WORLD_SIZE, WORLD_SIZE, COORDINATOR_ADDR (or MASTER_ADDR + MASTER_PORT).
 */
export function resolveWorld(args: WorldArgs, env: NodeJS.ProcessEnv = process.env): World {
  const envInt = (name: string): number | undefined => {
    const v = env[name];
    if (v === undefined || v === "") return undefined;
    if (!/^\d+$/.test(v)) throw new ConfigError(`environment variable ${name}='${v}' is not a non-negative integer`);
    return Number(v);
  };
  if (args.gpus !== undefined && args.workers !== undefined) throw new ConfigError("give either --gpus or --workers, not both");
  const useGpus = args.gpus !== undefined;
  const workersPerNode = args.gpus ?? args.workers ?? envInt("LOCAL_WORLD_SIZE") ?? 1;
  const nodes = args.nodes ?? envInt("NNODES") ?? 1;
  const nodeRank = args.nodeRank ?? envInt("NODE_RANK") ?? 0;
  let coordinator = args.coordinator ?? env.COORDINATOR_ADDR;
  if (coordinator === undefined && env.MASTER_ADDR) coordinator = joinHostPort(env.MASTER_ADDR, env.MASTER_PORT ?? "29400");
  wholeFlag(useGpus ? "--gpus" : "--workers", workersPerNode, 1);
  wholeFlag("--nodes", nodes, 1);
  wholeFlag("--node-rank", nodeRank, 0);
  if (nodeRank >= nodes) throw new ConfigError(`--node-rank ${nodeRank} is out of range for --nodes ${nodes} (0..${nodes - 1})`);
  if (nodes > 1 && coordinator === undefined) {
    throw new ConfigError("multi-node runs need --coordinator HOST:PORT (or COORDINATOR_ADDR): the address of node 0's coordinator");
  }
  if (coordinator !== undefined && !HOST_PORT_PATTERN.test(coordinator)) {
    throw new ConfigError(`--coordinator '${coordinator}' is not HOST:PORT (an IPv6 address in brackets: [fd00::1]:29400)`);
  }
  const coordinatorPort = coordinator === undefined ? 1 : splitHostPort(coordinator).port;
  if (coordinatorPort < 1 || coordinatorPort > 65535) throw new ConfigError(`--coordinator '${coordinator}': port must be 1..65535`);
  const worldSize = nodes * workersPerNode;
  const envWorld = envInt("WORLD_SIZE");
  if (envWorld !== undefined && args.nodes === undefined && envWorld !== worldSize) {
    throw new ConfigError(`WORLD_SIZE=${envWorld} does not match ${nodes} node(s) x ${workersPerNode} worker(s) = ${worldSize}`);
  }
  return { nodes, nodeRank, workersPerNode, worldSize, coordinatorAddress: coordinator, useGpus };
}
