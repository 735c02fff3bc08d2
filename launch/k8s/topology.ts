import * as path from "node:path";
import type { K8sOptions } from "./options";

/** Name of the JobSet's single replicated job (its pods are "<name>-node-0-<index>"). */
export const REPLICATED_JOB = "node";

/** Stable names of one generated job: what each pod is called on the pod network. */
export interface Topology {
  /** The Job's name (plain Job), or the JobSet's. */
  name: string;
  /** The headless Service (plain Job) / JobSet network subdomain. */
  service: string;
  configMap: string;
  /** Secret holding the job token under key `token`. */
  secret: string;
  /** File name of the config inside the ConfigMap (and under /config). */
  configFile: string;
  /** Hostname of pod `index` (Indexed Job: "<job>-<index>"). */
  hostname(index: number): string;
  /** Name other pods resolve for pod `index`: "<hostname>.<service>" (the namespace is in every pod's DNS search path). */
  podDnsName(index: number): string;
  /** HOST:PORT of the coordinator (pod 0). */
  coordinator: string;
}

/** Derives the names of a generated job from its options. */
export function topologyOf(o: K8sOptions): Topology {
  const prefix = o.jobset ? `${o.name}-${REPLICATED_JOB}-0` : o.name;
  const hostname = (index: number): string => `${prefix}-${index}`;
  const podDnsName = (index: number): string => `${hostname(index)}.${o.name}`;
  return {
    name: o.name,
    service: o.name,
    configMap: `${o.name}-config`,
    secret: `${o.name}-token`,
    configFile: /^[-._a-zA-Z0-9]+$/.test(path.basename(o.configPath)) ? path.basename(o.configPath) : "config.yaml",
    hostname,
    podDnsName,
    coordinator: `${podDnsName(0)}:${o.port}`,
  };
}
