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
  /**
   * Hostname of pod `index` (Indexed Job: "<job>-<index>"); `index` may be a `$(VAR)` reference the kubelet
   * expands, as in the container's env.
   */
  hostname(index: number | string): string;
  /** Name other pods resolve for pod `index`: "<hostname>.<service>" (the namespace is in every pod's DNS search path). */
  podDnsName(index: number | string): string;
  /** Fully qualified name of pod `index`: "<hostname>.<service>.<namespace>.svc.<cluster domain>". */
  podFqdn(index: number | string): string;
  /** DNS name of every pod's certificate (subjectAltName) under TLS: "*.<service>.<namespace>.svc.<cluster domain>". */
  certificateWildcard: string;
  /**
   * HOST:PORT of the coordinator (pod 0): its short DNS name, or under TLS (--tls-secret) its fully qualified
   * name, which the certificates name.
   */
  coordinator: string;
}

/** Derives the names of a generated job from its options. */
export function topologyOf(o: K8sOptions): Topology {
  const prefix = o.jobset ? `${o.name}-${REPLICATED_JOB}-0` : o.name;
  const hostname = (index: number | string): string => `${prefix}-${index}`;
  const podDnsName = (index: number | string): string => `${hostname(index)}.${o.name}`;
  const domain = `${o.name}.${o.namespace}.svc.${o.clusterDomain}`;
  const podFqdn = (index: number | string): string => `${hostname(index)}.${domain}`;
  return {
    name: o.name,
    service: o.name,
    configMap: `${o.name}-config`,
    secret: `${o.name}-token`,
    configFile: /^[-._a-zA-Z0-9]+$/.test(path.basename(o.configPath)) ? path.basename(o.configPath) : "config.yaml",
    hostname,
    podDnsName,
    podFqdn,
    certificateWildcard: `*.${domain}`,
    coordinator: `${o.tlsSecret !== undefined ? podFqdn(0) : podDnsName(0)}:${o.port}`,
  };
}
