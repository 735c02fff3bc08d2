import { DEFAULT_CLUSTER_DOMAIN, type K8sOptions } from "./options";

/**
 * Settings of `launch k8s` that are valid but probably not what was meant. `launch k8s` prints each on stderr
 * (stdout stays pure YAML for `kubectl apply -f -`) and repeats it in the YAML's header comment, so a saved file
 * keeps them.
 */
export function k8sWarnings(o: K8sOptions): string[] {
  const out: string[] = [];
  if (o.storage.kind === "ephemeral") {
    out.push("no --pvc or --host-path: the run directory is an emptyDir and checkpoints die with the pods");
  }
  if (o.tlsSecret === undefined && o.clusterDomain !== DEFAULT_CLUSTER_DOMAIN) {
    out.push(`--cluster-domain ${o.clusterDomain} has no effect without --tls-secret: pods then reach the coordinator by its short name and ring peers by pod IP`);
  }
  return out;
}
