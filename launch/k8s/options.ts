import * as path from "node:path";
import { ConfigError } from "../../shared/config/load";
import { checkQuantity } from "./quantity";

/** Where the run directory (checkpoints, logs, metrics) lives; it must outlive pods. */
export type RunStorage =
  | { kind: "pvc"; claimName: string }
  | { kind: "hostPath"; path: string }
  /** Nothing given: an emptyDir, lost with the pod (the generated YAML warns). */
  | { kind: "ephemeral" };

/** Everything `launch k8s` needs to build the manifests (already validated). */
export interface K8sOptions {
  /** Local path of the run config; its content goes into a ConfigMap. */
  configPath: string;
  /** Text of the run config, as read. */
  configText: string;
  /** Job (and Service, ConfigMap prefix) name: a DNS-1123 label. */
  name: string;
  namespace: string;
  image: string;
  nodes: number;
  /** Worker processes per pod. */
  workersPerNode: number;
  /** One GPU per worker (`--gpus`, nvidia.com/gpu limit) or CPU workers (`--workers`). */
  gpus: boolean;
  /** Coordinator port on pod 0. */
  port: number;
  /** First ring peer port; local rank r listens on peerPortBase + r. */
  peerPortBase: number;
  storage: RunStorage;
  jobset: boolean;
  /** Whole-job restarts: JobSet failurePolicy.maxRestarts, or (plain Job) backoffLimit = restarts x nodes. */
  restarts: number;
  /** Size limit of the in-memory /dev/shm. */
  shmSize: string;
  /** Container resources: CPU request (cores) and memory request = limit, Kubernetes quantities. */
  resources: { cpu: string; memory: string };
  /** Job spec.activeDeadlineSeconds (JobSet: of each attempt's Job): Kubernetes ends a job running longer. */
  activeDeadlineSeconds?: number;
  /** Secret with ca.crt, tls.crt and tls.key for communication.tls; pods then address each other by DNS name. */
  tlsSecret?: string;
  /** The cluster's DNS domain, in the pods' fully qualified names (used with TLS). */
  clusterDomain: string;
}

/** Where the pieces are mounted inside the container. */
export const MOUNTS = { config: "/config", runs: "/runs", shm: "/dev/shm" } as const;
/** The application directory of the images (Dockerfile WORKDIR). */
export const APP_DIR = "/app";
/** Name of the training container (podFailurePolicy rules refer to it). */
export const CONTAINER_NAME = "launch";
/** Default coordinator port (torchrun's MASTER_PORT default, also launch/world.ts's). */
export const DEFAULT_PORT = 29400;
/** Default first peer port: just above the coordinator's. */
export const DEFAULT_PEER_PORT_BASE = 29500;
/** Default memory (request and limit) per worker process. */
export const DEFAULT_MEMORY_GI_PER_WORKER = 4;
/** Kubernetes' default cluster DNS domain. */
export const DEFAULT_CLUSTER_DOMAIN = "cluster.local";

/** Kubernetes names: DNS-1123 labels. Pod hostnames add "-<index>" (JobSet: "-node-<j>-<index>"), so keep room. */
const MAX_NAME = 40;

/** Turns a run name like "pretrain_brown.v2" into a DNS-1123 label ("pretrain-brown-v2"). */
export function dnsLabelFrom(text: string): string {
  const label = text.toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, MAX_NAME).replace(/-+$/, "");
  return label === "" ? "ringtrain" : label;
}

/** Throws ConfigError unless `name` is a DNS-1123 label short enough for the pod hostnames derived from it. */
export function checkDnsLabel(what: string, name: string): void {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > MAX_NAME) {
    throw new ConfigError(`${what} '${name}' must be a DNS-1123 label (lower-case letters, digits, '-') of at most ${MAX_NAME} characters`);
  }
}

/** Throws ConfigError unless `name` is a DNS-1123 subdomain (dot-separated labels, at most 253 characters). */
export function checkDnsSubdomain(what: string, name: string): void {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) || name.length > 253) {
    throw new ConfigError(`${what} '${name}' must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')`);
  }
}

/** Raw flags of `launch k8s`, as yargs gives them. */
export interface K8sFlags {
  config: string;
  configText: string;
  /** The config's `name`, used when --name is not given. */
  configName: string;
  nodes: number;
  gpusPerNode?: number;
  workersPerNode?: number;
  image: string;
  namespace?: string;
  jobset?: boolean;
  name?: string;
  port?: number;
  peerPortBase?: number;
  pvc?: string;
  hostPath?: string;
  restarts?: number;
  shmSize?: string;
  /** CPU cores requested per pod (default: one per worker). */
  cpuPerNode?: string;
  /** Memory request and limit per pod (default: DEFAULT_MEMORY_GI_PER_WORKER Gi per worker). */
  memoryPerNode?: string;
  /** Seconds after which Kubernetes ends the job (none by default). */
  activeDeadlineSeconds?: number;
  /** Secret holding the communication.tls files (keys ca.crt, tls.crt, tls.key). */
  tlsSecret?: string;
  /** Cluster DNS domain (default cluster.local). */
  clusterDomain?: string;
}

/** Validates the flags of `launch k8s` (ConfigError on anything a scheduler would reject or launch would refuse). */
export function resolveK8sOptions(f: K8sFlags): K8sOptions {
  const posInt = (flag: string, v: number | undefined, min: number, max: number): void => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) throw new ConfigError(`--${flag} must be an integer in ${min}..${max} (got ${v})`);
  };
  posInt("nodes", f.nodes, 1, 10_000);
  posInt("gpus-per-node", f.gpusPerNode, 1, 64);
  posInt("workers-per-node", f.workersPerNode, 1, 1024);
  posInt("port", f.port, 1, 65535);
  posInt("peer-port-base", f.peerPortBase, 1, 65535);
  posInt("restarts", f.restarts, 0, 1000);
  posInt("active-deadline-seconds", f.activeDeadlineSeconds, 1, 2 ** 31 - 1);
  if ((f.gpusPerNode === undefined) === (f.workersPerNode === undefined)) {
    throw new ConfigError("give exactly one of --gpus-per-node G (GPU image) or --workers-per-node W (CPU image)");
  }
  if (f.pvc !== undefined && f.hostPath !== undefined) throw new ConfigError("give either --pvc CLAIM or --host-path PATH, not both");
  if (f.hostPath !== undefined && !path.posix.isAbsolute(f.hostPath)) throw new ConfigError(`--host-path '${f.hostPath}' must be an absolute path on the nodes`);
  if (f.image.trim() === "" || /\s/.test(f.image)) throw new ConfigError(`--image '${f.image}' is not an image reference`);
  const name = f.name ?? dnsLabelFrom(f.configName);
  checkDnsLabel("--name", name);
  const namespace = f.namespace ?? "default";
  checkDnsLabel("--namespace", namespace);
  const workersPerNode = f.gpusPerNode ?? f.workersPerNode!;
  const port = f.port ?? DEFAULT_PORT;
  const peerPortBase = f.peerPortBase ?? DEFAULT_PEER_PORT_BASE;
  if (peerPortBase + workersPerNode - 1 > 65535) throw new ConfigError(`--peer-port-base ${peerPortBase} + ${workersPerNode} workers exceeds port 65535`);
  if (port >= peerPortBase && port < peerPortBase + workersPerNode) {
    throw new ConfigError(`--port ${port} collides with the peer ports ${peerPortBase}..${peerPortBase + workersPerNode - 1}`);
  }
  const shmSize = checkQuantity("--shm-size", f.shmSize ?? "8Gi", "memory");
  const resources = {
    cpu: checkQuantity("--cpu-per-node", f.cpuPerNode ?? String(workersPerNode), "cpu"),
    memory: checkQuantity("--memory-per-node", f.memoryPerNode ?? `${DEFAULT_MEMORY_GI_PER_WORKER * workersPerNode}Gi`, "memory"),
  };
  if (f.tlsSecret !== undefined) checkDnsSubdomain("--tls-secret", f.tlsSecret);
  const clusterDomain = f.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN;
  checkDnsSubdomain("--cluster-domain", clusterDomain);
  const storage: RunStorage = f.pvc !== undefined ? { kind: "pvc", claimName: f.pvc } : f.hostPath !== undefined ? { kind: "hostPath", path: f.hostPath } : { kind: "ephemeral" };
  if (storage.kind === "pvc") checkDnsLabel("--pvc", storage.claimName);
  return {
    configPath: f.config, configText: f.configText, name, namespace, image: f.image, nodes: f.nodes, workersPerNode,
    gpus: f.gpusPerNode !== undefined, port, peerPortBase, storage, jobset: f.jobset ?? false, restarts: f.restarts ?? 3, shmSize,
    resources, activeDeadlineSeconds: f.activeDeadlineSeconds, tlsSecret: f.tlsSecret, clusterDomain,
  };
}
