import type { V1ConfigMap, V1Job, V1Service } from "@kubernetes/client-node";
import { Document, isMap } from "yaml";
import { configMap, headlessService, indexedJob } from "./job";
import { jobSet, type JobSet } from "./jobset";
import type { K8sOptions } from "./options";
import { TLS_SECRET_KEYS } from "./tls";
import { topologyOf } from "./topology";
import { k8sWarnings } from "./warnings";

/** One generated Kubernetes object. */
export type Manifest = V1ConfigMap | V1Service | V1Job | JobSet;

/** The objects of one training job, in apply order: ConfigMap, headless Service (plain Job only), Job or JobSet. */
export function buildManifests(o: K8sOptions): Manifest[] {
  const t = topologyOf(o);
  // The JobSet controller creates the headless Service itself (spec.network.subdomain).
  return o.jobset ? [configMap(o, t), jobSet(o, t)] : [configMap(o, t), headlessService(o, t), indexedJob(o, t)];
}

/** Comment block at the top of the YAML: what to create first, where the run directory lives, the warnings. */
function header(o: K8sOptions, warnings: readonly string[]): string {
  const t = topologyOf(o);
  const lines = [
    `ringtrain job '${o.name}': ${o.nodes} node(s) x ${o.workersPerNode} ${o.gpus ? "GPU" : "CPU"} worker(s), coordinator ${t.coordinator}`,
    "Create the job token first (it is never written into this file):",
    `  kubectl -n ${o.namespace} create secret generic ${t.secret} --from-literal=token=$(openssl rand -hex 24)`,
    `Then: kubectl apply -f THIS_FILE${o.jobset ? "   (needs the JobSet controller, jobset.x-k8s.io/v1alpha2)" : ""}`,
    `Per-rank logs: /runs/${o.name}/logs/rank-R.log on the run volume; launch output: kubectl -n ${o.namespace} logs ${t.hostname(0)}...`,
  ];
  if (o.tlsSecret !== undefined) {
    const [ca, crt, key] = [TLS_SECRET_KEYS.ca_file, TLS_SECRET_KEYS.cert_file, TLS_SECRET_KEYS.key_file];
    lines.push(
      `Mutual TLS: create the Secret ${o.tlsSecret} first, e.g.`,
      `  kubectl -n ${o.namespace} create secret generic ${o.tlsSecret} --from-file=${ca}=CA.pem --from-file=${crt}=NODE.pem --from-file=${key}=NODE.key`,
      `Its certificate (serverAuth + clientAuth, signed by the CA) must carry subjectAltName DNS:${t.certificateWildcard}`,
      `(or every pod's name, ${t.podFqdn(0)} ... ${t.podFqdn(o.nodes - 1)}).`,
    );
  }
  lines.push(...warnings.map((w) => `WARNING: ${w}`));
  return lines.map((l) => ` ${l}`).join("\n");
}

/**
 * Renders the manifests as one multi-document YAML stream (undefined fields dropped), the warnings (by default
 * those of the options alone) in its header comment.
 */
export function renderManifests(o: K8sOptions, warnings: readonly string[] = k8sWarnings(o)): string {
  return buildManifests(o)
    .map((m, i) => {
      const doc = new Document(JSON.parse(JSON.stringify(m)) as unknown);
      if (i === 0) doc.commentBefore = header(o, warnings);
      if (!isMap(doc.contents)) throw new Error("a manifest must render as a YAML mapping");
      return doc.toString({ lineWidth: 0 });
    })
    .join("---\n");
}
